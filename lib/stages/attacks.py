"""Stage 05: every attack on every generator mode and seed, saved and reusable.

An attack run is saved as ``attacks/<attack>_<mode>_seed<k>.safetensors`` (latents, labels,
target confidence, loss curve) with the sha256 of the generator and target checkpoints it
attacked, plus a PNG grid per class; its images are regenerated from the latents. On several
processes the classes are shared out (class i to rank i mod N), each class's part is the one
it has in the one-process attack (``lib.attacks.parts``), and rank 0 merges and writes: the
saved run is the one-process run, bit for bit. With ``checkpoint_every_s`` > 0 (the paper
profile) every finished class's part is saved at once (``attacks/<stem>[.rankR].partial
.safetensors``, tied to the config and the two checkpoints): a run cut short resumes at the
class it was on, and, the classes being independent, equals an uncut run byte for byte.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..artifacts import PartialState, atomic_path, read_manifest, register
from ..attacks.interface import attack_parts, finish_attack
from ..attacks.parts import PartCallback
from ..config import ATTACKS, MODES, attack_config, attack_seeds, check_attack, mode_slug
from ..data import dataset
from ..distributed import SINGLE, World, gather_parts
from ..errors import ArtifactError, InputError
from ..inference import generate, module_device
from ..metrics.controls import random_generator
from ..metrics.evaluate import label_view
from ..seeding import derive_seed
from .classifiers import require_classifier
from .transfer import TransferInputs, require_transfer, transfer_file

TARGET_FILE = "models/target.safetensors"


@dataclass
class AttackRun:
    """One attack on one generator mode and seed: saved latents, and the images they give.

    ``labels`` are in the target's label space (0..C−1, class 0's rows first);
    ``classes[label]`` is the original data-set class. ``start_latents`` / ``start_images``:
    each reconstruction's starting point (the same code before the optimisation; claim C1c).
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
    seconds: float | None        # wall time of the attack (None: not recorded)
    variant: str = ""
    start_latents: torch.Tensor | None = None
    start_images: torch.Tensor | None = None

    @property
    def original_labels(self) -> np.ndarray:
        """The reconstructions' classes in the data set's label space (for the judge)."""
        return np.asarray(self.classes)[self.labels.numpy()]

    @property
    def stem(self) -> str:
        return attack_stem(self.name, self.mode, self.seed, self.variant)


def attack_stem(name: str, mode: str, seed: int, variant: str = "") -> str:
    """``<attack>_<mode slug>_seed<k>[_<variant>]``: the file stem of one attack run."""
    check_attack(name)
    return f"{name}_{mode_slug(mode)}_seed{seed}" + (f"_{variant}" if variant else "")


STREAMS = "per-class"
"""How an attack draws its random numbers (recorded in its config: a run saved when every
class shared one stream is refused, not reused): one stream per class."""


def attack_run_config(ctx, name: str, variant: str = "", target_file: str = TARGET_FILE) -> dict:
    """The config an attack run is saved under (and reused only under)."""
    return {**attack_config(ctx.cfg, name), "variant": variant, "target_file": target_file,
            "streams": STREAMS}


def attack_seed(ctx, name: str, seed: int) -> int:
    """The seed of attack ``name`` in repetition ``seed``; the same for every generator mode,
    so the modes are compared on the same initial latents (a paired design)."""
    return ctx.subseed(f"attack/{name}/seed{seed}")


def regenerate(generator: nn.Module, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The images of saved ``latents`` (the generator in eval mode on its device), on the CPU."""
    return generate(generator, latents, batch_size, module_device(generator))


def save_class_grids(ctx, run: AttackRun, nrow: int = 10) -> list[Path]:
    """One PNG per class (``attacks/<stem>/<class slug>.png``), registered in the manifest."""
    from torchvision.utils import save_image  # here only: importing torchvision takes 1.2 s

    folder = ctx.path(f"attacks/{run.stem}")
    written = []
    for label, cls in enumerate(run.classes):
        images = run.images[run.labels == label]
        path = folder / f"{dataset.class_slug(ctx.cfg, cls)}.png"
        with atomic_path(path) as tmp:
            save_image(images.add(1).div(2).clamp(0, 1), tmp, format="png", nrow=nrow, padding=1)
        register(ctx.run_dir, path, producer=ctx.notebook, kind="attack_grid")
        written.append(path)
    return written


def _checkpoint_sha(ctx, rel: str) -> str:
    """The manifest's sha256 of a checkpoint the attack depends on (clear error if absent)."""
    entry = read_manifest(ctx.run_dir).get(rel)
    if entry is None:
        raise ArtifactError(f"{rel} is not registered in {ctx.run_dir.name}/manifest.json; "
                            "the attack needs the checkpoint it attacks: run the notebook that "
                            "makes it (or delete the attack file to rebuild everything)")
    return entry["sha256"]


def _load_attack(ctx, rel: str, config: dict, shas: dict, generator: nn.Module, name: str,
                 mode: str, seed: int, variant: str) -> AttackRun | None:
    """The saved attack run at ``rel`` (made under ``config`` against the checkpoints of
    ``shas``), its images regenerated; None when there is none."""
    loaded = ctx.load_current(rel, config)
    if loaded is None:
        return None
    tensors, meta = loaded
    for key, value in shas.items():
        if meta.get(key) != value:
            raise ArtifactError(f"{ctx.path(rel)} attacked another {key.split('_')[0]} than "
                                "the one now in the run folder; delete the attack file to "
                                "attack again")
    return AttackRun(name, mode, seed, tensors["latents"], tensors["labels"], meta["classes"],
                     regenerate(generator, tensors["latents"]).cpu(), tensors["confidence"],
                     tensors["loss_curve"].tolist(), meta["initial_loss"], meta["final_loss"],
                     ctx.seconds_of(rel), variant, tensors["start_latents"],
                     regenerate(generator, tensors["start_latents"]).cpu())


def attack_partial(ctx, stem: str, config: dict, world: World = SINGLE) -> PartialState:
    """Where the attack ``stem`` keeps its finished classes while it runs (one file per rank;
    off when the profile's ``checkpoint_every_s`` is 0)."""
    rank = f".rank{world.rank}" if world.distributed else ""
    return PartialState(ctx.path(f"attacks/{stem}{rank}.partial.safetensors"), config,
                        ctx.cfg["checkpoint_every_s"])


def resumable_parts(partial: PartialState,
                    attack: Callable[[list[int], PartCallback], dict[int, dict]],
                    classes: Sequence[int]) -> dict[int, dict[str, torch.Tensor]]:
    """The parts of ``classes``: those ``partial`` saved in an earlier, cut run, and the rest
    from ``attack(todo, on_part)``, each saved with the others as soon as it is finished."""
    saved = partial.load() or {}
    parts = {int(c): part for c, part in saved.get("parts", {}).items() if int(c) in classes}

    def keep(c: int, part: dict) -> None:
        parts[c] = part
        if partial.enabled:
            partial.save({"parts": {str(k): v for k, v in sorted(parts.items())}})

    todo = [c for c in classes if c not in parts]
    if todo:
        parts.update(attack(todo, keep))
    return parts


def require_attack(ctx, name: str, mode: str, seed: int,
                   transfer_inputs: TransferInputs | None = None,
                   target: nn.Module | None = None, *, variant: str = "",
                   target_file: str = TARGET_FILE,
                   world: World = SINGLE) -> tuple[AttackRun, dict]:
    """Attack ``name`` on the generator of ``mode`` for repetition ``seed``; run now if missing.

    A saved run is reused only under the same config, generator and target. ``variant`` names
    an attack on another target (``target``, saved at ``target_file``), e.g. one retrained by
    the defence. Returns (run, info) with ``reused`` and ``seconds``. ``world``: the classes
    shared out over its processes, every rank returns the merged run, rank 0 writes it.
    """
    check_attack(name)
    if variant and (target is None or target_file == TARGET_FILE):
        raise InputError("an attack variant needs its own target and target_file (the "
                         "checkpoint it was loaded from)")
    config = attack_run_config(ctx, name, variant, target_file)
    stem = attack_stem(name, mode, seed, variant)
    rel = f"attacks/{stem}.safetensors"
    transfer, _ = require_transfer(ctx, mode, seed, transfer_inputs, world=world)
    if target is None:
        target = require_classifier(ctx, "target", world=world)[0]
    source = transfer_file(mode, seed)
    shas = {"generator_sha256": _checkpoint_sha(ctx, source),
            "target_sha256": _checkpoint_sha(ctx, target_file)}
    generator = transfer.generator_ema.to(ctx.device)
    run = _load_attack(ctx, rel, config, shas, generator, name, mode, seed, variant)
    if run is not None:
        return run, {"reused": True, "seconds": run.seconds}
    target = target.to(ctx.device)
    classes = [int(c) for c in ctx.cfg["private_classes"]]
    start = time.perf_counter()
    labels = range(len(classes))
    partial = attack_partial(ctx, stem, {"config": config, **shas}, world)
    parts = resumable_parts(partial, lambda todo, on_part: attack_parts(
        name, generator, target, len(classes), ctx.cfg, attack_seed(ctx, name, seed), todo,
        discriminator=transfer.discriminator.to(ctx.device), on_part=on_part),
        world.shard(labels))
    out = finish_attack(gather_parts(parts, labels, world), generator, len(classes))
    seconds = time.perf_counter() - start
    run = AttackRun(name, mode, seed, out["latents"].cpu(), out["labels"].cpu(), classes,
                    out["images"].cpu(), out["confidence"].cpu().float(),
                    [float(v) for v in out["loss_curve"]], float(out["initial_loss"]),
                    float(out["final_loss"]), seconds, variant, out["start_latents"].cpu(),
                    regenerate(generator, out["start_latents"]).cpu())
    if world.main:
        ctx.save_tensors(rel, {"latents": run.latents, "labels": run.labels,
                               "start_latents": run.start_latents,
                               "confidence": run.confidence,
                               "loss_curve": torch.tensor(run.loss_curve, dtype=torch.float64)},
                         {"config": config, "attack": name, "mode": mode, "seed": seed,
                          "attack_seed": attack_seed(ctx, name, seed), "classes": classes,
                          "generator": source, "target": target_file, **shas,
                          "initial_loss": run.initial_loss, "final_loss": run.final_loss})
        ctx.record_seconds(rel, seconds)
        save_class_grids(ctx, run)
    world.barrier()
    partial.clear()
    return run, {"reused": False, "seconds": seconds}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def require_attacks(ctx, inputs: TransferInputs, target: nn.Module, world: World = SINGLE
                    ) -> tuple[dict[tuple[str, str, int], AttackRun], pd.DataFrame]:
    """Every attack × seed × mode of the config; (runs by (attack, mode, seed), timing table)."""
    runs, timing = {}, []
    for name in ATTACKS:
        for mode in MODES:
            for seed in attack_seeds(ctx.cfg, name, mode):
                run, info = require_attack(ctx, name, mode, seed, inputs, target=target,
                                           world=world)
                runs[name, mode, seed] = run
                timing.append({"attack": name, "mode": mode, "seed": seed,
                               "seconds": _rounded(info["seconds"]), "reused": info["reused"]})
    return runs, pd.DataFrame(timing)


def label_table(ctx, runs: Mapping[tuple[str, str, int], AttackRun], inputs: TransferInputs,
                target: nn.Module, evaluator: nn.Module) -> pd.DataFrame:
    """How T and E label every attack run's reconstructions, and those of the control
    ``random`` (each mode's generator at random codes, the most target-confident per class:
    the attack's candidate selection without its optimisation), per seed."""
    classes = list(ctx.cfg["private_classes"])
    rows = [{"attack": name, "mode": mode, "seed": seed,
             **label_view(target, evaluator, run.images, run.original_labels, classes,
                          device=ctx.device)}
            for (name, mode, seed), run in runs.items()]
    for seed in ctx.cfg["seeds"]:
        for mode in MODES:
            generator = require_transfer(ctx, mode, seed, inputs)[0].generator_ema
            images, labels = random_generator(generator, target, classes,
                                              ctx.cfg["recon_per_class"],
                                              derive_seed(seed, "random_generator"),
                                              device=ctx.device)
            rows.append({"attack": "random", "mode": mode, "seed": seed,
                         **label_view(target, evaluator, images, labels, classes,
                                      device=ctx.device)})
    return pd.DataFrame(rows)
