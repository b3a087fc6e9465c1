"""Stage 06: every attack run and every control scored by the judge, with the per-sample
audit tables (which training images each attack exposes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import weights
from ..artifacts import atomic_path, register
from ..config import ATTACKS, MODES
from ..data.images import subset
from ..metrics.controls import public_by_target, random_generator, real_test
from ..metrics.evaluate import Evaluation, Judge
from ..metrics.inception import inception_pool3
from ..metrics.stats import format_ci
from ..seeding import derive_seed
from .attacks import require_attacks
from .transfer import TransferInputs

Sets = dict[tuple[str, int], tuple[torch.Tensor, np.ndarray]]


def build_judge(ctx, data, split, evaluator: nn.Module, perceptual) -> Judge:
    """The judge of a run: E and P (or LPIPS-VGG), the private set D and R, with the
    profile's PRDC k and permutation count; smoke allows "not computed" for metrics with too
    few samples; the Inception FID when the profile asks for it."""
    inception = None
    if ctx.cfg["fid_network"] == "inception":
        inception = inception_pool3(weights.require((weights.INCEPTION_WEIGHTS_FILE,)))
    x_d, y_d = subset(data, split.private)
    x_r, y_r = subset(data, split.reference)
    return Judge(evaluator, perceptual, (x_d, y_d.numpy(), split.private),
                 (x_r, y_r.numpy(), split.reference), ctx.cfg["private_classes"],
                 k=ctx.cfg["prdc_k"], n_permutations=ctx.cfg["n_permutations"],
                 seed=ctx.subseed("permutations"), allow_not_computed=ctx.profile == "smoke",
                 inception=inception, class_names=list(data.class_names))


def attack_sets(ctx, inputs: TransferInputs, target: nn.Module) -> Sets:
    """The reconstructions of every attack × seed × mode, keyed ("<attack>/<mode>", seed)."""
    runs, _ = require_attacks(ctx, inputs, target)
    return {(f"{name}/{mode}", seed): (run.images, run.original_labels)
            for (name, mode, seed), run in runs.items()}


def control_draws(ctx, data, split, target: nn.Module,
                  prior: nn.Module) -> dict[str, Callable[[int], tuple[torch.Tensor, np.ndarray]]]:
    """The controls, each a function of a seed drawing ``recon_per_class`` images per private
    class: public images labelled by T, the prior's most T-confident random samples, and
    real test images with their true labels."""
    classes, per_class = list(ctx.cfg["private_classes"]), ctx.cfg["recon_per_class"]
    return {
        "public_by_target": lambda seed: public_by_target(data, split, target, classes,
                                                          per_class, seed),
        "random_generator": lambda seed: random_generator(prior, target, classes, per_class,
                                                          seed),
        "real_test": lambda seed: real_test(data, split, classes, per_class, seed),
    }


def control_sets(ctx, draws: dict[str, Callable]) -> Sets:
    """Every control drawn once per profile seed, keyed (control, seed)."""
    return {(source, seed): draw(derive_seed(seed, source))
            for source, draw in draws.items() for seed in ctx.cfg["seeds"]}


def audit_file(source: str, seed: int) -> str:
    """The run-folder path of one audit table (``ppa/entropy+ngd`` → ``ppa-entropy-ngd``)."""
    return f"audit/{source.replace('/', '-').replace('+', '-')}_seed{seed}.csv"


@dataclass
class Scores:
    """Every scored set: the long table of metrics (source, seed, metric, value, space) and,
    per (source, seed), its ``Evaluation`` with the images and labels it scored."""
    results: pd.DataFrame
    evaluations: dict[tuple[str, int], tuple[Evaluation, torch.Tensor, np.ndarray]]

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(self.results.source))

    def mean_of(self, source: str, metric: str) -> float:
        """The mean over seeds of one metric of one source."""
        r = self.results
        return r[(r.source == source) & (r.metric == metric)]["value"].mean()


def score_sets(ctx, judge: Judge, sets: Sets) -> Scores:
    """Score every set with the judge; write each audit table (registered) on the way."""
    evaluations, rows = {}, []
    for (source, seed), (images, labels) in sets.items():
        ev = judge.evaluate(images, labels)
        evaluations[source, seed] = (ev, images, labels)
        path = ctx.path(audit_file(source, seed))
        with atomic_path(path) as tmp:
            ev.audit.to_csv(tmp, index=False)
        register(ctx.run_dir, path, producer=ctx.notebook, kind="audit")
        rows += [{"source": source, "seed": seed, "metric": k, **v} for k, v in ev.metrics.items()]
    return Scores(pd.DataFrame(rows), evaluations)


def _cell(values: pd.Series, metric: str) -> str:
    if values.isna().all():
        return "not computed"
    if metric.startswith("gap_p"):      # p-values: each seed's, no interval of a mean
        return " ".join(f"{v:.3g}" for v in values)
    return format_ci(values.dropna())


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """Metric × source: the mean over seeds with a 95% t-interval (p-values per seed), and
    each metric's feature space."""
    table = (results.groupby(["metric", "source"], sort=False)["value"]
             .apply(lambda v: _cell(v, v.name[0])).unstack("source"))
    table.insert(0, "feature space", results.groupby("metric", sort=False)["space"].first())
    return table


def source_groups(sources: list[str]) -> dict[str, list[str]]:
    """The sources by attack (its modes) and the controls, for display."""
    groups = {name: [f"{name}/{m}" for m in MODES] for name in ATTACKS}
    groups["controls"] = [s for s in sources if "/" not in s]
    return groups
