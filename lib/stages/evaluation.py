"""Stage 06: every attack run and every control scored by the judge, with the per-sample
audit tables (which training images each attack exposes).

The judge's feature extraction (every feature space of D, R and each scored set) can run
beforehand as its own stage (``require_features``, ``python -m lib.cli stage features``, also
under torchrun, the judge's batches shared out over the processes): it saves each set's
features under ``features/``, and the judge of ``build_judge`` uses a saved set when its images
are the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import claims, weights
from ..artifacts import PartialState, atomic_path, read_manifest, register
from ..config import ATTACKS, MODES
from ..data.images import subset
from ..distributed import SINGLE, World, gather_parts
from ..metrics.controls import public_by_target, random_generator, real_test
from ..metrics.distances import pairwise_sq_distances
from ..inference import predict_logits
from ..metrics.evaluate import Evaluation, Judge, SetFeatures
from ..metrics.store import ScoreStore, SetScores, module_digest, tensor_digest
from ..metrics.inception import inception_pool3
from ..metrics.leaks import (BLEND_ALPHAS, LEAK_FRACTIONS, dose, dosed_blocks, lazy_blend,
                             project, same_class_partners)
from ..metrics.stats import format_ci
from ..seeding import derive_seed
from .attacks import require_attacks
from .classifiers import require_classifiers, require_perceptual_distance
from .gan import require_gan
from .transfer import TransferInputs, transfer_inputs

Sets = dict[tuple[str, int], tuple[torch.Tensor, np.ndarray, torch.Tensor | None]]
"""(source, seed) → (images, original labels, each image's starting point or None)."""


FEATURES = "features"
SCORES = "scores"


def images_digest(images: torch.Tensor) -> str:
    """The sha256 of a tensor of images (its dtype, shape and bytes): the key of its features."""
    return tensor_digest(images)


FLAT_SMALL = ("penultimate", "logits", "Inception-pool3")


class StoredJudge(Judge):
    """The judge, with two additions to its feature extraction (``extract``): a set whose
    features were saved (``saved``: images digest → every feature space, ``features/``) is not
    extracted again, and on several processes (``world``) a set's batches (the judge's own
    batches of ``batch_size``, batch j to rank j mod N) are shared out, every rank getting the
    whole set's features: the same batches as in one process, so the same numbers."""

    def __init__(self, *args, saved: Mapping[str, dict] | None = None,
                 world: World = SINGLE, **kwargs) -> None:
        self.saved, self.world = dict(saved or {}), world
        super().__init__(*args, **kwargs)

    def extract(self, images: torch.Tensor, spaces: tuple[str, ...], small: bool):
        found = self.saved.get(images_digest(images))
        if found is not None and all(s in found for s in spaces) and (
                not small or "penultimate" in found):
            feats = {}
            if small:
                feats = {k: found[k] for k in FLAT_SMALL if k in found}
                if "logits" not in feats:
                    feats["logits"] = predict_logits(self.evaluator, images, self.batch_size,
                                                     self.device)
            return {s: found[s] for s in spaces}, feats
        if not self.world.distributed:
            return super().extract(images, spaces, small)
        starts = list(range(0, len(images), self.batch_size))

        def flat(j: int) -> dict[str, torch.Tensor]:
            emb, feats = super(StoredJudge, self).extract(
                images[starts[j]:starts[j] + self.batch_size], spaces, small)
            return {**emb, **feats}

        parts = {j: flat(j) for j in self.world.shard(range(len(starts)))}
        parts = gather_parts(parts, range(len(starts)), self.world)
        joined = {key: torch.cat([parts[j][key] for j in range(len(starts))]) for key in parts[0]}
        return ({s: joined[s] for s in spaces},
                {k: joined[k] for k in FLAT_SMALL if k in joined and small})

    def set_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every feature space of ``images`` as a flat dict (embeddings and small features);
        a streaming judge's small features only (it never holds a set's embeddings)."""
        emb, feats = self.extract(images, self.whole_set_spaces(), small=True)
        return {**emb, **feats}


def features_config(ctx) -> dict:
    """What saved features depend on: the checkpoints of E and P (their sha256; LPIPS-VGG:
    its input size) and the FID network."""
    manifest = read_manifest(ctx.run_dir)
    sha = {role: manifest.get(f"models/{role}.safetensors", {}).get("sha256")
           for role in ("evaluator", "perceptual")}
    return {"evaluator": sha["evaluator"], "fid_network": ctx.cfg["fid_network"],
            "perceptual": ({"lpips-vgg": ctx.cfg["lpips_resize"]}
                           if ctx.cfg["perc_arch"] == "lpips-vgg" else sha["perceptual"])}


def stored_features(ctx) -> dict[str, dict]:  # the features/ stage's files
    """Every set's saved features in the run folder (images digest → feature spaces); one
    saved under other networks is an error naming the file (``ctx.load_current``)."""
    store, config = {}, features_config(ctx)
    folder = ctx.path(FEATURES)
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else ():
        tensors, meta = ctx.load_current(f"{FEATURES}/{path.name}", config)
        for name, digest in meta["sets"].items():
            store[digest] = {k.split("/", 1)[1]: v for k, v in tensors.items()
                             if k.startswith(name + "/")}
    return store


def build_judge(ctx, data, split, evaluator: nn.Module, perceptual,
                world: World = SINGLE) -> StoredJudge:
    """The judge of a run: E and P (or LPIPS-VGG), the private set D and R, with the
    profile's PRDC k and permutation count, on the run's device, streaming class by class
    when the profile says so (``judge_streaming``); a metric with too few samples (the
    ``real_test`` control at 3 images per identity, the smoke sizes, the memorisation study's
    small D′) is recorded as not computed with the reason, and the run goes on; the Inception
    FID when the profile asks for it. It uses the features saved under ``features/``
    (``require_features``) and shares its extraction out over ``world``."""
    inception = None
    if ctx.cfg["fid_network"] == "inception":
        inception = inception_pool3(weights.require((weights.INCEPTION_WEIGHTS_FILE,)))
    x_d, y_d = subset(data, split.private)
    x_r, y_r = subset(data, split.reference)
    return StoredJudge(evaluator, perceptual, (x_d, y_d.numpy(), split.private),
                       (x_r, y_r.numpy(), split.reference), ctx.cfg["private_classes"],
                       k=ctx.cfg["prdc_k"], n_permutations=ctx.cfg["n_permutations"],
                       seed=ctx.subseed("permutations"), allow_not_computed=True,
                       inception=inception, class_names=list(data.class_names),
                       saved=stored_features(ctx), store=score_store(ctx), world=world,
                       stream=ctx.cfg["judge_streaming"], device=ctx.device)


def score_store(ctx) -> ScoreStore:
    """The run's store of scored sets (``lib.metrics.store``): ``scores/`` in the run folder,
    each file registered and verified, so the notebooks after 06 reuse what it scored."""
    return ScoreStore(ctx.path(SCORES), ctx.run_dir, producer=ctx.notebook)


def _save_features(ctx, name: str, sets: dict[str, tuple[torch.Tensor, dict]]) -> None:
    """Save the features of ``sets`` (set name → (images, features)) as one file."""
    tensors = {f"{key}/{space}": value for key, (_, found) in sets.items()
               for space, value in found.items()}
    ctx.save_tensors(f"{FEATURES}/{name}.safetensors", tensors,
                     {"config": features_config(ctx),
                      "sets": {key: images_digest(images) for key, (images, _) in sets.items()}})


def require_features(ctx, data, split, world: World = SINGLE) -> bool:
    """The judge's features of D, R, every attack run (its reconstructions and starting
    points) and every control, as notebook 06 scores them, saved under ``features/`` (one
    file per set; rank 0 writes). Returns whether every one was already saved."""
    nets = require_classifiers(ctx, data, split, world)
    distance, _ = require_perceptual_distance(ctx, data, split, world)
    judge = build_judge(ctx, data, split, nets["evaluator"], distance, world)
    prior = require_gan(ctx, data, split, world)[1]
    inputs = transfer_inputs(ctx, data, split, world)
    sets = {**attack_sets(ctx, inputs, nets["target"], world),
            **control_sets(ctx, control_draws(ctx, data, split, nets["target"], prior))}
    wanted = {"judge": {"private": (judge.private.images, judge.private),
                        "reference": (judge.reference.images, judge.reference)}}
    for (source, seed), (images, labels, starts) in sets.items():
        members = {"images": (images, labels)}
        if starts is not None:
            members["starts"] = (starts, labels)
        wanted[source_stem(source, seed)] = members
    reused = True
    for name, members in wanted.items():
        if all(images_digest(x) in judge.saved for x, _ in members.values()):
            continue
        reused = False
        found = {key: (x, {**y.embeddings, "penultimate": y.penultimate}
                       if isinstance(y, SetFeatures) else judge.set_features(x))
                 for key, (x, y) in members.items()}     # D and R: the judge has them
        if world.main:
            _save_features(ctx, name, found)
        world.barrier()
    return reused


def attack_sets(ctx, inputs: TransferInputs, target: nn.Module, world: World = SINGLE) -> Sets:
    """The reconstructions of every attack × seed × mode and their starting points, keyed
    ("<attack>/<mode>", seed)."""
    runs, _ = require_attacks(ctx, inputs, target, world)
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
                                                          per_class, seed, device=ctx.device),
        "random_generator": lambda seed: random_generator(prior, target, classes, per_class,
                                                          seed, device=ctx.device),
        "real_test": lambda seed: real_test(data, split, classes, per_class, seed),
    }


def control_sets(ctx, draws: dict[str, Callable]) -> Sets:
    """Every control drawn once per profile seed, keyed (control, seed); controls have no
    starting point."""
    return {(source, seed): (*draw(derive_seed(seed, source)), None)
            for source, draw in draws.items() for seed in ctx.cfg["seeds"]}


def source_stem(source: str, seed: int) -> str:
    """The file name of one source and seed (``ppa/entropy+ngd``, 0 → ``ppa-entropy-ngd_seed0``)."""
    return f"{source.replace('/', '-').replace('+', '-')}_seed{seed}"


def audit_file(source: str, seed: int) -> str:
    """The run-folder path of one audit table."""
    return f"audit/{source_stem(source, seed)}.csv"


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


def score_sets(ctx, judge: Judge, sets: Sets, audit: bool = True) -> Scores:
    """Score every set with the judge; write each audit table (registered) on the way unless
    ``audit`` is False (the studies' sets)."""
    evaluations, rows = {}, []
    for (source, seed), (images, labels, starts) in sets.items():
        ev = judge.evaluate(images, labels, starts)
        evaluations[source, seed] = (ev, images, labels)
        rows += [{"source": source, "seed": seed, "metric": k, **v} for k, v in ev.metrics.items()]
        if not audit:
            continue
        path = ctx.path(audit_file(source, seed))
        with atomic_path(path) as tmp:
            ev.audit.to_csv(tmp, index=False)
        register(ctx.run_dir, path, producer=ctx.notebook, kind="audit")
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


CLAIM_SPACES = {"C0b": "d_P (DDCS), E-penultimate (coverage)",
                "C2": "d_P (DDCS), E-penultimate (coverage, FID-E)"}
"""The feature spaces of notebook 06's claims that are not d_P alone."""


def evaluation_claims(results: pd.DataFrame, split: str) -> dict[str, dict]:
    """Notebook 06's claims in order — C0b, C1, C1b, C1c, C2 — each as ``Context.claim``'s
    arguments plus its ``table``. C1–C2 name (``precondition``) the attack × mode their
    verdict rests on and that attack's C0b result; C1 reads E's restricted accuracy on a
    shifted split (``lib.claims.c1_accuracy``)."""
    out = {"C0b": claims.precondition_claim(results)}
    c0b = out["C0b"]["table"]
    c1 = claims.resilience_claim(results, accuracy=claims.c1_accuracy(split))
    strongest = c1["table"].index[c1["table"]["role"] == "attack"][0]
    c1["precondition"] = claims.precondition_of(c0b, strongest)
    out["C1"] = c1
    for claim_id, compute in (("C1b", claims.membership_claim), ("C1c", claims.shift_claim)):
        claim = compute(results)
        claim["precondition"] = claims.precondition_of(c0b, claim["table"]["value"].idxmax())
        out[claim_id] = claim
    c2 = claims.improvement_claim(results)
    c2["precondition"] = claims.precondition_of(c0b, "ppa/entropy+ngd − ppa/vanilla")
    out["C2"] = c2
    for claim_id, claim in out.items():
        claim["feature_space"] = CLAIM_SPACES.get(claim_id, "d_P")
    return out


def _project(ctx, generator: nn.Module, judge: Judge, targets: torch.Tensor, stream: str):
    """``lib.metrics.leaks.project`` with the profile's steps and restarts, seeded by name;
    resumable batch by batch where the profile saves partial states (``scores/<stream>.partial
    .safetensors``, tied to the settings, the targets and the generator)."""
    settings = {"steps": ctx.cfg["projection_steps"], "restarts": ctx.cfg["projection_restarts"],
                "seed": ctx.subseed(stream)}
    partial = PartialState(
        ctx.path(f"scores/{stream.replace('/', '_')}.partial.safetensors"),
        {**settings, "targets": tensor_digest(targets), "generator": module_digest(generator)},
        ctx.cfg["checkpoint_every_s"])
    out = project(generator, judge.distances["d_P"], targets, **settings, device=ctx.device,
                  partial=partial)
    partial.clear()
    return out


def prior_reach(ctx, judge: Judge, generator: nn.Module) -> pd.DataFrame:
    """The prior's reach (an oracle: no attacker can do it): for a seeded subset of D and of R
    (``reach_per_class`` per class), the d_P distance of the generator's nearest image (an optimised
    code, ``lib.metrics.leaks.project``) to each image, against the image's distance to its
    nearest other same-class image of D ∪ R. ``ratio`` < 1: the generator can come closer to
    that sample than any other real image of its class is."""
    rng = np.random.default_rng(ctx.subseed("prior_reach"))
    rows, targets = [], []
    for name, features in (("D", judge.private), ("R", judge.reference)):
        for c in np.unique(features.labels):
            in_class = np.flatnonzero(features.labels == c)
            pick = np.sort(rng.choice(in_class, min(ctx.cfg["reach_per_class"], in_class.size),
                                      replace=False))
            targets.append(features.images[pick])
            pooled = torch.cat([judge.class_embedding("D", "d_P", c),   # D ∪ R of class c
                                judge.class_embedding("R", "d_P", c)])
            at = np.searchsorted(in_class, pick) + (0 if name == "D" else
                                                    int((judge.private.labels == c).sum()))
            d = pairwise_sq_distances(pooled[at], pooled).numpy()
            d[np.arange(len(at)), at] = np.inf                           # not itself
            rows += [{"set": name, "dataset_index": int(features.indices[i]), "class": int(c),
                      "nearest_other": float(v)} for i, v in zip(pick, d.min(axis=1))]
    _, _, reach = _project(ctx, generator, judge, torch.cat(targets), "prior_reach/project")
    table = pd.DataFrame(rows)
    table["reach"] = reach.numpy()
    table["ratio"] = table["reach"] / table["nearest_other"]
    return table


def leak_scores(ctx, data, split, judge: Judge, prior: nn.Module) -> dict[str, SetScores]:
    """d_P distance blocks (to D and R, class by class) of one leak of every member of D, per
    kind (rows in D's order): its oracle projection onto the prior, and its blends
    α·member + (1 − α)·a same-class public image for every α of ``BLEND_ALPHAS`` (never an
    exact copy), made a slice at a time (only the partners' images are loaded, as needed)."""
    members, labels = judge.private.images, judge.private.labels
    _, projected, _ = _project(ctx, prior, judge, members, "leaks/project")
    rng = np.random.default_rng(ctx.subseed("leaks/public"))
    pool = np.sort(rng.choice(split.public, min(len(split.public), 20 * len(labels)),
                              replace=False))
    pool_labels = data.train_labels[torch.from_numpy(pool)].numpy()
    partners = pool[same_class_partners(labels, pool_labels, ctx.subseed("leaks/partners"))]

    def partner_images(lo: int, hi: int) -> torch.Tensor:     # loaded a slice at a time
        return subset(data, partners[lo:hi])[0]

    kinds = {"oracle projection": projected}
    kinds |= {f"blend α={alpha}": lazy_blend(members, partner_images, alpha)
              for alpha in BLEND_ALPHAS}
    return {kind: judge.scores(images, labels, ("d_P",), small=False)
            for kind, images in kinds.items()}


def dose_response(ctx, judge: Judge, base: Sets, leaks: dict[str, SetScores]) -> pd.DataFrame:
    """C1b's and C1c's tests (under d_P) on the base reconstructions of every seed with a dose
    f of ``LEAK_FRACTIONS`` of them replaced by leaks of each kind (``lib.metrics.leaks.dose``:
    a leak keeps the starting point of the reconstruction it replaces). One row per
    (statistic, kind, fraction, seed) with ``value`` (gap or mean Δ) and ``p``. The base sets'
    distances come from the judge's store (notebook 06 scored them), and the starting points'
    half of C1c's null is computed once per seed."""
    rows = []
    for (source, seed), (images, labels, starts) in base.items():
        scored = judge.scores(images, labels)
        to_d, to_r = scored.to_private["d_P"], scored.to_reference["d_P"]
        started = judge.scores(starts, labels, ("d_P",), small=False)
        s_d, s_r = started.to_private["d_P"], started.to_reference["d_P"]
        undosed = judge.membership_tests(labels, to_d, to_r, s_d, s_r)
        for fraction in LEAK_FRACTIONS:
            replaced, members = dose(labels, judge.private.labels, fraction,
                                     derive_seed(seed, "dose"))
            for kind, leak in leaks.items():
                if fraction == 0:
                    mem, shift = undosed                    # no leak: the same for every kind
                else:
                    mem, shift = judge.membership_tests(
                        labels, dosed_blocks(to_d, labels, replaced, leak.to_private["d_P"],
                                             leak.labels, members),
                        dosed_blocks(to_r, labels, replaced, leak.to_reference["d_P"],
                                     leak.labels, members), s_d, s_r)
                common = {"kind": kind, "fraction": fraction, "seed": seed, "source": source}
                rows += [{"statistic": "C1b", **common, "value": mem.gap, "p": mem.p_value},
                         {"statistic": "C1c", **common, "value": shift.mean_shift,
                          "p": shift.p_value}]
    return pd.DataFrame(rows)
