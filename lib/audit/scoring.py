"""DDCS of an attack's reconstructions, class block by class block, in bounded memory.

DDCS only compares a reconstruction with the training images of its own class, so the
(reconstructions × members) distance matrix is never built whole: per class, the images are
embedded a bounded number at a time, the class's distance block is computed in float64
(``pairwise_sq_distances``) and scored with ``lib.metrics.ddcs``. The per-sample scores are
the same as ``ddcs`` on the full matrix (assignment is within the class, ties to the lowest
index), and the dataset means are taken over all members in their order, as ``ddcs`` does.

The membership test is the judge's (``lib.metrics.membership.membership_gap_blocks``: same
blocks, masks, null and p-value), computed from the class blocks; where a class has more members than
non-members (or fewer), a seeded, equal-size subsample of the larger side enters the test.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..metrics.ddcs import DEFAULT_EPS, DDCSResult, ddcs
from ..metrics.distances import pairwise_sq_distances
from ..metrics.membership import membership_gap_blocks
from .distances import Distance
from .images import ImageSet


class Timings(dict):
    """Wall seconds per phase (reading, embedding, distances, report), accumulated."""

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[phase] = self.get(phase, 0.0) + time.perf_counter() - t0


@dataclass
class SetScores:
    """Per-sample DDCS of one set (members or non-members) against the reconstructions."""
    best: np.ndarray          # (N,) 1 / min assigned distance, 0 when none is assigned
    avg: np.ndarray           # (N,) 1 / mean assigned distance, 0 likewise
    n_assigned: np.ndarray    # (N,) int
    nearest: np.ndarray       # (N,) index of the nearest assigned reconstruction, -1 if none
    nearest_distance: np.ndarray  # (N,) its distance, NaN if none

    @classmethod
    def empty(cls, n: int) -> "SetScores":
        return cls(np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64),
                   np.full(n, -1, dtype=np.int64), np.full(n, np.nan))

    def fill(self, cols: np.ndarray, rows: np.ndarray, res: DDCSResult) -> None:
        """Store one class's result: ``cols`` are its samples, ``rows`` its reconstructions."""
        self.best[cols], self.avg[cols], self.n_assigned[cols] = (
            res.per_sample_best, res.per_sample_avg, res.n_assigned)
        order = np.lexsort((np.arange(len(rows)), res.assigned_distance, res.assignment))
        first = order[np.r_[True, np.diff(res.assignment[order]) != 0]]
        self.nearest[cols[res.assignment[first]]] = rows[first]
        self.nearest_distance[cols[res.assignment[first]]] = res.assigned_distance[first]

    @property
    def ddcs_best(self) -> float:
        return float(self.best.mean())

    @property
    def ddcs_avg(self) -> float:
        return float(self.avg.mean())

    @property
    def resilient_fraction(self) -> float:
        return float(np.mean(self.best == 0))


@dataclass
class MembershipTest:
    """The members-vs-non-members permutation test (claim C1b's, ``membership_gap``)."""
    classes: list[int]            # classes in the test (those with non-members)
    members: np.ndarray           # positions in the members' set that entered the test
    nonmembers: np.ndarray        # positions in the non-members' set that entered the test
    members_best: float           # DDCS_best of the tested members
    nonmembers_best: float        # DDCS_best of the tested non-members
    gap: float
    p_value: float
    null_gaps: np.ndarray
    n_permutations: int
    subsampled: bool              # whether some class was cut to equal sizes
    seed: int


@dataclass
class Scores:
    """Everything the audit computed from the distances."""
    members: SetScores
    nonmembers: SetScores | None = None
    membership: MembershipTest | None = None
    timings: Timings = field(default_factory=Timings)


def _embed_chunks(distance: Distance, images: torch.Tensor, chunk: int,
                  timings: Timings) -> list[torch.Tensor]:
    with timings("embedding"):
        return [distance.embed(images[j:j + chunk]) for j in range(0, len(images), chunk)]


def distance_blocks(distance: Distance, rows: torch.Tensor, column_sets: list[torch.Tensor],
                    chunk: int, timings: Timings) -> list[np.ndarray]:
    """Float64 distance blocks (len(rows), len(cols)) for each of ``column_sets``, embedding
    ``chunk`` images at a time. Every image is embedded once when the columns of the class
    fit in one chunk's memory (then they are kept while the rows stream past); otherwise the
    columns are embedded again for each chunk of rows, so memory stays bounded."""
    out = [np.empty((len(rows), len(cols))) for cols in column_sets]
    kept = (_embed_chunks(distance, torch.cat(column_sets), chunk, timings)
            if sum(len(cols) for cols in column_sets) <= chunk else None)
    for i in range(0, len(rows), chunk):
        with timings("embedding"):
            a = distance.embed(rows[i:i + chunk]).to(torch.float64)
        offset = 0
        for block, cols in zip(out, column_sets):
            parts = ([kept[0][offset:offset + len(cols)]] if kept is not None
                     else _embed_chunks(distance, cols, chunk, timings))
            offset += len(cols)
            for j, b in zip(range(0, len(cols), chunk), parts):
                with timings("distances"):
                    block[i:i + chunk, j:j + chunk] = pairwise_sq_distances(a, b).numpy()
    return out


def _balanced(n_a: int, n_b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions kept on each side so both have min(n_a, n_b): a sorted random sample of the
    larger side, all of the smaller."""
    n = min(n_a, n_b)
    pick = lambda size: np.sort(rng.choice(size, n, replace=False)) if size > n else np.arange(size)
    return pick(n_a), pick(n_b)


def membership_test(blocks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    n_permutations: int, seed: int, subsampled: bool,
                    eps: float = DEFAULT_EPS) -> MembershipTest:
    """``membership_gap_blocks`` (the judge's test) from per-class blocks ``c → (d_members,
    d_nonmembers, member positions, non-member positions)`` with equal numbers of columns per
    class."""
    classes = sorted(blocks)
    rows = np.repeat(classes, [len(blocks[c][0]) for c in classes])
    members = np.repeat(classes, [blocks[c][0].shape[1] for c in classes])
    nonmembers = np.repeat(classes, [blocks[c][1].shape[1] for c in classes])
    result = membership_gap_blocks({c: blocks[c][0] for c in classes},
                                   {c: blocks[c][1] for c in classes}, rows, members,
                                   nonmembers, "best", n_permutations, seed, eps)
    return MembershipTest(classes, np.concatenate([blocks[c][2] for c in classes]),
                          np.concatenate([blocks[c][3] for c in classes]),
                          result.ddcs_members.best, result.ddcs_nonmembers.best, result.gap,
                          result.p_value, result.null_gaps, n_permutations, subsampled, seed)


def score(members: ImageSet, recons: ImageSet, nonmembers: ImageSet | None,
          distance: Distance, memory_bytes: int = 1 << 30, n_permutations: int = 1000,
          seed: int = 0, progress: bool = False, timings: Timings | None = None) -> Scores:
    """Per-sample DDCS of the members (and non-members) against the reconstructions, class by
    class, and the membership test when non-members are given."""
    timings = timings if timings is not None else Timings()
    with timings("embedding"):
        chunk = distance.batch_limit(members.images, memory_bytes // 2)
    out = Scores(SetScores.empty(len(members)),
                 SetScores.empty(len(nonmembers)) if nonmembers is not None else None,
                 timings=timings)
    rng = np.random.default_rng(seed)
    tested, subsampled = {}, False
    bar = tqdm(total=len(members) + (len(nonmembers) if nonmembers is not None else 0),
               desc=f"distances ({distance.name.split(':')[0]})", unit="img", disable=not progress)
    for c in range(len(members.classes)):
        rows = np.flatnonzero(recons.labels == c)
        cols = np.flatnonzero(members.labels == c)
        ncols = (np.flatnonzero(nonmembers.labels == c) if nonmembers is not None
                 else np.zeros(0, dtype=np.int64))
        column_sets = [members.images[cols]] + ([nonmembers.images[ncols]] if ncols.size else [])
        blocks = distance_blocks(distance, recons.images[rows], column_sets, chunk, timings)
        zeros = lambda n: np.zeros(n, dtype=np.int64)
        with timings("distances"):
            out.members.fill(cols, rows, ddcs(blocks[0], zeros(len(rows)), zeros(len(cols))))
            if ncols.size:
                out.nonmembers.fill(ncols, rows, ddcs(blocks[1], zeros(len(rows)),
                                                      zeros(len(ncols))))
                keep_m, keep_n = _balanced(len(cols), len(ncols), rng)
                subsampled |= len(cols) != len(ncols)
                tested[c] = (blocks[0][:, keep_m], blocks[1][:, keep_n], cols[keep_m],
                             ncols[keep_n])
        bar.update(len(cols) + len(ncols))
    bar.close()
    if tested:
        with timings("membership test"):
            out.membership = membership_test(tested, n_permutations, seed, subsampled)
    return out
