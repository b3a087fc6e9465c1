"""Stage 04: the transfer of the GAN prior in each mode and seed, its natural-gradient
metric, and the committed entropy-weight sweep (its own job: ``make sweep``)."""
from __future__ import annotations

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
from ..artifacts import PartialState, module_tensors, read_json_if_present
from ..augment import target_view
from ..config import MODES, NATURAL_GRADIENT_MODES, check_mode, mode_slug, transfer_config
from ..data import dataset
from ..data.images import subset
from ..distributed import SINGLE, World, main_first
from ..errors import ArtifactError
from ..inference import embed, embed_and_logits, generate, predict_logits
from ..metrics.fidelity import frechet_distance
from ..seeding import derive_seed, seeded_rng
from ..transfer import (SWEEP_RULE, SWEEP_WEIGHTS, TransferResult, TransferSettings,
                        build_metric, choose_weight, entropy_loss, fine_tune, gradient_scale)
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


def transfer_inputs(ctx, data=None, split=None, world: World = SINGLE) -> TransferInputs:
    """Load (or build, through the same lib functions) the inputs of the transfer."""
    if data is None or split is None:
        data, split = dataset.load(ctx.cfg, data)
    G, G_ema, D, _ = require_gan(ctx, data, split, world)
    target, _, _ = require_classifier(ctx, "target", data, split, world)
    distance, _ = require_perceptual_distance(ctx, data, split, world)
    images = gan_training_set(ctx.cfg, data, split, ctx.subseed("gan_prior"))
    return TransferInputs(G, G_ema, D, target, distance, images)


def transfer_seed(ctx, seed: int) -> int:
    """The seed of every transfer mode for repetition ``seed`` (shared by the modes)."""
    return ctx.subseed(f"transfer/seed{seed}")


def metric_codes_seed(ctx, seed: int) -> int:
    """The seed of the natural-gradient metric's reference codes in repetition ``seed``."""
    return derive_seed(transfer_seed(ctx, seed), "ngd_codes")


def require_metric(ctx, seed: int, inputs: TransferInputs, world: World = SINGLE):
    """The faithful natural-gradient metric of repetition ``seed`` (built once, saved).

    Returns (metric, info) with the build time in seconds and whether it was reused.
    ``world``: rank 0 builds and saves it, the other ranks load it.
    """
    if world.distributed:
        with main_first(world):
            return require_metric(ctx, seed, inputs)
    rel = f"models/ngd_metric_seed{seed}.safetensors"
    settings = TransferSettings.from_config(ctx.cfg, "entropy+ngd")
    codes_seed = metric_codes_seed(ctx, seed)
    loaded = ctx.load_current(rel, transfer_config(ctx.cfg))
    if loaded is not None:
        tensors, meta = loaded
        return (ngd.ReferenceMetric.from_tensors(tensors, settings.ngd_damping),
                {**meta, "reused": True, "seconds": ctx.seconds_of(rel)})
    start = time.perf_counter()
    meta = {"config": transfer_config(ctx.cfg), "seed": seed, "codes_seed": codes_seed}
    partial = PartialState(ctx.path(rel.replace(".safetensors", ".partial.safetensors")), meta,
                           ctx.cfg["checkpoint_every_s"])
    metric = build_metric(inputs.generator, inputs.distance, settings, codes_seed,
                          partial=partial)
    seconds = time.perf_counter() - start
    ctx.save_tensors(rel, metric.to_tensors(), meta)
    partial.clear()
    ctx.record_seconds(rel, seconds)
    return metric, {**meta, "reused": False, "seconds": seconds}


def require_transfer(ctx, mode: str, seed: int, inputs: TransferInputs | None = None, *,
                     world: World = SINGLE, **changes: Any) -> tuple[TransferResult, dict]:
    """The generator of ``mode`` for repetition ``seed``, fine-tuned now if missing.

    Saved as ``models/transfer/<mode>_seed<seed>.safetensors`` (G, G_ema and D, the GMI-style
    attack needs D) with its config, history and monitor. ``changes`` override settings
    (the sweep uses them); such results are saved under a name that says so. ``world``:
    fine-tuned data-parallel over its processes, rank 0 writes.
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
                {"reused": True, "seconds": ctx.seconds_of(rel)})
    inputs = inputs or transfer_inputs(ctx, world=world)
    settings = TransferSettings.from_config(ctx.cfg, mode, **changes)
    metric = None
    if mode in NATURAL_GRADIENT_MODES and settings.ngd_mode == "faithful":
        metric, _ = require_metric(ctx, seed, inputs, world)
    partial = PartialState(ctx.path(rel.replace(".safetensors", ".partial.safetensors")),
                           {"config": config, "changes": changes}, ctx.cfg["checkpoint_every_s"])
    start = time.perf_counter()
    result = fine_tune(mode, inputs.generator, inputs.discriminator, inputs.target,
                       inputs.public_images, settings, transfer_seed(ctx, seed),
                       generator_ema=inputs.generator_ema, metric=metric,
                       distance=inputs.distance, device=ctx.device, partial=partial,
                       world=world)
    seconds = time.perf_counter() - start
    if world.main:
        ctx.save_tensors(rel, module_tensors({"G": result.generator,
                                              "G_ema": result.generator_ema,
                                              "D": result.discriminator}),
                         {"config": config, "changes": changes, "mode": mode, "seed": seed,
                          "generator": result.generator.arch_spec,
                          "discriminator": result.discriminator.arch_spec,
                          "history": result.history, "monitor": result.monitor,
                          **world.record})
        ctx.record_seconds(rel, seconds)
    world.barrier()
    return result, {"reused": False, "seconds": seconds}


def natural_gradient_efficiency(ctx, inputs: TransferInputs, metric: ngd.ReferenceMetric,
                                n_samples: int = 10) -> pd.DataFrame:
    """What each direction buys on ``n_samples`` fixed samples of the prior: the entropy
    term's image gradient g at each sample (one seeded target view), the exact metric H of d_P
    at each sample, and ``lib.ngd.direction_efficiencies`` (entropy decrease per unit of
    perceptual cost of the plain gradient, the paper form and the damped form, with the exact
    top-k at the sample and with the reference metric as the transfer uses it: sample i under
    code i mod n_codes). One row per sample and direction."""
    settings = TransferSettings.from_config(ctx.cfg, "entropy+ngd")
    G = inputs.generator.eval()
    z = torch.randn(n_samples, G.z_dim,
                    generator=torch.Generator().manual_seed(ctx.subseed("ngd_efficiency")))
    with torch.no_grad():
        images = G(z)
    x = images.clone().requires_grad_(True)
    with seeded_rng(ctx.seed, "ngd_efficiency/view"):
        logits = inputs.target.eval()(target_view(settings.target_size)(x))
    (grad,) = torch.autograd.grad(entropy_loss(logits, settings.entropy_reduction), x)
    rows = []
    for i in range(n_samples):
        hessian = ngd.exact_hessian(ngd.hessian_vector_product(inputs.distance, images[i]),
                                    images[i].numel())
        found = ngd.direction_efficiencies(grad[i], hessian, settings.ngd_rank, metric,
                                           i % metric.n_codes)
        rows += [{"sample": i, "direction": name, "value": value} for name, value in found.items()]
    return pd.DataFrame(rows)


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
    return {key: generate(r.generator_ema, z, device=ctx.device) for key, r in results.items()}


def public_features(ctx, data, split, evaluator: nn.Module) -> torch.Tensor:
    """E's features of ``fid_samples`` of the GAN's public training images (FID-E's reference)."""
    seen = gan_training_indices(ctx.cfg, split, ctx.subseed("gan_prior"))
    n = min(ctx.cfg["fid_samples"], len(seen))
    public_idx = np.random.default_rng(ctx.subseed("fid")).choice(seen, size=n, replace=False)
    return embed(evaluator, subset(data, public_idx)[0], device=ctx.device)


def evaluator_row(samples: torch.Tensor, target_logits: torch.Tensor, evaluator: nn.Module,
                  private_classes, public_feats: torch.Tensor,
                  device: str | torch.device = "cpu") -> dict[str, float]:
    """How E sees a generator's samples: the share it puts in a private class, its agreement
    with T's label, and FID-E against the public images' features (E on ``device``)."""
    classes = np.asarray(private_classes)
    features, logits = embed_and_logits(evaluator, samples, device=device)
    e_pred = logits.argmax(1).numpy()
    t_pred = classes[target_logits.argmax(1).numpy()]
    return {"E_private_share": float(np.isin(e_pred, classes).mean()),
            "E_agrees_with_T": float((e_pred == t_pred).mean()),
            "fid_e_vs_public": frechet_distance(features, public_feats)}


def evaluator_view(ctx, data, split, samples: dict[tuple[str, int], torch.Tensor],
                   target_logits: dict[tuple[str, int], torch.Tensor],
                   evaluator: nn.Module) -> pd.DataFrame:
    """``evaluator_row`` of every (mode, seed) of ``samples`` (and T's logits on them)."""
    public_feats = public_features(ctx, data, split, evaluator)
    return pd.DataFrame([{"mode": mode, "seed": seed,
                          **evaluator_row(x, target_logits[mode, seed], evaluator,
                                          ctx.cfg["private_classes"], public_feats, ctx.device)}
                         for (mode, seed), x in samples.items()])


# ----------------------------------------------------------------------------- λ sweep
def sweep_file(split_folder: str = "") -> Path:
    """Where the committed sweep lives (``results/entropy_sweep.json``; a contrast split's:
    ``results/<split>/entropy_sweep.json``)."""
    return paths.results_dir() / split_folder / "entropy_sweep.json"


def load_sweep(path: Path | None = None) -> dict | None:
    """The committed sweep's results, or None when it has not been run."""
    return read_json_if_present(path if path is not None else sweep_file())


def sweep_table(sweep_result: dict) -> pd.DataFrame:
    """One row per (mode, λ_H) of a sweep's result: the target's view (final entropy, largest
    class share, collapsed) and the evaluator's (FID-E, E's private share, E agrees with T)."""
    return pd.DataFrame([{"mode": mode, "weight": row["weight"],
                          "chosen": row["weight"] == res["chosen"]["weight"],
                          **{k: row[k] for k in ("final_entropy", "final_max_share",
                                                 "collapsed_any")},
                          **row["evaluator"]}
                         for mode, res in sweep_result["modes"].items() for row in res["rows"]])


def sweep_attack_table(sweep_result: dict) -> pd.DataFrame:
    """One row per (mode, λ_H, metric) of a sweep that recorded C2's metrics of an attack at
    every weight (``attack`` in its rows), with `vanilla`'s value beside; empty for a sweep
    that did not."""
    vanilla = sweep_result.get("vanilla", {}).get("attack") or {}
    rows = [{"mode": mode, "weight": row["weight"], "metric": metric, "value": value,
             "vanilla": vanilla.get(metric), "collapsed": row["collapsed_any"],
             "chosen": row["weight"] == res["chosen"]["weight"]}
            for mode, res in sweep_result["modes"].items() for row in res["rows"]
            for metric, value in (row.get("attack") or {}).items()]
    return pd.DataFrame(rows, columns=["mode", "weight", "metric", "value", "vanilla",
                                       "collapsed", "chosen"])


def _sweep_row(result: TransferResult, report, attack_view=None) -> dict:
    """The monitor's final record of one sweep run, and the evaluator's view (reported only);
    with ``attack_view`` also C2's three metrics of an attack on it (reported only)."""
    final = result.monitor[-1]
    row = {"final_entropy": final["mean_entropy"], "final_confidence": final["mean_confidence"],
           "final_max_share": final["max_share"], "final_class_shares": final["class_shares"],
           "collapsed_any": any(m["collapsed"] for m in result.monitor),
           "evaluator": report(result)}
    if attack_view is not None:
        row["attack"] = attack_view(result)
    return row


def sweep(ctx, modes: tuple[str, ...] = ("entropy", *NATURAL_GRADIENT_MODES), seed: int = 0,
          weights: tuple[float, ...] = SWEEP_WEIGHTS, attack_view=None) -> dict:
    """Fine-tune each mode at each entropy weight (λ_authors; one seed) and choose by
    ``SWEEP_RULE``, which reads the target's view only. Each row also reports the evaluator's
    view of the generator (FID-E, E's private share, E agrees with T), never used to choose;
    ``attack_view`` (``lib.stages.sweep_attacks``): C2's metrics of an attack on each
    generator and on `vanilla`'s, reported, never used to choose."""
    data, split = dataset.load(ctx.cfg)
    inputs = transfer_inputs(ctx, data, split)
    evaluator = require_classifier(ctx, "evaluator", data, split)[0]
    public_feats = public_features(ctx, data, split, evaluator)
    z_eval = torch.randn(ctx.cfg["fid_samples"], inputs.generator.z_dim,
                         generator=torch.Generator().manual_seed(ctx.subseed("eval")))

    def report(result: TransferResult) -> dict:
        samples = generate(result.generator_ema, z_eval, device=ctx.device)
        return evaluator_row(samples, predict_logits(inputs.target, samples, device=ctx.device),
                             evaluator, ctx.cfg["private_classes"], public_feats, ctx.device)

    out: dict[str, Any] = {"rule": SWEEP_RULE, "seed": seed, "units": "authors", "modes": {}}
    for mode in modes:
        grid, scale = list(weights), 1.0
        if mode in NATURAL_GRADIENT_MODES:
            metric, _ = require_metric(ctx, seed, inputs)
            scale = gradient_scale(inputs.generator, inputs.target, metric,
                                   TransferSettings.from_config(ctx.cfg, mode),
                                   transfer_seed(ctx, seed))
            shift = 10.0 ** round(math.log10(scale))
            grid = sorted({float(f"{w / shift:.3g}") for w in weights} | {1.0})
        rows = []
        for weight in grid:
            start = time.perf_counter()
            result, _ = require_transfer(ctx, mode, seed, inputs, entropy_weight=weight)
            rows.append({"weight": weight, **_sweep_row(result, report, attack_view),
                         "seconds": time.perf_counter() - start})
            print(f"{mode:12s} λ={weight:<8g} entropy {rows[-1]['final_entropy']:.3f}  max share "
                  f"{rows[-1]['final_max_share']:.2f}  collapsed {rows[-1]['collapsed_any']}  "
                  f"FID-E {rows[-1]['evaluator']['fid_e_vs_public']:.2f}", flush=True)
        out["modes"][mode] = {"grid": grid, "gradient_scale": scale, "rows": rows,
                              "chosen": choose_weight(rows)}
    vanilla, _ = require_transfer(ctx, "vanilla", seed, inputs)
    out["vanilla"] = _sweep_row(vanilla, report, attack_view)
    return out
