"""Stage 07: the defender's audit acted on: the target retrained without the flagged samples
(or without as many random ones) and attacked again."""
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
from .attacks import AttackRun, require_attack
from .classifiers import classifier_from, fit_classifier
from .transfer import TransferInputs


def retrained_target_file(tag: str) -> str:
    return f"models/defense/target_{tag}.safetensors"


def require_retrained_target(ctx, tag: str, removed, data, split):
    """T retrained on D minus ``removed`` (same config and seed as T), saved as
    ``models/defense/target_<tag>.safetensors``. Returns (model, info)."""
    removed = np.sort(np.asarray(removed, dtype=np.int64))
    config = {**role_config("target", ctx.cfg), "removed": removed.tolist()}
    rel = retrained_target_file(tag)
    loaded = ctx.load_current(rel, config)
    if loaded is not None:
        tensors, meta = loaded
        return classifier_from(tensors, meta["arch"]), {"reused": True,
                                                        "seconds": meta["seconds"]}
    start = time.perf_counter()
    model, _, history = fit_classifier("target", ctx.cfg, data, split_without(split, removed),
                                       ctx.subseed("target"), ctx.device)
    seconds = time.perf_counter() - start
    ctx.save_tensors(rel, module_tensors({"model": model}),
                     {"arch": model.arch_spec, "config": config, "history": history,
                      "seconds": seconds, "tag": tag})
    return model.eval(), {"reused": False, "seconds": seconds}


@dataclass
class Action:
    """What acting on the audit did: per condition, the effects and the time it took."""
    effects: pd.DataFrame
    timing: pd.DataFrame
    original_test_acc: float


def act_on_flags(ctx, data, split, judge: Judge, inputs: TransferInputs, target: nn.Module,
                 evaluator: nn.Module, audit: pd.DataFrame, audit_run: AttackRun,
                 flags: np.ndarray, space: str) -> Action:
    """Retrain T without the flagged samples, and without as many random ones per class;
    attack each again with the audit's attack, generator and attack seed; score the
    *remaining* samples before (the audit's run) and after."""
    classes = list(ctx.cfg["private_classes"])
    flagged = audit[flags]
    removals = {"flagged": flagged.dataset_index.to_numpy(),
                "random": stratified_random_removal(audit.dataset_index, audit["class"],
                                                    flagged["class"],
                                                    ctx.subseed("defense/random"))}
    x_test, y_test = subset(data, split.test, train=False)
    y_test = to_private_labels(y_test, classes)

    def test_accuracy(model: nn.Module) -> float:
        return topk_accuracy(predict_logits(model, x_test), y_test, 1)

    base_acc = test_accuracy(target)
    rows, timing = [], []
    for tag, removed in removals.items():
        retrained, info = require_retrained_target(ctx, tag, removed, data, split)
        run, run_info = require_attack(ctx, audit_run.name, audit_run.mode, audit_run.seed,
                                       inputs, target=retrained, variant=f"defense-{tag}",
                                       target_file=retrained_target_file(tag))
        rest = judge.restricted(np.setdiff1d(split.private, removed))
        before = rest.ddcs_of(audit_run.images, audit_run.original_labels, space).per_sample_best
        after = rest.ddcs_of(run.images, run.original_labels, space).per_sample_best
        acc = test_accuracy(retrained)
        rows.append({"condition": f"remove {tag}", "removed": len(removed), "test_acc": acc,
                     "test_acc_change": acc - base_acc, "ddcs_before": before.mean(),
                     "ddcs_after": after.mean(), "ddcs_change": after.mean() - before.mean(),
                     "resilient_before": (before == 0).mean(),
                     "resilient_after": (after == 0).mean(),
                     "E_acc1_strict_after": label_view(retrained, evaluator, run.images,
                                                       run.original_labels,
                                                       classes)["E_acc1_strict"]})
        timing.append({"condition": tag, "retrain_s": round(info["seconds"], 1),
                       "attack_s": round(run_info["seconds"], 1), "reused": info["reused"]})
    return Action(pd.DataFrame(rows), pd.DataFrame(timing), base_acc)
