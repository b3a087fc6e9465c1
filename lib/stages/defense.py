"""Stage 07: the defender's audit acted on (claim C3b): the target retrained without the
flagged samples F (T′) and, as the control, without as many random ones Q (T_Q, F kept), with
several retraining seeds, each attacked again with the audit's attack, generator and attack
seed. If the flagged samples are exposed *because* T trained on them, their exposure falls
more under T′ than under T_Q."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from ..artifacts import module_tensors
from ..config import role_config
from ..data.images import subset, to_private_labels
from ..defense import split_without, stratified_random_removal
from ..inference import predict_logits
from ..metrics.evaluate import Judge, label_view
from ..metrics.fidelity import topk_accuracy
from ..seeding import derive_seed
from .attacks import AttackRun, require_attack
from .classifiers import classifier_from, fit_classifier
from .transfer import TransferInputs


def retrained_target_file(tag: str) -> str:
    return f"models/defense/target_{tag}.safetensors"


def require_retrained_target(ctx, tag: str, removed, data, split, seed: int):
    """T retrained on D minus ``removed`` (T's config) with ``seed``, saved as
    ``models/defense/target_<tag>.safetensors``. Returns (model, info)."""
    removed = np.sort(np.asarray(removed, dtype=np.int64))
    config = {**role_config("target", ctx.cfg), "removed": removed.tolist(), "seed": seed}
    rel = retrained_target_file(tag)
    loaded = ctx.load_current(rel, config)
    if loaded is not None:
        tensors, meta = loaded
        return classifier_from(tensors, meta["arch"]), {"reused": True,
                                                        "seconds": ctx.seconds_of(rel)}
    start = time.perf_counter()
    model, _, history = fit_classifier("target", ctx.cfg, data, split_without(split, removed),
                                       seed, ctx.device)
    seconds = time.perf_counter() - start
    ctx.save_tensors(rel, module_tensors({"model": model}),
                     {"arch": model.arch_spec, "config": config, "history": history,
                      "tag": tag})
    ctx.record_seconds(rel, seconds)
    return model.eval(), {"reused": False, "seconds": seconds}


@dataclass
class Retraining:
    """What retraining without F (and without a random Q) did, per retraining seed:
    ``drops`` (one row per flagged sample and seed: its DDCS_best fall under T′ and under T_Q,
    scored against the full D), ``effects`` (per condition and seed: the remaining samples'
    DDCS, T's test accuracy, E's view of the new attack) and ``timing``."""
    drops: pd.DataFrame
    effects: pd.DataFrame
    timing: pd.DataFrame
    original_test_acc: float


def retrain_and_attack(ctx, data, split, judge: Judge, inputs: TransferInputs,
                       target: nn.Module, evaluator: nn.Module, audit: pd.DataFrame,
                       audit_run: AttackRun, flags: np.ndarray, space: str) -> Retraining:
    """For each of ``defense_retrain_seeds`` retraining seeds: T′ (T retrained without the
    flagged samples) and T_Q (without as many random ones per class, Q redrawn per seed), both
    trained with that seed; each attacked again like the audit. See ``Retraining``."""
    classes = list(ctx.cfg["private_classes"])
    flagged = audit[flags]
    scores = audit[f"ddcs_best_{space}"].to_numpy()
    x_test, y_test = subset(data, split.test, train=False)
    y_test = to_private_labels(y_test, classes)

    def test_accuracy(model: nn.Module) -> float:
        return topk_accuracy(predict_logits(model, x_test, device=ctx.device), y_test, 1)

    base_acc = test_accuracy(target)
    drops, effects, timing = [], [], []
    for r in range(ctx.cfg["defense_retrain_seeds"]):
        seed = derive_seed(ctx.subseed("target"), f"retrain/{r}")
        removals = {"flagged": flagged.dataset_index.to_numpy(),
                    "random": stratified_random_removal(
                        audit.dataset_index, audit["class"], flagged["class"],
                        derive_seed(ctx.subseed("defense/random"), f"retrain/{r}"))}
        after = {}
        for condition, removed in removals.items():
            tag = f"without-{condition}_r{r}"
            retrained, info = require_retrained_target(ctx, tag, removed, data, split, seed)
            run, run_info = require_attack(ctx, audit_run.name, audit_run.mode, audit_run.seed,
                                           inputs, target=retrained, variant=f"defense-{tag}",
                                           target_file=retrained_target_file(tag))
            after[condition] = judge.ddcs_of(run.images, run.original_labels, space).per_sample_best
            rest = judge.restricted(np.setdiff1d(split.private, removed))
            before_rest = rest.ddcs_of(audit_run.images, audit_run.original_labels, space)
            after_rest = rest.ddcs_of(run.images, run.original_labels, space)
            acc = test_accuracy(retrained)
            effects.append({"retrain_seed": r, "condition": f"remove {condition}",
                            "removed": len(removed), "test_acc": acc,
                            "test_acc_change": acc - base_acc,
                            "remaining_ddcs_before": before_rest.best,
                            "remaining_ddcs_after": after_rest.best,
                            "E_acc1_strict_after": label_view(
                                retrained, evaluator, run.images, run.original_labels,
                                classes, device=ctx.device)["E_acc1_strict"]})
            timing.append({"retrain_seed": r, "condition": condition,
                           "retrain_s": info["seconds"], "attack_s": run_info["seconds"],
                           "reused": info["reused"]})
        for i in np.flatnonzero(flags):
            drops.append({"retrain_seed": r, "dataset_index": int(audit.dataset_index.iloc[i]),
                          "class_name": audit.class_name.iloc[i], "audit": scores[i],
                          "drop_without_flagged": scores[i] - after["flagged"][i],
                          "drop_without_random": scores[i] - after["random"][i]})
    return Retraining(pd.DataFrame(drops), pd.DataFrame(effects), pd.DataFrame(timing), base_acc)
