"""The committed study of our fourth mode, ``entropy+ngd-damped`` (claim C2d).

It fine-tunes the prior in that mode for every profile seed and attacks it with the PPA-style
attack, in a run folder that already holds (or now builds) the three paper modes with the same
seeds, so that every comparison is paired: the transfer's monitor and E's view of the four
modes, the evaluation of the four modes' attack runs, and C2d (damped − vanilla) by C2's own
criterion. ``make ngd-damped`` runs it (outside ``make reproduce``) and writes
``results/ngd_damped_study.json``; notebook 04 shows its transfer rows beside the others and
notebook 99 its claim, labelled with the commit and run it comes from.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import paths
from ..artifacts import read_json_if_present
from ..claims import IMPROVEMENT_CLAIMS, improvement_claim, improvement_criterion
from ..config import ALL_MODES, attack_config, transfer_config
from ..data import dataset
from ..inference import predict_logits
from ..run.summary import by_source_record
from .attacks import require_attack
from .classifiers import require_classifiers
from .evaluation import build_judge, score_sets
from .transfer import (evaluator_view, mode_samples, monitor_table, require_transfer,
                       transfer_inputs)

MODE = "entropy+ngd-damped"
NOT_READ = "not run here: "   # the status of a committed study this run does not apply to


def study_file() -> Path:
    return paths.results_dir() / "ngd_damped_study.json"


def run_study(ctx) -> dict[str, Any]:
    """Transfers of every mode and seed, their PPA-style attacks, the evaluation and C2d."""
    start = time.perf_counter()
    data, split = dataset.load(ctx.cfg)
    nets = require_classifiers(ctx, data, split)
    inputs = transfer_inputs(ctx, data, split)
    seeds = list(ctx.cfg["seeds"])
    transfers = {(mode, seed): require_transfer(ctx, mode, seed, inputs)[0]
                 for seed in seeds for mode in ALL_MODES}
    samples = mode_samples(ctx, transfers, inputs.generator.z_dim)
    logits = {key: predict_logits(inputs.target, x, device=ctx.device) for key, x in samples.items()}
    transfer_rows = monitor_table(transfers).merge(
        evaluator_view(ctx, data, split, samples, logits, nets["evaluator"]), on=["mode", "seed"])
    sets = {}
    for seed in seeds:
        for mode in ALL_MODES:
            run, _ = require_attack(ctx, "ppa", mode, seed, inputs, target=nets["target"])
            sets[f"ppa/{mode}", seed] = (run.images, run.original_labels, run.start_images)
    judge = build_judge(ctx, data, split, nets["evaluator"], inputs.distance)
    scores = score_sets(ctx, judge, sets)
    claim = improvement_claim(scores.results, treatment=MODE, beside=("entropy", "entropy+ngd"))
    table = claim.pop("table")
    return {"claim": {"id": "C2d", **claim}, "claim_table": table.to_dict(orient="records"),
            "transfer": transfer_rows.to_dict(orient="records"),
            "attacks": by_source_record(scores.results), "seeds": seeds,
            "config": {"transfer": transfer_config(ctx.cfg), "attack": attack_config(ctx.cfg, "ppa")},
            "seconds": time.perf_counter() - start}


def load_study() -> dict | None:
    """The committed study's results, or None when it has not been run."""
    return read_json_if_present(study_file())


def matches(study: dict, cfg) -> str:
    """Why a committed study does not apply to a config ("" when it does)."""
    if study.get("profile") != cfg["profile"]:
        return f"the committed study is for the {study.get('profile')} profile"
    if study["config"] != {"transfer": transfer_config(cfg), "attack": attack_config(cfg, "ppa")}:
        return "the committed study was made under another transfer or attack config"
    return ""


def committed_claim(cfg) -> dict[str, Any]:
    """C2d's ``Context.claim`` arguments from the committed study, labelled with its commit, date
    and run; ``passed=None`` with a status when the study has not been run or was made under
    another profile or config."""
    base = {"claim": IMPROVEMENT_CLAIMS[MODE], "criterion": improvement_criterion(MODE)}
    study = load_study()
    if study is None:
        return {**base, "measured": "not measured", "passed": None,
                "status": "not run: the committed study results/ngd_damped_study.json does not "
                          "exist (make ngd-damped)"}
    source = (f"from the committed study results/{study_file().name} "
              f"(commit {study['git_commit'][:10]}, "
              f"{study['date'][:10]}, run {Path(study['run_dir']).name})")
    why = matches(study, cfg)
    if why:
        return {**base, "measured": "not measured under this config", "passed": None,
                "status": f"{NOT_READ}{why}",
                "details": f"{source}, which measured: {study['claim']['measured']}"}
    claim = {k: v for k, v in study["claim"].items() if k != "id"}
    return {**claim, "details": f"{claim['details']}; {source}"}
