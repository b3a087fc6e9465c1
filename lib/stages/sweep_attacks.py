"""C2's three metrics at every entropy weight of the committed sweep: for one
seed, the PPA-style attack on each swept generator and on `vanilla`'s, scored by the judge —
reported beside the sweep and in notebook 04's figure, never used to choose a weight (the rule
reads the target's view only, ``lib.transfer.SWEEP_RULE``)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..attacks.interface import run_attack
from ..data import dataset
from ..transfer import TransferResult
from .attacks import attack_seed
from .classifiers import require_classifiers
from .evaluation import build_judge
from .transfer import transfer_inputs

SWEEP_ATTACK_METRICS = ("ddcs_best_d_P", "coverage", "fid_e")


def attack_view(ctx, seed: int) -> Callable[[TransferResult], dict[str, float | None]]:
    """A function of a transfer result: C2's metrics of the PPA-style attack (repetition
    ``seed``'s attack seed, as in the run) on its EMA generator."""
    data, split = dataset.load(ctx.cfg)
    nets = require_classifiers(ctx, data, split)
    inputs = transfer_inputs(ctx, data, split)
    judge = build_judge(ctx, data, split, nets["evaluator"], inputs.distance)
    classes = np.asarray([int(c) for c in ctx.cfg["private_classes"]])

    def view(result: TransferResult) -> dict[str, float | None]:
        out = run_attack("ppa", result.generator_ema.to(ctx.device), inputs.target.to(ctx.device),
                         len(classes), ctx.cfg, attack_seed(ctx, "ppa", seed),
                         discriminator=result.discriminator.to(ctx.device))
        images = out["images"].cpu()
        labels = classes[out["labels"].cpu().numpy()]
        metrics = judge.evaluate(images, labels).metrics
        return {m: metrics[m]["value"] for m in SWEEP_ATTACK_METRICS}

    return view
