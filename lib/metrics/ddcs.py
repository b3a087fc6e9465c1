"""DDCS — the Diversity and Distance Composite Score (docs/method.md, "DDCS").

Within each class, every reconstruction is assigned to its nearest training sample (ties go
to the lowest index). A training sample's score is the inverse of the smallest (``best``) or
the mean (``avg``) distance of the reconstructions assigned to it, and 0 when none is. The
dataset score averages over *all* training samples passed in, covered or not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .arrays import as_labels, as_numpy

DEFAULT_EPS = 1e-8
"""Distance floor. Distances are floored at ``eps`` before inversion, so a zero distance (an
exact copy of a training sample) gives the large but finite score ``1 / eps`` instead of inf,
and dataset means stay finite."""


@dataclass(frozen=True)
class DDCSResult:
    """Dataset and per-sample DDCS, and how reconstructions were assigned."""
    best: float                     # DDCS_best = mean over samples of 1 / min assigned distance
    avg: float                      # DDCS_avg = mean over samples of 1 / mean assigned distance
    per_sample_best: np.ndarray     # (N,), 0 for samples no reconstruction was assigned to
    per_sample_avg: np.ndarray      # (N,), 0 likewise
    n_assigned: np.ndarray          # (N,) int, reconstructions assigned to each sample
    assignment: np.ndarray          # (M,) index in 0..N-1 of the sample each one is assigned to
    assigned_distance: np.ndarray   # (M,) its distance to that sample
    min_distance: np.ndarray        # (N,) m_kj, smallest assigned distance, +inf when uncovered

    @property
    def resilient_fraction(self) -> float:
        """Fraction of training samples with score 0 (no reconstruction assigned)."""
        return float(np.mean(self.per_sample_best == 0))


def check_eps(eps: float) -> None:
    """Raise ``ValueError`` unless ``eps`` is a finite positive number."""
    if not (np.isfinite(eps) and eps > 0):
        raise InputError(f"eps must be a finite number > 0 (got {eps}); the default is "
                         f"{DEFAULT_EPS}")


def check_distances(dist: np.ndarray, m: int, n: int) -> None:
    """Raise ``ValueError`` unless ``dist`` is a finite, non-negative (m, n) matrix."""
    if dist.ndim != 2 or dist.shape != (m, n):
        raise InputError(f"distance matrix has shape {dist.shape}; expected (reconstructions, "
                         f"training samples) = ({m}, {n}) from the label lengths")
    if m == 0 or n == 0:
        raise InputError(f"DDCS needs at least one reconstruction and one training sample "
                         f"(got {m} and {n})")
    if not np.isfinite(dist).all():
        raise InputError("NaN or inf in the distance matrix; check the features it came from")
    if (dist < 0).any():
        raise InputError(f"negative distances (min {dist.min():.3g}); a distance must be >= 0 "
                         "(clamp round-off of squared distances at 0)")


Blocks = dict[int, np.ndarray]
"""Distances class by class: ``blocks[c]`` is (rows of class c) × (columns of class c), rows
and columns in their sets' order; pairs of different classes are never stored."""


def class_blocks_of(dist: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray) -> Blocks:
    """The same-class blocks of a dense (rows, columns) matrix, for every class of the rows."""
    return {int(c): dist[np.ix_(np.flatnonzero(row_labels == c), np.flatnonzero(col_labels == c))]
            for c in np.unique(row_labels)}


def check_missing(recon_labels: np.ndarray, train_labels: np.ndarray) -> None:
    """Raise unless every reconstruction class has training samples."""
    missing = sorted(set(np.unique(recon_labels).tolist()) - set(np.unique(train_labels).tolist()))
    if missing:
        raise InputError(f"reconstruction class(es) {missing} have no training samples; pass "
                         "the training samples of every evaluated class")


def check_block(block: np.ndarray, c: int, rows: int, cols: int) -> np.ndarray:
    """``block`` as a float64 array, checked like ``check_distances`` for class ``c``."""
    block = as_numpy(block, np.float64)
    if block.shape != (rows, cols):
        raise InputError(f"class {c}: distance block has shape {block.shape}; expected "
                         f"(reconstructions, training samples of the class) = ({rows}, {cols})")
    if not np.isfinite(block).all():
        raise InputError("NaN or inf in the distance matrix; check the features it came from")
    if block.size and (block < 0).any():
        raise InputError(f"negative distances (min {block.min():.3g}); a distance must be >= 0 "
                         "(clamp round-off of squared distances at 0)")
    return block


def assign(dist: np.ndarray, recon_labels: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
    """Index of the nearest same-class training sample of each reconstruction (lowest on ties)."""
    check_missing(recon_labels, train_labels)
    return assign_blocks(class_blocks_of(dist, recon_labels, train_labels), recon_labels,
                         train_labels)[0]


def assign_blocks(blocks: Blocks, recon_labels: np.ndarray,
                  train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest same-class training sample of each reconstruction, lowest on
    ties; its distance) from the class blocks."""
    nearest = np.empty(len(recon_labels), dtype=np.int64)
    distance = np.empty(len(recon_labels))
    for c in np.unique(recon_labels):                  # per class: memory O(M_c × N_c)
        rows, cols = np.flatnonzero(recon_labels == c), np.flatnonzero(train_labels == c)
        block = check_block(blocks[int(c)], int(c), rows.size, cols.size)
        arg = block.argmin(axis=1)                     # first min → lowest
        nearest[rows] = cols[arg]
        distance[rows] = block[np.arange(rows.size), arg]
    return nearest, distance


def ddcs(dist, recon_labels, train_labels, eps: float = DEFAULT_EPS) -> DDCSResult:
    """DDCS of reconstructions against training samples from an (M, N) distance matrix.

    ``dist[i, j]`` is the distance between reconstruction i and training sample j (numpy or
    torch; only same-class pairs are read, other entries may hold any finite value ≥ 0).
    N is ``len(train_labels)``: samples of classes without reconstructions count with score 0,
    so pass only the evaluated classes. Distances are floored at ``eps`` before inversion.
    ``ddcs_blocks`` is the same from the same-class blocks alone.
    """
    check_eps(eps)
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    train_labels = as_labels(train_labels, "training labels")
    dist = as_numpy(dist, np.float64)
    check_distances(dist, len(recon_labels), len(train_labels))
    check_missing(recon_labels, train_labels)
    return ddcs_blocks(class_blocks_of(dist, recon_labels, train_labels), recon_labels,
                       train_labels, eps)


def ddcs_blocks(blocks: Blocks, recon_labels, train_labels,
                eps: float = DEFAULT_EPS) -> DDCSResult:
    """``ddcs`` from the same-class blocks (``Blocks``): the (M, N) matrix is never built."""
    check_eps(eps)
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    train_labels = as_labels(train_labels, "training labels")
    m, n = len(recon_labels), len(train_labels)
    if m == 0 or n == 0:
        raise InputError(f"DDCS needs at least one reconstruction and one training sample "
                         f"(got {m} and {n})")
    check_missing(recon_labels, train_labels)
    nearest, d = assign_blocks(blocks, recon_labels, train_labels)
    counts = np.bincount(nearest, minlength=n)
    min_dist = np.full(n, np.inf)
    np.minimum.at(min_dist, nearest, d)
    sums = np.bincount(nearest, weights=d, minlength=n)
    covered = counts > 0
    best = np.zeros(n)
    avg = np.zeros(n)
    best[covered] = 1.0 / np.maximum(min_dist[covered], eps)
    avg[covered] = 1.0 / np.maximum(sums[covered] / counts[covered], eps)
    return DDCSResult(best=float(best.mean()), avg=float(avg.mean()), per_sample_best=best,
                      per_sample_avg=avg, n_assigned=counts, assignment=nearest,
                      assigned_distance=d, min_distance=min_dist)
