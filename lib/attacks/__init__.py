"""Model-inversion attacks on a GAN prior: PPA-style (``ppa``) and GMI-style (``gmi``).

The attacker's knowledge is explicit in ``run_attack``'s parameters: the generator (and,
for GMI, its discriminator), the target, the number of target classes, the config and the
seed. Never the evaluator, the private set or the reference set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..training import generate
from .gmi import gmi_attack, gmi_loss
from .ppa import (attack_augmentation, module_device, poincare_loss, ppa_attack, robust_confidence,
                  select_candidates, select_final)

ATTACKS = ("ppa", "gmi")
TARGET_FILE = "models/target.safetensors"

__all__ = ["ATTACKS", "AttackRun", "attack_augmentation", "attack_config", "attack_seed",
           "attack_seeds", "attack_stem", "gmi_attack", "gmi_loss", "poincare_loss", "ppa_attack",
           "regenerate", "require_attack", "robust_confidence", "run_attack", "save_class_grids",
           "select_candidates", "select_final"]


def regenerate(generator: nn.Module, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The images of saved ``latents`` (``lib.training.generate`` in eval mode on the
    generator's device), gathered on the CPU."""
    return generate(generator, latents, batch_size, module_device(generator))


def run_attack(name: str, generator: nn.Module, target: nn.Module, n_classes: int,
               cfg: Mapping[str, Any], seed: int, *,
               discriminator: nn.Module | None = None) -> dict[str, Any]:
    """Run attack ``name`` with the counts of profile ``cfg``; ``recon_per_class`` per class.

    ppa: ``attack_*`` keys (``attack_candidates`` ≥ ``recon_per_class``); gmi: ``gmi_*``
    keys and the GAN's ``discriminator``. Returns the attack's result dict.
    """
    check_attack(name)
    per_class = cfg["recon_per_class"]
    if name == "ppa":
        if cfg["attack_candidates"] < per_class:
            raise ValueError(f"attack_candidates ({cfg['attack_candidates']}) must be ≥ "
                             f"recon_per_class ({per_class}): raise attack_candidates or lower "
                             f"recon_per_class")
        return ppa_attack(generator, target, n_classes, pool=cfg["attack_pool"],
                          candidates_per_class=cfg["attack_candidates"],
                          final_per_class=per_class, steps=cfg["attack_steps"],
                          lr=cfg["attack_lr"], truncation=cfg["attack_truncation"],
                          n_aug_final=cfg["attack_final_aug"], seed=seed)
    if discriminator is None:
        raise ValueError("the gmi attack needs the GAN's discriminator: pass discriminator=D "
                         "(the one trained with the generator)")
    return gmi_attack(generator, discriminator, target, n_classes, per_class=per_class,
                      steps=cfg["gmi_steps"], lr=cfg["gmi_lr"], restarts=cfg["gmi_restarts"],
                      lambda_id=cfg["gmi_lambda_id"], seed=seed)


# ----------------------------------------------------------------------------- saved runs
@dataclass
class AttackRun:
    """One attack on one generator mode and seed: saved latents, and the images they give.

    ``labels`` are in the target's label space (0..C−1, class 0's rows first);
    ``classes[label]`` is the original data-set class.
    """
    name: str
    mode: str
    seed: int
    latents: torch.Tensor
    labels: torch.Tensor
    classes: list[int]
    images: torch.Tensor
    confidence: torch.Tensor
    loss_curve: list[float]
    initial_loss: float
    final_loss: float
    seconds: float
    variant: str = ""

    @property
    def original_labels(self) -> np.ndarray:
        """The reconstructions' classes in the data set's label space (for the judge)."""
        return np.asarray(self.classes)[self.labels.numpy()]

    @property
    def stem(self) -> str:
        return attack_stem(self.name, self.mode, self.seed, self.variant)


def attack_stem(name: str, mode: str, seed: int, variant: str = "") -> str:
    """``<attack>_<mode slug>_seed<k>[_<variant>]``: the file stem of one attack run."""
    from ..transfer import mode_slug

    check_attack(name)
    return f"{name}_{mode_slug(mode)}_seed{seed}" + (f"_{variant}" if variant else "")


def check_attack(name: str) -> None:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")


def attack_config(cfg: Mapping[str, Any], name: str) -> dict:
    """The config entries an attack run depends on (its own counts and its generator's)."""
    from ..transfer import transfer_config

    check_attack(name)
    prefix = "attack_" if name == "ppa" else "gmi_"
    own = {k: cfg[k] for k in sorted(cfg) if k.startswith(prefix)}
    return {**own, "recon_per_class": cfg["recon_per_class"],
            "private_classes": list(cfg["private_classes"]), "transfer": transfer_config(cfg)}


def attack_seed(ctx, name: str, seed: int) -> int:
    """The seed of attack ``name`` in repetition ``seed``; the same for every generator mode,
    so the modes are compared on the same initial latents (a paired design)."""
    return ctx.subseed(f"attack/{name}/seed{seed}")


def attack_seeds(cfg: Mapping[str, Any], name: str) -> list[int]:
    """The repetitions attack ``name`` runs in: every profile seed for PPA, the first
    ``gmi_seeds`` for GMI (the protocol lets the GMI-style attack run one seed)."""
    seeds = list(cfg["seeds"])
    return seeds if name == "ppa" else seeds[:max(1, int(cfg["gmi_seeds"]))]


def save_class_grids(ctx, run: AttackRun, nrow: int = 10) -> list[Path]:
    """One PNG per class (``attacks/<stem>/<class name>.png``; faces: ``class_<index>.png``),
    registered in the manifest."""
    from torchvision.utils import save_image

    from ..artifacts import register
    from ..data import CLASS_NAMES

    folder = ctx.path(f"attacks/{run.stem}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, cls in enumerate(run.classes):
        images = run.images[run.labels == label]
        name = (CLASS_NAMES[cls].replace('/', '-').replace(' ', '_').lower()
                if ctx.cfg["dataset"] == "fashion-mnist" else f"class_{cls:04d}")
        path = folder / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        save_image(images.add(1).div(2).clamp(0, 1), tmp, nrow=nrow, padding=1)
        tmp.replace(path)
        register(ctx.run_dir, path, producer=ctx.notebook, kind="attack_grid")
        written.append(path)
    return written


def require_attack(ctx, name: str, mode: str, seed: int, transfer_inputs=None,
                   target: nn.Module | None = None, *, variant: str = "",
                   target_file: str = TARGET_FILE) -> tuple[AttackRun, dict]:
    """Attack ``name`` on the generator of ``mode`` for repetition ``seed``; run now if missing.

    Saved as ``attacks/<stem>.safetensors`` (latents, labels, confidence, loss curve) with the
    sha256 of the generator and target checkpoints it attacked, plus a PNG grid per class. A
    saved run is reused only under the same config, generator and target; its images are
    regenerated from the latents. ``variant`` names an attack on another target (``target``,
    saved at ``target_file``), e.g. one retrained by the defence. Returns (run, info) with
    ``reused`` and ``seconds``.
    """
    from ..artifacts import ArtifactError, read_manifest
    from ..transfer import require_transfer, transfer_file

    check_attack(name)
    if variant and (target is None or target_file == TARGET_FILE):
        raise ValueError("an attack variant needs its own target and target_file (the "
                         "checkpoint it was loaded from)")
    config = {**attack_config(ctx.cfg, name), "variant": variant, "target_file": target_file}
    stem = attack_stem(name, mode, seed, variant)
    rel = f"attacks/{stem}.safetensors"
    transfer, _ = require_transfer(ctx, mode, seed, transfer_inputs)
    if target is None:
        from ..data import split_for_config
        from ..training import require_classifier

        data, split = split_for_config(ctx.cfg)
        target = require_classifier(ctx, "target", data, split)[0]
    manifest = read_manifest(ctx.run_dir)
    source = transfer_file(mode, seed)
    shas = {"generator_sha256": manifest[source]["sha256"],
            "target_sha256": manifest[target_file]["sha256"]}
    generator = transfer.generator_ema.to(ctx.device)
    loaded = ctx.load_current(rel, config)
    if loaded is not None:
        tensors, meta = loaded
        for key, value in shas.items():
            if meta.get(key) != value:
                raise ArtifactError(f"{ctx.path(rel)} attacked another "
                                    f"{key.split('_')[0]} than the one now in the run folder; "
                                    "delete the attack file to attack again")
        run = AttackRun(name, mode, seed, tensors["latents"], tensors["labels"],
                        meta["classes"], regenerate(generator, tensors["latents"]).cpu(),
                        tensors["confidence"], tensors["loss_curve"].tolist(),
                        meta["initial_loss"], meta["final_loss"], meta["seconds"], variant)
        return run, {"reused": True, "seconds": meta["seconds"]}
    target = target.to(ctx.device)
    classes = [int(c) for c in ctx.cfg["private_classes"]]
    start = time.perf_counter()
    out = run_attack(name, generator, target, len(classes), ctx.cfg,
                     attack_seed(ctx, name, seed),
                     discriminator=transfer.discriminator.to(ctx.device))
    seconds = time.perf_counter() - start
    run = AttackRun(name, mode, seed, out["latents"].cpu(), out["labels"].cpu(), classes,
                    out["images"].cpu(), out["confidence"].cpu().float(),
                    [float(v) for v in out["loss_curve"]], float(out["initial_loss"]),
                    float(out["final_loss"]), seconds, variant)
    ctx.save_tensors(rel, {"latents": run.latents, "labels": run.labels,
                           "confidence": run.confidence,
                           "loss_curve": torch.tensor(run.loss_curve, dtype=torch.float64)},
                     {"config": config, "attack": name, "mode": mode, "seed": seed,
                      "attack_seed": attack_seed(ctx, name, seed), "classes": classes,
                      "generator": source, "target": target_file, **shas,
                      "initial_loss": run.initial_loss, "final_loss": run.final_loss,
                      "seconds": seconds})
    save_class_grids(ctx, run)
    return run, {"reused": False, "seconds": seconds}
