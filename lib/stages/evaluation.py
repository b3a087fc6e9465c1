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
from ..metrics.distances import pairwise_sq_distances
from ..metrics.evaluate import Evaluation, Judge
from ..metrics.inception import inception_pool3
from ..metrics.leaks import BLEND_ALPHAS, LEAK_FRACTIONS, blend, dose, project, same_class_partners
from ..metrics.stats import format_ci
from ..seeding import derive_seed
from .attacks import require_attacks
from .transfer import TransferInputs

Sets = dict[tuple[str, int], tuple[torch.Tensor, np.ndarray, torch.Tensor | None]]
"""(source, seed) → (images, original labels, each image's starting point or None)."""


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
    """The reconstructions of every attack × seed × mode and their starting points, keyed
    ("<attack>/<mode>", seed)."""
    runs, _ = require_attacks(ctx, inputs, target)
    return {(f"{name}/{mode}", seed): (run.images, run.original_labels, run.start_images)
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
    """Every control drawn once per profile seed, keyed (control, seed); controls have no
    starting point."""
    return {(source, seed): (*draw(derive_seed(seed, source)), None)
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
    for (source, seed), (images, labels, starts) in sets.items():
        ev = judge.evaluate(images, labels, starts)
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


# ----------------------------------------------------------------------------- positive controls
def strongest_attack(results: pd.DataFrame, space: str = "d_P") -> str:
    """The attack × mode with the highest mean DDCS_best under ``space`` (claim C1's)."""
    attacks = [s for s in dict.fromkeys(results.source) if "/" in s]
    means = results[results.metric == f"ddcs_best_{space}"].groupby("source")["value"].mean()
    return max(attacks, key=lambda s: means[s])


def _project(ctx, generator: nn.Module, judge: Judge, targets: torch.Tensor, stream: str):
    """``lib.metrics.leaks.project`` with the profile's steps and restarts, seeded by name."""
    return project(generator, judge.distances["d_P"], targets, steps=ctx.cfg["projection_steps"],
                   restarts=ctx.cfg["projection_restarts"], seed=ctx.subseed(stream))


def prior_reach(ctx, judge: Judge, generator: nn.Module) -> pd.DataFrame:
    """The prior's reach (an oracle: no attacker can do it): for a seeded subset of D and of R
    (``reach_per_class`` per class), the d_P distance of the generator's nearest image (an optimised
    code, ``lib.metrics.leaks.project``) to each image, against the image's distance to its
    nearest other same-class image of D ∪ R. ``ratio`` < 1: the generator can come closer to
    that sample than any other real image of its class is."""
    rng = np.random.default_rng(ctx.subseed("prior_reach"))
    pooled = torch.cat([judge.private.embeddings["d_P"], judge.reference.embeddings["d_P"]])
    pooled_labels = np.r_[judge.private.labels, judge.reference.labels]
    rows, targets = [], []
    for name, features, offset in (("D", judge.private, 0),
                                   ("R", judge.reference, len(judge.private.labels))):
        for c in np.unique(features.labels):
            pick = np.sort(rng.choice(np.flatnonzero(features.labels == c),
                                      min(ctx.cfg["reach_per_class"],
                                          int((features.labels == c).sum())), replace=False))
            targets.append(features.images[pick])
            same = np.flatnonzero(pooled_labels == c)
            d = pairwise_sq_distances(pooled[offset + pick], pooled[same]).numpy()
            d[same[None, :] == (offset + pick)[:, None]] = np.inf        # not itself
            rows += [{"set": name, "dataset_index": int(features.indices[i]), "class": int(c),
                      "nearest_other": float(v)} for i, v in zip(pick, d.min(axis=1))]
    _, _, reach = _project(ctx, generator, judge, torch.cat(targets), "prior_reach/project")
    table = pd.DataFrame(rows)
    table["reach"] = reach.numpy()
    table["ratio"] = table["reach"] / table["nearest_other"]
    return table


def leak_embeddings(ctx, data, split, judge: Judge, prior: nn.Module) -> dict[str, torch.Tensor]:
    """d_P embeddings of one leak of every member of D, per kind (rows in D's order): its
    oracle projection onto the prior, and its blends α·member + (1 − α)·a same-class public
    image for every α of ``BLEND_ALPHAS`` (never an exact copy)."""
    members, labels = judge.private.images, judge.private.labels
    _, projected, _ = _project(ctx, prior, judge, members, "leaks/project")
    rng = np.random.default_rng(ctx.subseed("leaks/public"))
    pool = np.sort(rng.choice(split.public, min(len(split.public), 20 * len(labels)),
                              replace=False))
    public, public_labels = subset(data, pool)
    partners = public[same_class_partners(labels, public_labels.numpy(),
                                          ctx.subseed("leaks/partners"))]
    kinds = {"oracle projection": projected}
    kinds |= {f"blend α={alpha}": blend(members, partners, alpha) for alpha in BLEND_ALPHAS}
    return {kind: judge.embed(images, "d_P") for kind, images in kinds.items()}


def dose_response(ctx, judge: Judge, base: Sets, leaks: dict[str, torch.Tensor]) -> pd.DataFrame:
    """C1b's and C1c's tests (under d_P) on the base reconstructions of every seed with a dose
    f of ``LEAK_FRACTIONS`` of them replaced by leaks of each kind (``lib.metrics.leaks.dose``:
    a leak keeps the starting point of the reconstruction it replaces). One row per
    (statistic, kind, fraction, seed) with ``value`` (gap or mean Δ) and ``p``."""
    rows = []
    for (source, seed), (images, labels, starts) in base.items():
        embeddings, start_embeddings = judge.embed(images, "d_P"), judge.embed(starts, "d_P")
        undosed = judge.membership_tests(labels, embeddings, start_embeddings)
        for fraction in LEAK_FRACTIONS:
            replaced, members = dose(labels, judge.private.labels, fraction,
                                     derive_seed(seed, "dose"))
            for kind, leak in leaks.items():
                if fraction == 0:
                    mem, shift = undosed                    # no leak: the same for every kind
                else:
                    dosed = embeddings.clone()
                    dosed[torch.as_tensor(replaced)] = leak[torch.as_tensor(members)]
                    mem, shift = judge.membership_tests(labels, dosed, start_embeddings)
                common = {"kind": kind, "fraction": fraction, "seed": seed, "source": source}
                rows += [{"statistic": "C1b", **common, "value": mem.gap, "p": mem.p_value},
                         {"statistic": "C1c", **common, "value": shift.mean_shift,
                          "p": shift.p_value}]
    return pd.DataFrame(rows)
