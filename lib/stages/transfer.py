"""Stage 04: the transfer of the GAN prior in each mode and seed, its natural-gradient
metric, and the committed entropy-weight sweep (its own job: ``make sweep``)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import ngd, paths
from ..artifacts import PartialState, module_tensors
from ..config import MODES, check_mode, mode_slug, transfer_config
from ..data import dataset
from ..data.images import subset
from ..errors import ArtifactError
from ..inference import embed, generate, predict_logits
from ..metrics.fidelity import frechet_distance
from ..seeding import derive_seed
from ..transfer import (SWEEP_RULE, SWEEP_WEIGHTS, TransferResult, TransferSettings,
                        build_metric, choose_weight, fine_tune, gradient_scale)
from .classifiers import require_classifier, require_perceptual_distance
from .gan import gan_from, gan_training_indices, gan_training_set, require_gan


def transfer_file(mode: str, seed: int, suffix: str = "") -> str:
    """The run-folder path of the generator fine-tuned in ``mode`` for repetition ``seed``."""
    return f"models/transfer/{mode_slug(mode)}_seed{seed}{suffix}.safetensors"


@dataclass
class TransferInputs:
    """What every transfer of a run shares: the prior, the frozen target, the attacker's
    perceptual distance and the public images."""
    generator: nn.Module
    generator_ema: nn.Module
    discriminator: nn.Module
    target: nn.Module
    distance: nn.Module
    public_images: torch.Tensor


def transfer_inputs(ctx, data=None, split=None) -> TransferInputs:
    """Load (or build, through the same lib functions) the inputs of the transfer."""
    if data is None or split is None:
        data, split = dataset.load(ctx.cfg, data)
    G, G_ema, D, _ = require_gan(ctx, data, split)
    target, _, _ = require_classifier(ctx, "target", data, split)
    distance, _ = require_perceptual_distance(ctx, data, split)
    images = gan_training_set(ctx.cfg, data, split, ctx.subseed("gan_prior"))
    return TransferInputs(G, G_ema, D, target, distance, images)


def transfer_seed(ctx, seed: int) -> int:
    """The seed of every transfer mode for repetition ``seed`` (shared by the modes)."""
    return ctx.subseed(f"transfer/seed{seed}")


def metric_codes_seed(ctx, seed: int) -> int:
    """The seed of the natural-gradient metric's reference codes in repetition ``seed``."""
    return derive_seed(transfer_seed(ctx, seed), "ngd_codes")


def require_metric(ctx, seed: int, inputs: TransferInputs):
    """The faithful natural-gradient metric of repetition ``seed`` (built once, saved).

    Returns (metric, info) with the build time in seconds and whether it was reused.
    """
    rel = f"models/ngd_metric_seed{seed}.safetensors"
    settings = TransferSettings.from_config(ctx.cfg, "entropy+ngd")
    codes_seed = metric_codes_seed(ctx, seed)
    loaded = ctx.load_current(rel, transfer_config(ctx.cfg))
    if loaded is not None:
        tensors, meta = loaded
        return ngd.ReferenceMetric.from_tensors(tensors, settings.ngd_damping), {**meta,
                                                                                "reused": True}
    start = time.perf_counter()
    metric = build_metric(inputs.generator, inputs.distance, settings, codes_seed)
    seconds = time.perf_counter() - start
    meta = {"config": transfer_config(ctx.cfg), "seed": seed, "codes_seed": codes_seed,
            "seconds": seconds}
    ctx.save_tensors(rel, metric.to_tensors(), meta)
    return metric, {**meta, "reused": False}


def require_transfer(ctx, mode: str, seed: int, inputs: TransferInputs | None = None,
                     **changes: Any) -> tuple[TransferResult, dict]:
    """The generator of ``mode`` for repetition ``seed``, fine-tuned now if missing.

    Saved as ``models/transfer/<mode>_seed<seed>.safetensors`` (G, G_ema and D, the GMI-style
    attack needs D) with its config, history and monitor. ``changes`` override settings
    (the sweep uses them); such results are saved under a name that says so.
    """
    check_mode(mode)
    config = transfer_config(ctx.cfg)
    suffix = "".join(f"_{k}-{v}" for k, v in sorted(changes.items()))
    rel = transfer_file(mode, seed, suffix)
    loaded = ctx.load_current(rel, config)
    if loaded is not None:
        tensors, meta = loaded
        if meta.get("changes") != changes:
            raise ArtifactError(f"{ctx.path(rel)} was fine-tuned with other settings "
                                f"({meta.get('changes')}); delete the file to fine-tune again")
        G, G_ema, D = gan_from(tensors, meta)
        return (TransferResult(mode, G, G_ema, D, meta["history"], meta["monitor"]),
                {"reused": True, "seconds": meta["seconds"]})
    inputs = inputs or transfer_inputs(ctx)
    settings = TransferSettings.from_config(ctx.cfg, mode, **changes)
    metric = None
    if mode == "entropy+ngd" and settings.ngd_mode == "faithful":
        metric, _ = require_metric(ctx, seed, inputs)
    partial = PartialState(ctx.path(rel.replace(".safetensors", ".partial.safetensors")),
                           {"config": config, "changes": changes}, ctx.cfg["checkpoint_every_s"])
    start = time.perf_counter()
    result = fine_tune(mode, inputs.generator, inputs.discriminator, inputs.target,
                       inputs.public_images, settings, transfer_seed(ctx, seed),
                       generator_ema=inputs.generator_ema, metric=metric,
                       distance=inputs.distance, device=ctx.device, partial=partial)
    seconds = time.perf_counter() - start
    ctx.save_tensors(rel, module_tensors({"G": result.generator, "G_ema": result.generator_ema,
                                          "D": result.discriminator}),
                     {"config": config, "changes": changes, "mode": mode, "seed": seed,
                      "generator": result.generator.arch_spec,
                      "discriminator": result.discriminator.arch_spec,
                      "history": result.history, "monitor": result.monitor,
                      "seconds": seconds})
    return result, {"reused": False, "seconds": seconds}


# ----------------------------------------------------------------------------- what each mode did
def monitor_table(results: dict[tuple[str, int], TransferResult]) -> pd.DataFrame:
    """Per (mode, seed): the collapse monitor's final record and whether it ever collapsed."""
    return pd.DataFrame([{"mode": mode, "seed": seed, **{k: r.monitor[-1][k] for k in
                          ("mean_entropy", "mean_confidence", "max_share", "collapsed")},
                          "collapsed_ever": any(m["collapsed"] for m in r.monitor)}
                         for (mode, seed), r in results.items()])


def lowers_entropy(final: pd.DataFrame) -> dict[str, bool]:
    """Per target-driven mode: is its final target entropy below ``vanilla``'s in every seed?"""
    vanilla = final[final["mode"] == "vanilla"].set_index("seed")["mean_entropy"]
    return {mode: bool((final[final["mode"] == mode].set_index("seed")["mean_entropy"]
                        < vanilla).all())
            for mode in MODES if mode != "vanilla"}


def mode_samples(ctx, results: dict[tuple[str, int], TransferResult],
                 z_dim: int) -> dict[tuple[str, int], torch.Tensor]:
    """``fid_samples`` images of each (mode, seed)'s EMA generator, at the same fixed codes."""
    z = torch.randn(ctx.cfg["fid_samples"], z_dim,
                    generator=torch.Generator().manual_seed(ctx.subseed("eval")))
    return {key: generate(r.generator_ema, z) for key, r in results.items()}


def evaluator_view(ctx, data, split, samples: dict[tuple[str, int], torch.Tensor],
                   target_logits: dict[tuple[str, int], torch.Tensor],
                   evaluator: nn.Module) -> pd.DataFrame:
    """Per (mode, seed) of ``samples`` (and T's logits on them): the share E puts in a private
    class, E's agreement with T, and FID-E against as many public images."""
    n = ctx.cfg["fid_samples"]
    classes = np.asarray(ctx.cfg["private_classes"])
    seen = gan_training_indices(ctx.cfg, split, ctx.subseed("gan_prior"))
    public_idx = np.random.default_rng(ctx.subseed("fid")).choice(seen, size=min(n, len(seen)),
                                                                  replace=False)
    public_feats = embed(evaluator, subset(data, public_idx)[0])
    rows = []
    for (mode, seed), x in samples.items():
        e_pred = predict_logits(evaluator, x).argmax(1).numpy()
        t_pred = classes[target_logits[mode, seed].argmax(1).numpy()]
        rows.append({"mode": mode, "seed": seed, "E_private_share": np.isin(e_pred, classes).mean(),
                     "E_agrees_with_T": (e_pred == t_pred).mean(),
                     "fid_e_vs_public": frechet_distance(embed(evaluator, x), public_feats)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- λ sweep
def sweep_file() -> Path:
    """Where the committed sweep lives (``results/entropy_sweep.json``)."""
    return paths.results_dir() / "entropy_sweep.json"


def load_sweep(path: Path | None = None) -> dict | None:
    """The committed sweep's results, or None when it has not been run."""
    path = Path(path) if path is not None else sweep_file()
    return json.loads(path.read_text()) if path.is_file() else None


def sweep(ctx, modes: tuple[str, ...] = ("entropy", "entropy+ngd"), seed: int = 0,
          weights: tuple[float, ...] = SWEEP_WEIGHTS) -> dict:
    """Fine-tune each mode at each entropy weight (one seed) and choose by ``SWEEP_RULE``."""
    inputs = transfer_inputs(ctx)
    settings = TransferSettings.from_config(ctx.cfg)
    out: dict[str, Any] = {"rule": SWEEP_RULE, "seed": seed, "modes": {}}
    for mode in modes:
        grid, scale = list(weights), 1.0
        if mode == "entropy+ngd":
            metric, _ = require_metric(ctx, seed, inputs)
            scale = gradient_scale(inputs.generator, inputs.target, metric, settings,
                                   transfer_seed(ctx, seed))
            shift = 10.0 ** round(math.log10(scale))
            grid = sorted({float(f"{w / shift:.3g}") for w in weights} | {1.0})
        rows = []
        for weight in grid:
            start = time.perf_counter()
            result, _ = require_transfer(ctx, mode, seed, inputs, entropy_weight=weight)
            final = result.monitor[-1]
            rows.append({"weight": weight, "final_entropy": final["mean_entropy"],
                         "final_confidence": final["mean_confidence"],
                         "final_max_share": final["max_share"],
                         "final_class_shares": final["class_shares"],
                         "collapsed_any": any(m["collapsed"] for m in result.monitor),
                         "seconds": time.perf_counter() - start})
            print(f"{mode:12s} λ={weight:<8g} entropy {final['mean_entropy']:.3f}  max share "
                  f"{final['max_share']:.2f}  collapsed {rows[-1]['collapsed_any']}", flush=True)
        vanilla, _ = require_transfer(ctx, "vanilla", seed, inputs)
        out["modes"][mode] = {"grid": grid, "gradient_scale": scale, "rows": rows,
                              "vanilla_final_entropy": vanilla.monitor[-1]["mean_entropy"],
                              "chosen": choose_weight(rows)}
    return out
