"""Membership-calibrated DDCS (our extension; PROTOCOL.md claim C1b).

DDCS alone rewards realistic, diverse images of a class: real non-member images score far
higher than attack output. So the same reconstructions are scored against the private set D
and against the equal-size non-member set R. Only a positive gap DDCS(D) − DDCS(R) that a
permutation test finds significant (membership reshuffled within D ∪ R, per class) says the
attack leaks the training samples themselves rather than plausible class images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ddcs import DEFAULT_EPS, DDCSResult, _as_numpy, check_distances, ddcs

STATISTICS = ("best", "avg")


@dataclass(frozen=True)
class MembershipResult:
    """DDCS against members and non-members, their gap, and its permutation p-value."""
    ddcs_members: DDCSResult
    ddcs_nonmembers: DDCSResult
    statistic: str
    gap: float
    p_value: float
    null_gaps: np.ndarray
    n_permutations: int
    per_sample_member_score: np.ndarray        # (N_D,) each member's score against D
    per_sample_nonmember_quantile: np.ndarray  # (N_D,) mid-rank of it among its class's R scores


def _class_blocks(dist_m, dist_n, recon_labels, member_labels, nonmember_labels):
    """Per class: (distances of its reconstructions to [its members | its non-members], n)."""
    blocks = []
    for c in np.unique(np.r_[member_labels, nonmember_labels]):
        cols_m, cols_n = np.flatnonzero(member_labels == c), np.flatnonzero(nonmember_labels == c)
        if cols_m.size != cols_n.size:
            raise ValueError(f"class {c}: {cols_m.size} members but {cols_n.size} non-members; "
                             "the membership test needs equal numbers per class")
        rows = np.flatnonzero(recon_labels == c)
        block = np.concatenate([dist_m[np.ix_(rows, cols_m)], dist_n[np.ix_(rows, cols_n)]], 1)
        blocks.append((torch.from_numpy(block), cols_m.size))
    return blocks


def _half_score_sums(block: torch.Tensor, masks: torch.Tensor, statistic: str,
                     eps: float) -> torch.Tensor:
    """Σ of per-sample scores over the columns selected by each mask row (P,)."""
    if block.shape[0] == 0:
        return torch.zeros(masks.shape[0], dtype=torch.float64)
    masked = torch.where(masks[:, None, :], block[None], torch.inf)      # (P, Mc, 2n)
    dmin, idx = masked.min(dim=2)                                          # (P, Mc)
    p, cols = masks.shape
    if statistic == "best":
        per = torch.full((p, cols), torch.inf, dtype=torch.float64)
        per.scatter_reduce_(1, idx, dmin, reduce="amin")
    else:
        sums = torch.zeros((p, cols), dtype=torch.float64).scatter_add_(1, idx, dmin)
        counts = torch.zeros((p, cols), dtype=torch.float64).scatter_add_(
            1, idx, torch.ones_like(dmin))
        per = torch.where(counts > 0, sums / counts.clamp(min=1), torch.inf)
    scores = torch.where(torch.isfinite(per), 1.0 / per.clamp(min=eps), 0.0)
    return scores.sum(dim=1)


def gaps_for_masks(blocks, masks_per_class, statistic: str, n_members: int, n_nonmembers: int,
                   eps: float = DEFAULT_EPS) -> np.ndarray:
    """DDCS(members) − DDCS(non-members) for explicit membership masks, one per class.

    ``masks_per_class[i]`` is a boolean (P, 2n) tensor: True marks the columns of class i's
    block treated as members. Each half is scored with the DDCS rules on its own.
    """
    total_m = total_n = 0.0
    for (block, _), masks in zip(blocks, masks_per_class):
        total_m = total_m + _half_score_sums(block, masks, statistic, eps)
        total_n = total_n + _half_score_sums(block, ~masks, statistic, eps)
    return (total_m / n_members - total_n / n_nonmembers).numpy()


def random_masks(n: int, n_permutations: int, rng: np.random.Generator) -> torch.Tensor:
    """(P, 2n) boolean masks, each with n randomly chosen True columns."""
    keys = rng.random((n_permutations, 2 * n))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return torch.from_numpy(ranks < n)


def membership_gap(dist_members, dist_nonmembers, recon_labels, member_labels,
                   nonmember_labels, statistic: str = "best", n_permutations: int = 1000,
                   seed: int = 0, eps: float = DEFAULT_EPS, chunk: int = 100) -> MembershipResult:
    """The D-vs-R gap of DDCS for the same reconstructions, with a permutation p-value.

    One-sided: p = (1 + #{null gap ≥ observed}) / (1 + n_permutations).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1 (got {n_permutations})")
    recon_labels = _as_numpy(recon_labels).astype(np.int64).ravel()
    member_labels = _as_numpy(member_labels).astype(np.int64).ravel()
    nonmember_labels = _as_numpy(nonmember_labels).astype(np.int64).ravel()
    dist_m = _as_numpy(dist_members, np.float64)
    dist_n = _as_numpy(dist_nonmembers, np.float64)
    check_distances(dist_m, len(recon_labels), len(member_labels))
    check_distances(dist_n, len(recon_labels), len(nonmember_labels))
    on_d = ddcs(dist_m, recon_labels, member_labels, eps)
    on_r = ddcs(dist_n, recon_labels, nonmember_labels, eps)
    observed = getattr(on_d, statistic) - getattr(on_r, statistic)

    blocks = _class_blocks(dist_m, dist_n, recon_labels, member_labels, nonmember_labels)
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, n_permutations, chunk):
        p = min(chunk, n_permutations - start)
        masks = [random_masks(n, p, rng) for _, n in blocks]
        null.append(gaps_for_masks(blocks, masks, statistic, len(member_labels),
                                   len(nonmember_labels), eps))
    null = np.concatenate(null)
    p_value = (1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations)

    score_d = getattr(on_d, f"per_sample_{statistic}")
    score_r = getattr(on_r, f"per_sample_{statistic}")
    quantile = np.empty(len(member_labels))
    for i, (c, s) in enumerate(zip(member_labels, score_d)):
        ref = score_r[nonmember_labels == c]
        quantile[i] = (np.sum(ref < s) + 0.5 * np.sum(ref == s)) / len(ref)
    return MembershipResult(on_d, on_r, statistic, float(observed), float(p_value), null,
                            n_permutations, score_d, quantile)
