"""Choosing the shifted split (docs/protocol.md, "Choosing a shifted split"): each candidate
measured by the four criteria registered there before any was measured — on `vanilla` only, on
the selection seeds 100–102, never on the claim seeds.

``make select-split`` runs it: one run folder per candidate (its T, E, P, prior, `vanilla`
transfers, PPA-style attacks and `random_generator` controls), the same-class split's shift
quantity beside them (criterion 4 compares against it), and writes
``split_selection.json`` into ``results/``, with every measurement and the choice the rule makes.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping

import numpy as np
import torch

from ..claims import soundness_claim
from ..data import dataset
from ..inference import generate
from ..metrics.controls import public_by_target
from ..metrics.fidelity import frechet_distance
from ..seeding import derive_seed
from .attacks import require_attack
from .classifiers import (require_classifiers, require_perceptual_distance, role_classes,
                          test_classifiers)
from .evaluation import build_judge, control_draws, score_sets
from .gan import require_gan
from .transfer import transfer_inputs

CRITERIA_COMMIT = "6eef667a66506eb7b549fc07025096a0c7ee3607"
"""The commit that fixed the criteria and the candidates' design (docs/protocol.md), before
any candidate was measured."""
SELECTION_SEEDS = [100, 101, 102]
CANDIDATES = ("class-disjoint", "cluster-shift")
REFERENCE = "same-class"
SHIFT_REDRAWS = 5
MIN_RESTRICTED_ACC = 0.5
SHIFT_SDS = 2.0


def overrides(kind: str) -> dict[str, Any]:
    """The cpu profile's overrides for measuring ``kind``."""
    return {"split": kind, "seeds": list(SELECTION_SEEDS)}


def penultimate(judge, images: torch.Tensor) -> torch.Tensor:
    """E's penultimate features of ``images`` as the judge extracts them (no distance spaces)."""
    return judge.extract(images, (), small=True)[1]["penultimate"]


def shift_quantity(ctx, data, split, target: torch.nn.Module, prior: torch.nn.Module,
                   judge) -> dict[str, Any]:
    """Criterion 4's quantity: FID-E of the prior's random samples (``fid_samples`` codes) to
    D, minus FID-E of the same samples to an equal-size draw of public images with D's mix of
    T's labels (``public_by_target``), for each of ``SHIFT_REDRAWS`` redraws."""
    cfg = ctx.cfg
    classes = list(cfg["private_classes"])
    codes = torch.randn(cfg["fid_samples"], prior.z_dim,
                        generator=torch.Generator().manual_seed(derive_seed(0, "shift_samples")))
    samples = generate(prior, codes, device=ctx.device)
    sample_features = penultimate(judge, samples, device=ctx.device)
    to_d = frechet_distance(sample_features, judge.private.penultimate, strict=True)
    per_class = len(split.private) // len(classes)
    values = []
    for redraw in range(SHIFT_REDRAWS):
        images, _ = public_by_target(data, split, target, classes, per_class,
                                     derive_seed(redraw, "shift_public_draw"), device=ctx.device)
        to_public = frechet_distance(sample_features, penultimate(judge, images, device=ctx.device),
                                     strict=True)
        values.append(to_d - to_public)
    return {"fid_e_to_D": to_d, "differences": values, "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)), "samples": int(cfg["fid_samples"]),
            "reference_size": int(len(split.private))}


def measure_candidate(ctx) -> dict[str, Any]:
    """Criteria 1–3 and criterion 4's quantity of the split ``ctx.cfg`` names."""
    start = time.perf_counter()
    cfg = ctx.cfg
    data, split = dataset.load(cfg)
    nets = require_classifiers(ctx, data, split)
    acc, _ = test_classifiers(cfg, data, split, nets, ctx.device)
    c0 = soundness_claim(acc["target_test_acc"], acc["evaluator_test_acc_strict"], ctx.profile,
                         len(cfg["private_classes"]),
                         len(role_classes("evaluator", cfg, split)))
    inputs = transfer_inputs(ctx, data, split)
    prior = inputs.generator_ema
    draw = control_draws(ctx, data, split, nets["target"], prior)["random_generator"]
    sets = {}
    for seed in cfg["seeds"]:
        run, _ = require_attack(ctx, "ppa", "vanilla", seed, inputs, target=nets["target"])
        sets["ppa/vanilla", seed] = (run.images, run.original_labels, None)
        sets["random_generator", seed] = (*draw(derive_seed(seed, "random_generator")), None)
    judge = build_judge(ctx, data, split, nets["evaluator"], inputs.distance)
    results = score_sets(ctx, judge, sets, audit=False).results
    wanted = ("ddcs_best_d_P", "coverage", "acc1_restricted", "acc1_strict")
    per_seed = {f"{source}/seed{seed}": {m: float(results[(results.source == source)
                                                          & (results.seed == seed)
                                                          & (results.metric == m)]["value"].iloc[0])
                                         for m in wanted}
                for source, seed in sets}
    return {"split": cfg["split"], "C0": {**acc, "passed": c0["passed"],
                                          "measured": c0["measured"]},
            "per_seed": per_seed,
            "shift": shift_quantity(ctx, data, split, nets["target"], prior, judge),
            "public_size": int(len(split.public)), "seconds": time.perf_counter() - start}


def reference_shift(ctx) -> dict[str, Any]:
    """Criterion 4's quantity on the split ``ctx.cfg`` names (the same-class reference), from
    its T, E, P and prior (reused when the run folder has them)."""
    data, split = dataset.load(ctx.cfg)
    nets = require_classifiers(ctx, data, split)
    distance, _ = require_perceptual_distance(ctx, data, split)
    prior = require_gan(ctx, data, split)[1]
    judge = build_judge(ctx, data, split, nets["evaluator"], distance)
    return shift_quantity(ctx, data, split, nets["target"], prior, judge)


def criteria(candidate: Mapping[str, Any], reference_shift: Mapping[str, Any]) -> dict[str, Any]:
    """The four registered criteria of one candidate's measurements (``measure_candidate``)
    against the same-class split's shift quantity."""
    seeds = SELECTION_SEEDS
    per_seed = candidate["per_seed"]
    restricted = [per_seed[f"ppa/vanilla/seed{s}"]["acc1_restricted"] for s in seeds]
    strict = [per_seed[f"ppa/vanilla/seed{s}"]["acc1_strict"] for s in seeds]
    beats = {m: [per_seed[f"ppa/vanilla/seed{s}"][m] - per_seed[f"random_generator/seed{s}"][m]
                 for s in seeds] for m in ("ddcs_best_d_P", "coverage")}
    shift = candidate["shift"]["mean"] - reference_shift["mean"]
    sd = candidate["shift"]["sd"]
    checks = {
        "1_C0": bool(candidate["C0"]["passed"]),
        "2_restricted_acc1": bool(np.mean(restricted) >= MIN_RESTRICTED_ACC),
        "3_beats_random_generator": bool(all(d > 0 for v in beats.values() for d in v)),
        "4_shift": bool(shift > SHIFT_SDS * sd),
    }
    return {"checks": checks, "passes": all(checks.values()),
            "restricted_acc1_mean": float(np.mean(restricted)),
            "strict_acc1_mean": float(np.mean(strict)),
            "attack_minus_control": beats, "shift_over_same_class": float(shift),
            "shift_sd": sd}


def choose(candidates: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The passing candidate with the larger shift (criterion 4's difference); None when
    neither passes."""
    passing = {k: c for k, c in candidates.items() if c["criteria"]["passes"]}
    if not passing:
        return None
    return max(passing, key=lambda k: passing[k]["criteria"]["shift_over_same_class"])


def finite(x: Any) -> Any:
    """NaN and infinities as None (JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
