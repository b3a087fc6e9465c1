"""One entry point for every metric of a set of reconstructions, and the per-sample audit.

``Judge`` holds the frozen networks and the features of the private set D and the reference
set R (extracted once; a streaming judge keeps only their small features and embeds a class
when its distance blocks need it). ``Judge.evaluate(images, labels)`` returns the dataset-level
metrics, each with the feature space it was computed in, and the audit table: one row per
private training sample with its DDCS scores, how many reconstructions were assigned to it,
and its nearest reconstruction — which training images an attack leaks. Everything is
computed from same-class distance blocks (``lib.metrics.ddcs.Blocks``); no (M, N) matrix is
built.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from ..data.images import whole
from ..errors import InputError, TooFewSamplesError
from ..models import StagedClassifier
from ..inference import apply, batched, embed as penultimate, predict_logits
from .ddcs import Blocks, DDCSResult, ddcs_blocks
from .distances import PerceptualDistance, pairwise_sq_distances
from .store import ScoreStore, SetScores, module_digest, score_key, tensor_digest
from .fidelity import frechet_distance, knn_distance, per_class_prdc, restricted_accuracy, topk_accuracy
from .membership import (MembershipResult, ShiftResult, StartTerms, membership_gap_blocks,
                         membership_shift_blocks, shift_start_terms_blocks)

# What each feature space is, and how it deviates from the paper (docs/protocol.md).
SPACES = {
    "d_P": "LPIPS-style distance on the attacker's perceptual network P (uniform layer weights); "
           "paper: LPIPS-VGG",
    "d_E": "LPIPS-style distance on the evaluator E (judge side; E never saw D or R)",
    "E-penultimate": "evaluator E's penultimate features; paper: Inception pool3 (FID/PRDC) "
                     "and the evaluator's features (KNN)",
    "E-logits": "evaluator E, 10-way (strict) or restricted to the private classes",
    "Inception-pool3": "ImageNet Inception-v3 pool3 features (the paper's FID); paper profile",
}
DISTANCES = ("d_P", "d_E")


@dataclass
class SetFeatures:
    """Images of a fixed set (D or R) in every feature space, with labels and dataset indices."""
    labels: np.ndarray
    indices: np.ndarray
    embeddings: dict[str, torch.Tensor]
    penultimate: torch.Tensor
    images: torch.Tensor


def class_blocks(emb_a: torch.Tensor, labels_a: np.ndarray, emb_b: torch.Tensor,
                 labels_b: np.ndarray) -> dict[int, np.ndarray]:
    """Per class c of ``labels_a``: the (a's rows of c) × (b's rows of c) squared embedding
    distances (float64), rows and columns in their sets' order."""
    blocks = {}
    for c in np.unique(labels_a):
        rows, cols = np.flatnonzero(labels_a == c), np.flatnonzero(labels_b == c)
        blocks[int(c)] = (pairwise_sq_distances(emb_a[rows], emb_b[cols]).numpy() if cols.size
                          else np.zeros((rows.size, 0)))
    return blocks


def assemble(blocks: dict[int, np.ndarray], labels_a: np.ndarray,
             labels_b: np.ndarray) -> np.ndarray:
    """The (len(a), len(b)) matrix of ``class_blocks``: same-class entries from the blocks,
    other entries 0 (never read by DDCS)."""
    dist = np.zeros((len(labels_a), len(labels_b)))
    for c, block in blocks.items():
        rows, cols = np.flatnonzero(labels_a == c), np.flatnonzero(labels_b == c)
        if cols.size:
            dist[np.ix_(rows, cols)] = block
    return dist


def class_block_distances(emb_a: torch.Tensor, labels_a: np.ndarray, emb_b: torch.Tensor,
                          labels_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared embedding distances for same-class pairs (float64); other
    entries are 0 and are never read by DDCS."""
    return assemble(class_blocks(emb_a, labels_a, emb_b, labels_b), labels_a, labels_b)


@dataclass
class Evaluation:
    """Metrics (name → {value, space}), the audit table, and the underlying results."""
    metrics: dict
    audit: pd.DataFrame
    ddcs: dict[str, DDCSResult] = field(default_factory=dict)
    membership: dict[str, MembershipResult] = field(default_factory=dict)

    def values(self) -> dict[str, float | None]:
        return {k: v["value"] for k, v in self.metrics.items()}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"metric": k, "value": v["value"], "feature space": v["space"],
                              "note": v.get("not_computed", "")}
                             for k, v in self.metrics.items()])


def _concatenate_releasing(parts: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    """``torch.cat`` of ``parts``' tensors under ``key``, each part's tensor dropped once copied:
    the set's small features are held once, not twice (E's logits of 50 reconstructions per
    class are 50 · N² floats: 200 MB at 1,000 identities)."""
    first = parts[0][key]
    out = torch.empty((sum(len(part[key]) for part in parts), *first.shape[1:]),
                      dtype=first.dtype, device=first.device)
    row = 0
    for part in parts:
        piece = part.pop(key)
        out[row:row + len(piece)] = piece
        row += len(piece)
    return out


class Judge:
    """Evaluates reconstructions against D (and R) with the judge's and attacker's networks.

    Every scored set goes through ``scores``: class by class, its distance blocks to D and R
    and E's small per-image features, computed once and kept in the judge's ``ScoreStore``
    (``lib.metrics.store``), so scoring a set again — in another method, another notebook of
    the run, a dose of the positive controls — reuses them."""

    def __init__(self, evaluator: torch.nn.Module, perceptual: torch.nn.Module,
                 private: tuple, reference: tuple, private_classes, k: int = 3,
                 n_permutations: int = 1000, seed: int = 0, allow_not_computed: bool = False,
                 batch_size: int = 256, inception: torch.nn.Module | None = None,
                 class_names: list[str] | None = None, store: ScoreStore | None = None,
                 stream: bool = False, device: str | torch.device = "cpu") -> None:
        """``private`` and ``reference`` are (images, original labels, dataset indices).
        ``perceptual``: a network with ``feature_maps`` or a ready ``PerceptualDistance``
        (LPIPS-VGG); ``inception``: images → pool3 features, for the Inception FID;
        ``class_names``: the data set's class names for the audit table (default: the ids).
        ``allow_not_computed``: a metric with too few samples is reported as not computed
        (smoke sizes) instead of raising. ``store``: where scored sets are kept (default: in
        memory only). ``stream``: D's and R's distance embeddings are never held whole but
        computed for one class when its blocks need them (``class_embedding``), and every
        scored set is embedded a batch at a time (``scores``), so memory is bounded by the
        largest class and one batch, not by the number of classes; the numbers are the same
        (the same batches). ``device``: where every network runs (the distances' matrix
        products too); results come back to the CPU."""
        self.evaluator, self.batch_size = evaluator.eval(), batch_size
        self.stream, self.device = stream, torch.device(device)
        self._last_batch: dict[tuple[str, str], tuple[int, torch.Tensor]] = {}
        self.inception = inception
        self.class_names = class_names
        d_p = (perceptual if isinstance(perceptual, PerceptualDistance)
               else PerceptualDistance(perceptual, name="d_P"))
        self.distances = {"d_P": d_p, "d_E": PerceptualDistance(evaluator, name="d_E")}
        self.private_classes = [int(c) for c in private_classes]
        self.k, self.n_permutations, self.seed = k, n_permutations, seed
        self.allow_not_computed = allow_not_computed
        self.store = store if store is not None else ScoreStore()
        self._parent: Judge | None = None        # set by ``restricted``
        self._keep: np.ndarray | None = None
        self._producer: str | None = None
        self._start_cache: dict[str, StartTerms] = {}   # ``_start_terms``, shared by restrictions
        self.private = self.features(*private)
        self.reference = self.features(*reference)

    def embed(self, images: torch.Tensor, space: str) -> torch.Tensor:
        """``images`` in the distance ``space`` (d_P or d_E); NaN or inf is an error."""
        if space not in self.distances:
            raise InputError(f"unknown distance {space!r}; valid: {', '.join(self.distances)}")
        emb = self.distances[space].embed_batched(images, self.batch_size, self.device)
        return self._finite(emb, space)

    @staticmethod
    def _finite(emb: torch.Tensor, space: str) -> torch.Tensor:
        if not torch.isfinite(emb).all():
            raise InputError(f"NaN or inf in the {space} features of the images; check the "
                             "images (range [-1, 1]) and the network")
        return emb

    def _one_evaluator_pass(self) -> bool:
        """Whether d_E, E's penultimate features and its logits come from one pass of E (its
        stages' maps): a ``StagedClassifier`` whose ``embed`` is the global average of its last
        stage and a d_E on all its maps, untransformed."""
        d_e = self.distances["d_E"]
        return (isinstance(self.evaluator, StagedClassifier)
                and type(self.evaluator).embed is StagedClassifier.embed
                and d_e.input_transform is None and d_e.layers is None)

    def extract(self, images: torch.Tensor, spaces: tuple[str, ...],
                small: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(embeddings in ``spaces``, small features: E's ``penultimate`` and ``logits``, and
        ``Inception-pool3`` when the judge has it — only when ``small``). E runs once per
        batch for its three outputs when it can (``_one_evaluator_pass``); the numbers are
        those of separate passes over the same batches."""
        emb, feats = {}, {}
        fused = small and "d_E" in spaces and self._one_evaluator_pass()
        if fused:
            d_e, E = self.distances["d_E"], self.evaluator
            net_dtype = next(p.dtype for p in E.parameters() if p.is_floating_point())

            def one_pass(x: torch.Tensor) -> torch.Tensor:
                maps = E.feature_maps(x)
                pen = maps[-1].mean(dim=(2, 3))
                return torch.cat([d_e.embed_maps(maps), pen, E.head(pen)], dim=1)

            E.eval().to(self.device)
            out = batched(one_pass, images, self.batch_size, self.device, input_dtype=net_dtype,
                          output_dtype=torch.float32)
            n_emb = out.shape[1] - E.embed_dim - E.head.out_features
            emb["d_E"] = self._finite(out[:, :n_emb].contiguous(), "d_E")
            feats["penultimate"] = out[:, n_emb:n_emb + E.embed_dim].contiguous()
            feats["logits"] = out[:, n_emb + E.embed_dim:].contiguous()
        for space in spaces:
            if space not in emb:
                emb[space] = self.embed(images, space)
        if small and not fused:
            feats["penultimate"] = penultimate(self.evaluator, images, self.batch_size, self.device)
            feats["logits"] = predict_logits(self.evaluator, images, self.batch_size, self.device)
        if small and self.inception is not None:
            feats["Inception-pool3"] = apply(self.inception, images, self.batch_size, self.device)
        return emb, feats

    def features(self, images: torch.Tensor, labels, indices=None) -> SetFeatures:
        """Every feature space of a fixed set (D or R), embeddings kept: the columns of every
        distance block."""
        labels = np.asarray(labels, dtype=np.int64)
        emb, feats = self.extract(images, self.whole_set_spaces(), small=True)
        if self.inception is not None:
            emb["Inception-pool3"] = feats["Inception-pool3"]
        return SetFeatures(labels, np.arange(len(labels)) if indices is None else np.asarray(indices),
                           emb, feats["penultimate"], images)

    def describe(self) -> list[str]:
        """One line per feature space of D: its dimension and how the judge holds it."""
        n = len(self.private.labels)
        lines = [f"{name}: {emb.shape[1]}-dimensional embedding of {len(emb)} private images"
                 for name, emb in self.private.embeddings.items()]
        if self.stream:
            first = int(self.private.labels[0])
            lines = [f"{space}: {self.class_embedding('D', space, first).shape[1]}-dimensional "
                     f"embedding of the {n} private images, computed class by class (never "
                     "held whole)" for space in self.distances] + lines
        return lines + [f"E-penultimate: {self.private.penultimate.shape[1]}-dimensional"]

    def whole_set_spaces(self) -> tuple[str, ...]:
        """The distance spaces embedded a whole set at a time: every one, or none when the
        judge streams (``stream``: class by class)."""
        return () if self.stream else tuple(self.distances)

    def class_embedding(self, side: str, space: str, c: int) -> torch.Tensor:
        """The ``space`` embeddings of class ``c`` of D (``side`` "D") or R ("R"), in the set's
        order: a slice of what the judge holds, or (``stream``) gathered from the batches of
        the set that hold the class — the batches of ``batch_size`` in set order that a judge
        holding the set embeds, so the numbers are the same. Only the last batch computed is
        kept (per side and space): in a set in class order it holds the next class's first
        rows."""
        features = {"D": self.private, "R": self.reference}[side]
        rows = np.flatnonzero(features.labels == c)
        if not self.stream:
            return features.embeddings[space][torch.as_tensor(rows)]
        size, parts = self.batch_size, []
        for j in np.unique(rows // size):
            last = self._last_batch.get((side, space))
            if last is None or last[0] != j:
                last = (int(j), self.embed(features.images[j * size:(j + 1) * size], space))
                self._last_batch[side, space] = last
            inside = rows[(rows >= j * size) & (rows < (j + 1) * size)] - j * size
            parts.append(last[1][torch.as_tensor(inside)])
        return torch.cat(parts) if parts else torch.zeros((0, 0))

    def _block(self, emb: torch.Tensor, side: str, space: str, c: int) -> np.ndarray:
        """Squared distances (float64, on the judge's device) between ``emb`` (images of class
        ``c``) and the class's images of D or R; (rows, 0) when the class has none there."""
        columns = self.class_embedding(side, space, c)
        if len(columns) == 0:
            return np.zeros((len(emb), 0))
        return pairwise_sq_distances(emb.to(self.device), columns.to(self.device)).cpu().numpy()

    def producer(self) -> str:
        """The digest of what this judge's scores depend on: its networks, batch size, and D
        and R (images, labels, indices); part of every store key."""
        if self._producer is None:
            parts = {"evaluator": module_digest(self.evaluator),
                     "inception": module_digest(self.inception), "batch_size": self.batch_size,
                     **{space: module_digest(d) for space, d in self.distances.items()},
                     **{f"{name}/{what}": tensor_digest(value)
                        for name, fs in (("D", self.private), ("R", self.reference))
                        for what, value in (("images", fs.images), ("labels", fs.labels),
                                            ("indices", np.asarray(fs.indices, np.int64)))}}
            self._producer = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()
        return self._producer

    def scores(self, images: torch.Tensor, labels, spaces: tuple[str, ...] = DISTANCES,
               small: bool = True) -> SetScores:
        """A set's distance blocks to D and R in ``spaces`` and (``small``) its small
        features, class by class: from the store, else computed (and stored). ``images``
        may be a ``LazyImages`` (a streaming judge reads it a batch at a time)."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0 or len(labels) != len(images):
            raise InputError(f"a scored set needs one label per image and at least one image "
                             f"(got {len(images)} images, {len(labels)} labels)")
        if self._parent is not None:
            return self._restrict(self._parent.scores(images, labels, spaces, small))
        key = score_key(self.producer(), images, labels, tuple(spaces) + (("small",) if small else ()))
        found = self.store.get(key)
        if found is not None:
            return found
        compute = self._stream_blocks if self.stream else self._held_blocks
        result = SetScores(labels, *compute(images, labels, tuple(spaces), small))
        self.store.put(key, result, {"images": len(labels), "spaces": list(spaces),
                                     "small": small})
        return result

    def _held_blocks(self, images: torch.Tensor, labels: np.ndarray, spaces: tuple[str, ...],
                     small: bool):
        """(blocks to D, blocks to R, small features) of a set embedded whole, then sliced
        class by class (a lazy set is made whole first)."""
        emb, feats = self.extract(whole(images), spaces, small)
        to_private, to_reference = {s: {} for s in spaces}, {s: {} for s in spaces}
        for c in np.unique(labels):
            rows = torch.as_tensor(np.flatnonzero(labels == c))
            for s in spaces:
                to_private[s][int(c)] = self._block(emb[s][rows], "D", s, c)
                to_reference[s][int(c)] = self._block(emb[s][rows], "R", s, c)
        return to_private, to_reference, feats

    def _stream_blocks(self, images: torch.Tensor, labels: np.ndarray,
                       spaces: tuple[str, ...], small: bool):
        """``_held_blocks`` one batch at a time (the same batches of ``batch_size`` in set
        order, so the same numbers): a class's rows are kept until the batch holding its last
        row, then its blocks are computed and its rows dropped. A set in class order (every
        attack's and control's) holds at most one class and one batch of embeddings."""
        size = self.batch_size
        last = {int(c): int(np.flatnonzero(labels == c)[-1]) for c in np.unique(labels)}
        pending: dict[int, dict[str, list[torch.Tensor]]] = {}
        to_private, to_reference = {s: {} for s in spaces}, {s: {} for s in spaces}
        small_parts = []
        for start in range(0, len(labels), size):
            emb, feats = self.extract(images[start:start + size], spaces, small)
            small_parts.append(feats)
            batch_labels = labels[start:start + size]
            for c in np.unique(batch_labels):
                rows = torch.as_tensor(np.flatnonzero(batch_labels == c))
                for s in spaces:
                    pending.setdefault(int(c), {}).setdefault(s, []).append(emb[s][rows])
            for c in [c for c in pending if last[c] < start + size]:
                done = {s: torch.cat(parts) for s, parts in pending.pop(c).items()}
                for s in spaces:
                    to_private[s][c] = self._block(done[s], "D", s, c)
                    to_reference[s][c] = self._block(done[s], "R", s, c)
        order = sorted(last)                       # the classes in ``np.unique``'s order
        to_private = {s: {c: to_private[s][c] for c in order} for s in spaces}
        to_reference = {s: {c: to_reference[s][c] for c in order} for s in spaces}
        feats = {k: _concatenate_releasing(small_parts, k) for k in list(small_parts[0])}
        return to_private, to_reference, feats

    def _restrict(self, scores: SetScores) -> SetScores:
        """A parent judge's scores with D's columns cut to this judge's (``restricted``)."""
        parent_labels = self._parent.private.labels
        cut = {s: {c: block[:, self._keep[parent_labels == c]] for c, block in per_class.items()}
               for s, per_class in scores.to_private.items()}
        return SetScores(scores.labels, cut, scores.to_reference, scores.small)

    def matrices(self, scores: SetScores, space: str) -> tuple[np.ndarray, np.ndarray]:
        """The (M, |D|) and (M, |R|) distance matrices of a scored set in ``space``."""
        return (assemble(scores.to_private[space], scores.labels, self.private.labels),
                assemble(scores.to_reference[space], scores.labels, self.reference.labels))

    def _metric(self, metrics: dict, name: str, space: str, compute) -> None:
        try:
            metrics[name] = {"value": float(compute()), "space": space}
        except TooFewSamplesError as err:
            if not self.allow_not_computed:
                raise
            metrics[name] = {"value": None, "space": space, "not_computed": str(err)}

    def membership_tests(self, labels, to_private: Blocks, to_reference: Blocks,
                         start_private: Blocks | None = None,
                         start_reference: Blocks | None = None
                         ) -> tuple[MembershipResult, ShiftResult | None]:
        """C1b's test (DDCS on D vs R) of reconstructions given their class blocks of
        distances to D and R (``SetScores.to_private[space]``), and C1c's
        (``membership_shift``) when their starting points' are given; nothing else (the
        detection limit calls it many times)."""
        starts = None if start_private is None else (start_private, start_reference)
        return self._tests(self._check_labels(labels), to_private, to_reference, starts)

    def _tests(self, labels: np.ndarray, to_private: Blocks, to_reference: Blocks,
               starts: tuple[Blocks, Blocks] | None):
        """(MembershipResult, ShiftResult or None)."""
        mem = self._membership(to_private, to_reference, labels)
        if starts is None:
            return mem, None
        s_priv, s_ref = starts
        d_members, member_labels = self._member_blocks(to_private)
        s_members, _ = self._member_blocks(s_priv)
        terms = self._start_terms(s_members, s_ref, labels, member_labels)
        shift = membership_shift_blocks(d_members, to_reference, None, None, labels,
                                        member_labels, self.reference.labels,
                                        self.n_permutations, self.seed, start_terms=terms)
        return mem, shift

    def _member_blocks(self, blocks: Blocks) -> tuple[Blocks, np.ndarray]:
        """(blocks to D cut to ``balanced_members``' columns, their labels); the blocks as they
        are when D and R have the same size per class."""
        rows = self.balanced_members()        # as many members as non-members per class
        labels = self.private.labels
        if rows is None:
            return blocks, labels
        chosen = np.zeros(len(labels), dtype=bool)
        chosen[rows] = True
        return {c: b[:, chosen[labels == c]] for c, b in blocks.items()}, labels[rows]

    START_TERMS_KEPT = 8
    """How many starting-point halves of C1c's null a judge keeps (``_start_terms``)."""

    def _start_terms(self, s_members: Blocks, s_ref: Blocks, labels: np.ndarray,
                     member_labels: np.ndarray) -> StartTerms:
        """The starting points' half of C1c's null, computed once per set of starting points
        (the dose-response loop tests the same starts under every dose and leak kind); keyed
        by the digests of the distance blocks and labels and by the null's size and seed, so
        it never serves other starts."""
        parts = [f"{c}:{tensor_digest(b)}" for side in (s_members, s_ref)
                 for c, b in sorted(side.items())]
        key = hashlib.sha256(repr((
            parts, [tensor_digest(x) for x in (labels, member_labels, self.reference.labels)],
            self.n_permutations, self.seed)).encode()).hexdigest()
        cache = self._start_cache
        if key not in cache:
            if len(cache) >= self.START_TERMS_KEPT:
                cache.pop(next(iter(cache)))
            cache[key] = shift_start_terms_blocks(s_members, s_ref, labels, member_labels,
                                                  self.reference.labels, self.n_permutations,
                                                  self.seed)
        return cache[key]

    def _check_labels(self, labels) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        unknown = sorted(set(labels.tolist()) - set(self.private_classes))
        if unknown:
            raise InputError(f"reconstruction labels {unknown} are not private classes "
                             f"{self.private_classes}")
        return labels

    def evaluate(self, images: torch.Tensor, labels,
                 start_images: torch.Tensor | None = None) -> Evaluation:
        """All metrics of reconstructions ``images`` made for classes ``labels`` (original ids);
        with ``start_images`` (each reconstruction's starting point) also C1c's statistic
        under d_P (``shift_*``)."""
        labels = self._check_labels(labels)
        rec = self.scores(images, labels)
        start = (self.scores(start_images, labels, ("d_P",), small=False)
                 if start_images is not None else None)
        priv = self.private
        metrics: dict = {}
        results, members, to_private = {}, {}, {}
        for name in DISTANCES:
            to_d, to_r = rec.to_private[name], rec.to_reference[name]
            starts = ((start.to_private[name], start.to_reference[name])
                      if start is not None and name == "d_P" else None)
            mem, shift = self._tests(labels, to_d, to_r, starts)
            results[name], members[name], to_private[name] = mem.ddcs_members, mem, to_d
            metrics[f"ddcs_best_{name}"] = {"value": mem.ddcs_members.best, "space": name}
            metrics[f"ddcs_avg_{name}"] = {"value": mem.ddcs_members.avg, "space": name}
            metrics[f"resilient_fraction_{name}"] = {
                "value": mem.ddcs_members.resilient_fraction, "space": name}
            metrics[f"ddcs_best_R_{name}"] = {"value": mem.ddcs_nonmembers.best, "space": name}
            metrics[f"gap_DR_{name}"] = {"value": mem.gap, "space": name}
            metrics[f"gap_p_{name}"] = {"value": mem.p_value, "space": name}
            if shift is not None:
                metrics[f"shift_{name}"] = {"value": shift.mean_shift, "space": name}
                metrics[f"shift_p_{name}"] = {"value": shift.p_value, "space": name}
                metrics[f"shift_flip_p_{name}"] = {"value": shift.sign_flip_p, "space": name}
        logits, rec_penultimate = rec.small["logits"], rec.small["penultimate"]
        target = torch.as_tensor(labels)
        metrics["acc1_strict"] = {"value": topk_accuracy(logits, target, 1), "space": "E-logits"}
        metrics["acc5_strict"] = {"value": topk_accuracy(logits, target, 5), "space": "E-logits"}
        metrics["acc1_restricted"] = {"value": restricted_accuracy(logits, labels,
                                                                   self.private_classes),
                                      "space": "E-logits"}
        metrics["knn_dist"] = {"value": knn_distance(rec_penultimate, labels, priv.penultimate,
                                                     priv.labels), "space": "E-penultimate"}
        self._metric(metrics, "fid_e", "E-penultimate",
                     lambda: frechet_distance(rec_penultimate, priv.penultimate, strict=True))
        if "Inception-pool3" in rec.small:
            self._metric(metrics, "fid", "Inception-pool3",
                         lambda: frechet_distance(rec.small["Inception-pool3"],
                                                  priv.embeddings["Inception-pool3"], strict=True))
        try:
            pr = per_class_prdc(priv.penultimate, priv.labels, rec_penultimate, labels, self.k)
            for key, value in pr["mean"].items():
                metrics[key] = {"value": value, "space": "E-penultimate"}
        except TooFewSamplesError as err:
            if not self.allow_not_computed:
                raise
            for key in ("precision", "recall", "density", "coverage"):
                metrics[key] = {"value": None, "space": "E-penultimate", "not_computed": str(err)}
        return Evaluation(metrics, self.audit_table(labels, to_private, results, members),
                          results, members)

    def balanced_members(self) -> np.ndarray | None:
        """Positions in D of a per-class sample as large as R's class (drawn with the judge's
        seed), for the membership test when D has more images per class than R (the face
        split: ~46 vs 3 held out); None when the sizes already agree."""
        priv, ref = self.private.labels, self.reference.labels
        classes = np.unique(np.concatenate([priv, ref]))
        counts = [((priv == c).sum(), (ref == c).sum()) for c in classes]
        if all(m == n for m, n in counts):
            return None
        short = [int(c) for c, (m, n) in zip(classes, counts) if m < n]
        if short:
            raise InputError(f"classes {short[:5]} have fewer members than non-members; the "
                             "membership test needs at least as many members per class")
        rng = np.random.default_rng(self.seed)
        keep = [np.sort(rng.choice(np.flatnonzero(priv == c), n, replace=False))
                for c, (_, n) in zip(classes, counts)]
        return np.sort(np.concatenate(keep))

    def _membership(self, to_private: Blocks, to_reference: Blocks,
                    labels: np.ndarray) -> MembershipResult:
        """The membership test of reconstructions; with more members than non-members per
        class it runs on ``balanced_members`` (DDCS on D itself stays on all of D, and the
        per-sample quantile is NaN for the members outside the sample)."""
        priv, ref = self.private, self.reference
        rows = self.balanced_members()
        d_members, member_labels = self._member_blocks(to_private)
        mem = membership_gap_blocks(d_members, to_reference, labels, member_labels, ref.labels,
                                    "best", self.n_permutations, self.seed)
        if rows is None:
            return mem
        full = ddcs_blocks(to_private, labels, priv.labels)
        quantile = np.full(len(priv.labels), np.nan)
        quantile[rows] = mem.per_sample_nonmember_quantile
        return replace(mem, ddcs_members=full, per_sample_member_score=full.per_sample_best,
                       per_sample_nonmember_quantile=quantile)

    def restricted(self, private_indices) -> "Judge":
        """This judge with D cut down to the dataset indices ``private_indices`` (e.g. what a
        defence kept); features and scored sets are sliced, not computed again. For
        ``ddcs_of``: the membership test of ``evaluate`` needs |D| = |R| per class."""
        wanted = np.asarray(private_indices)
        missing = np.setdiff1d(wanted, self.private.indices)
        if missing.size:
            raise InputError(f"{missing.size} indices are not in the judge's private set (e.g. "
                             f"{missing[:5].tolist()})")
        keep = np.isin(self.private.indices, wanted)
        rows = torch.as_tensor(keep)
        p = self.private
        sub = copy.copy(self)
        sub.private = SetFeatures(p.labels[keep], p.indices[keep],
                                  {k: v[rows] for k, v in p.embeddings.items()},
                                  p.penultimate[rows], p.images[rows])
        sub._parent, sub._keep, sub._producer = self, keep, None
        sub._last_batch = {}
        return sub

    def ddcs_of(self, images: torch.Tensor, labels, space: str = "d_P") -> DDCSResult:
        """DDCS of reconstructions against the judge's private set under ``space`` only: no
        membership test, no other metric (the defence's cheap per-sample scores). The set's
        scores come from the store when it was scored before."""
        labels = np.asarray(labels, dtype=np.int64)
        if space not in self.distances:
            raise InputError(f"unknown distance {space!r}; valid: {', '.join(self.distances)}")
        scores = self.scores(images, labels)
        return ddcs_blocks(scores.to_private[space], labels, self.private.labels)

    def audit_table(self, labels: np.ndarray, to_private: dict[str, Blocks], results: dict,
                    members: dict) -> pd.DataFrame:
        """One row per private training sample: its exposure under each distance.

        ``to_private[name]`` holds the class blocks of (reconstructions × private) distances
        already computed for DDCS; a sample's nearest reconstruction is the first of its class
        at the smallest distance (-1 and inf when its class has none)."""
        priv = self.private
        names = self.class_names
        table = pd.DataFrame({"dataset_index": priv.indices, "class": priv.labels,
                              "class_name": [names[c] if names else str(c) for c in priv.labels]})
        for name, res in results.items():
            nearest = np.full(len(priv.labels), -1, dtype=np.int64)
            nearest_d = np.full(len(priv.labels), np.inf)
            for c, block in to_private[name].items():
                rows, cols = np.flatnonzero(labels == c), np.flatnonzero(priv.labels == c)
                if rows.size and cols.size:
                    first = block.argmin(axis=0)
                    nearest[cols] = rows[first]
                    nearest_d[cols] = block[first, np.arange(cols.size)]
            table[f"ddcs_best_{name}"] = res.per_sample_best
            table[f"ddcs_avg_{name}"] = res.per_sample_avg
            table[f"n_assigned_{name}"] = res.n_assigned
            table[f"nearest_recon_{name}"] = nearest
            table[f"nearest_distance_{name}"] = nearest_d
            table[f"nonmember_quantile_{name}"] = members[name].per_sample_nonmember_quantile
        return table


def label_view(target: torch.nn.Module, evaluator: torch.nn.Module, images: torch.Tensor,
               labels, private_classes, batch_size: int = 256,
               device: str | torch.device = "cpu") -> dict[str, float]:
    """How the target and the evaluator label reconstructions made for original classes
    ``labels``: T's mean confidence in the intended class and its accuracy, E's strict Acc@1
    (10-way) and restricted Acc@1 (private classes only). Only E's numbers measure success:
    an attack optimises T, so T's confidence saturates."""
    classes = [int(c) for c in private_classes]
    labels = np.asarray(labels, dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    t_labels = torch.as_tensor([index[int(c)] for c in labels])
    t_probs = torch.softmax(predict_logits(target, images, batch_size, device), dim=1)
    e_logits = predict_logits(evaluator, images, batch_size, device)
    return {"T_confidence": t_probs.gather(1, t_labels[:, None]).mean().item(),
            "T_acc1": topk_accuracy(t_probs, t_labels, 1),
            "E_acc1_strict": topk_accuracy(e_logits, torch.as_tensor(labels), 1),
            "E_acc1_restricted": restricted_accuracy(e_logits, labels, classes)}
