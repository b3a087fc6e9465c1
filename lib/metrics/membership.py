"""Membership tests of reconstructions (our extensions; claims C1b and C1c).

DDCS alone rewards realistic, diverse images of a class: real non-member images score far
higher than attack output. So the same reconstructions are scored against the private set D
and against the equal-size non-member set R.

- C1b (``membership_gap``): only a positive gap DDCS(D) − DDCS(R) that a permutation test
  finds significant (membership reshuffled within D ∪ R, per class) says the attack leaks the
  training samples themselves rather than plausible class images.
- C1c (``membership_shift``): D and R differ by chance (one may hold more typical images), and
  the raw gap inherits that. The attack-induced statistic compares each final reconstruction r
  with its starting point r₀ (the same code before the optimisation against T):
  Δ = [d(r, nearest R) − d(r, nearest D)] − [d(r₀, nearest R) − d(r₀, nearest D)], nearest
  within the class. A positive mean Δ says the optimisation moved reconstructions toward the
  members more than toward the non-members; its p-value reshuffles membership within D ∪ R per
  class (recomputing mean Δ), which accounts for D and R differing in typicality; a sign-flip
  p-value over the reconstructions is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .arrays import as_labels, as_numpy
from .ddcs import (DEFAULT_EPS, Blocks, DDCSResult, check_block, check_distances, check_eps,
                   class_blocks_of, ddcs_blocks)

STATISTICS = ("best", "avg")
MAX_ELEMENTS = 1 << 23
"""Largest (permutations × reconstructions × pooled samples) tensor built at once (64 MiB)."""
REL_TOL = 1e-9
"""A null gap counts as ≥ the observed one within REL_TOL × the DDCS magnitude: the observed
gap and the null gaps are summed in different orders, so exact ties differ by round-off."""


@dataclass(frozen=True)
class MembershipResult:
    """DDCS against members and non-members, their gap, and its permutation p-value."""
    ddcs_members: DDCSResult
    ddcs_nonmembers: DDCSResult
    statistic: str                             # "best" or "avg"
    gap: float                                 # DDCS(D) − DDCS(R) of that statistic
    p_value: float                             # one-sided, (1 + #{null ≥ gap}) / (1 + P)
    null_gaps: np.ndarray                      # (P,) gaps under reshuffled membership
    n_permutations: int
    per_sample_member_score: np.ndarray        # (N_D,) each member's score against D
    per_sample_nonmember_quantile: np.ndarray  # (N_D,) mid-rank of it among its class's R scores


def _class_blocks(dist_m: np.ndarray, dist_n: np.ndarray, recon_labels: np.ndarray,
                  member_labels: np.ndarray, nonmember_labels: np.ndarray) -> list:
    """``pooled_blocks`` of dense (M, N_D) and (M, N_R) matrices."""
    return pooled_blocks(class_blocks_of(dist_m, recon_labels, member_labels),
                         class_blocks_of(dist_n, recon_labels, nonmember_labels), recon_labels,
                         member_labels, nonmember_labels)


def pooled_blocks(to_members: Blocks, to_nonmembers: Blocks, recon_labels: np.ndarray,
                  member_labels: np.ndarray, nonmember_labels: np.ndarray) -> list:
    """Per class of D ∪ R: (distances of its reconstructions to [its members | its
    non-members] as a float64 tensor, n = members per class), from the class blocks."""
    blocks = []
    for c in np.unique(np.r_[member_labels, nonmember_labels]):
        n_m, n_n = int((member_labels == c).sum()), int((nonmember_labels == c).sum())
        if n_m != n_n:
            raise InputError(f"class {c}: {n_m} members but {n_n} non-members; "
                             "the membership test needs equal numbers per class (subsample "
                             "the larger set)")
        rows = int((recon_labels == c).sum())
        halves = [check_block(side.get(int(c), np.zeros((0, n))), int(c), rows, n)
                  for side, n in ((to_members, n_m), (to_nonmembers, n_n))]
        blocks.append((torch.from_numpy(np.concatenate(halves, 1)), n_m))
    return blocks


def _half_score_sums(block: torch.Tensor, masks: torch.Tensor, statistic: str,
                     eps: float) -> torch.Tensor:
    """(P,) sums of DDCS per-sample scores when only the columns selected by each mask row
    exist: each reconstruction goes to its nearest selected column (lowest on ties).

    Computed in numpy float64 (faster here than torch, whose small reductions carry a
    large fixed cost on few cores)."""
    block, masks = block.numpy(), masks.numpy()
    p, cols = masks.shape
    if block.shape[0] == 0:
        return torch.zeros(p, dtype=torch.float64)
    masked = np.where(masks[:, None, :], block[None], np.inf)             # (P, Mc, 2n)
    idx = masked.argmin(axis=2)                                            # first minimum
    dmin = np.take_along_axis(masked, idx[..., None], axis=2)[..., 0].ravel()
    flat = (idx + cols * np.arange(p)[:, None]).ravel()                    # (perm, column)
    if statistic == "best":
        per = np.full(p * cols, np.inf)
        np.minimum.at(per, flat, dmin)
    else:
        counts = np.bincount(flat, minlength=p * cols)
        sums = np.bincount(flat, weights=dmin, minlength=p * cols)
        per = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    covered = np.isfinite(per)
    scores = np.zeros(p * cols)
    scores[covered] = 1.0 / np.maximum(per[covered], eps)
    return torch.from_numpy(scores.reshape(p, cols).sum(axis=1))


def gaps_for_masks(blocks: list, masks_per_class: list, statistic: str, n_members: int,
                   n_nonmembers: int, eps: float = DEFAULT_EPS,
                   chunk: int = 100) -> np.ndarray:
    """(P,) DDCS(members) − DDCS(non-members) for explicit membership masks, one per class.

    ``masks_per_class[i]`` is a boolean (P, 2n) tensor: True marks the columns of class i's
    block treated as members. Each half is scored with the DDCS rules on its own. At most
    ``chunk`` permutations (fewer for big blocks, see MAX_ELEMENTS) are processed at once.
    """
    if chunk < 1:
        raise InputError(f"chunk must be >= 1 (got {chunk})")
    n_perm = masks_per_class[0].shape[0] if masks_per_class else 0
    total_m = torch.zeros(n_perm, dtype=torch.float64)
    total_n = torch.zeros(n_perm, dtype=torch.float64)
    for (block, _), masks in zip(blocks, masks_per_class):
        step = max(1, min(chunk, MAX_ELEMENTS // max(1, block.numel())))
        for start in range(0, n_perm, step):
            part = masks[start:start + step]
            total_m[start:start + step] += _half_score_sums(block, part, statistic, eps)
            total_n[start:start + step] += _half_score_sums(block, ~part, statistic, eps)
    return (total_m / n_members - total_n / n_nonmembers).numpy()


def random_masks(n: int, n_permutations: int, rng: np.random.Generator) -> torch.Tensor:
    """(P, 2n) boolean masks, each with n randomly chosen True columns."""
    keys = rng.random((n_permutations, 2 * n))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return torch.from_numpy(ranks < n)


def permutation_masks(class_sizes: list[int], n_permutations: int, seed: int) -> list:
    """The masks ``membership_gap`` uses: one (P, 2n) mask per class, drawn class by class
    from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [random_masks(n, n_permutations, rng) for n in class_sizes]


@dataclass(frozen=True)
class ShiftResult:
    """C1c: how far the optimisation moved reconstructions toward D rather than R."""
    mean_shift: float                  # mean Δ over the reconstructions
    p_value: float                     # membership permutation, one-sided: (1 + #{null ≥ Δ}) / (1 + P)
    sign_flip_p: float                 # sign flips of the Δ_i, one-sided
    shifts: np.ndarray                 # (M,) Δ of each reconstruction
    null: np.ndarray                   # (P,) mean Δ under reshuffled membership
    n_permutations: int


def _nearest_pair(block: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, Mc) distances from each row of ``block`` (Mc, 2n) to its nearest column among the
    mask's True columns and among its False columns."""
    inside = np.where(masks[:, None, :], block[None], np.inf).min(axis=2)
    outside = np.where(masks[:, None, :], np.inf, block[None]).min(axis=2)
    return inside, outside


@dataclass(frozen=True)
class StartTerms:
    """The starting points' half of C1c's statistic, which no dose or leak changes: per class,
    [d(r₀, nearest R) − d(r₀, nearest D)] under the observed membership (Mc,) and under each
    chunk of the permutation masks ((chunk, Mc) arrays). ``membership_shift`` computes it, or
    takes it from an earlier call on the same starting points (the dose-response loop)."""
    observed: tuple[np.ndarray, ...]
    null_chunks: tuple[tuple[np.ndarray, ...], ...]
    n_permutations: int
    seed: int
    chunk: int


def shift_start_terms(start_members, start_nonmembers, recon_labels, member_labels,
                      nonmember_labels, n_permutations: int, seed: int,
                      chunk: int = 100) -> StartTerms:
    """``StartTerms`` of starting-point distances (M, N_D) and (M, N_R), with the masks of
    ``permutation_masks(…, n_permutations, seed)``."""
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    mats = [as_numpy(d, np.float64) for d in (start_members, start_nonmembers)]
    for d, labels in zip(mats, (member_labels, nonmember_labels)):
        check_distances(d, len(recon_labels), len(labels))
    return shift_start_terms_blocks(class_blocks_of(mats[0], recon_labels, member_labels),
                                    class_blocks_of(mats[1], recon_labels, nonmember_labels),
                                    recon_labels, member_labels, nonmember_labels,
                                    n_permutations, seed, chunk)


def shift_start_terms_blocks(start_members: Blocks, start_nonmembers: Blocks, recon_labels,
                             member_labels, nonmember_labels, n_permutations: int, seed: int,
                             chunk: int = 100) -> StartTerms:
    """``shift_start_terms`` from the starting points' class blocks."""
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    start = pooled_blocks(start_members, start_nonmembers, recon_labels, member_labels,
                          nonmember_labels)
    masks = permutation_masks([n for _, n in start], n_permutations, seed)
    observed, null_chunks = [], []
    for (sta, n), mask in zip(start, masks):
        sta, mask = sta.numpy(), mask.numpy()
        d_sta, r_sta = _nearest_pair(sta, np.r_[np.ones(n, bool), np.zeros(n, bool)][None])
        observed.append((r_sta - d_sta)[0])
        parts = []
        for lo in range(0, n_permutations, chunk):
            d_sta, r_sta = _nearest_pair(sta, mask[lo:lo + chunk])
            parts.append(r_sta - d_sta)
        null_chunks.append(tuple(parts))
    return StartTerms(tuple(observed), tuple(null_chunks), n_permutations, seed, chunk)


def membership_shift(final_members, final_nonmembers, start_members, start_nonmembers,
                     recon_labels, member_labels, nonmember_labels, n_permutations: int = 1000,
                     seed: int = 0, n_flips: int = 10000, chunk: int = 100,
                     start_terms: StartTerms | None = None) -> ShiftResult:
    """The attack-induced statistic of C1c (see the module) and its two p-values.

    ``final_*`` are (M, N_D) and (M, N_R) distances of the final reconstructions to the
    members and the non-members, ``start_*`` the same for their starting points (row i of
    both is reconstruction i); every class needs as many members as non-members. The
    membership permutation draws its masks like ``membership_gap`` (the same ``seed`` gives
    the same reshuffles). ``start_terms``: the starting points' half from an earlier call
    (``shift_start_terms`` of the same ``start_*``, permutations, seed and chunk); the result
    is the same to the last bit."""
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    mats = [as_numpy(d, np.float64) for d in (final_members, final_nonmembers)]
    for d, labels in zip(mats, (member_labels, nonmember_labels)):
        check_distances(d, len(recon_labels), len(labels))
    starts = None
    if start_terms is None:
        starts = [as_numpy(d, np.float64) for d in (start_members, start_nonmembers)]
        for d, labels in zip(starts, (member_labels, nonmember_labels)):
            check_distances(d, len(recon_labels), len(labels))
        starts = [class_blocks_of(d, recon_labels, labels)
                  for d, labels in zip(starts, (member_labels, nonmember_labels))]
    return membership_shift_blocks(
        class_blocks_of(mats[0], recon_labels, member_labels),
        class_blocks_of(mats[1], recon_labels, nonmember_labels),
        *(starts or (None, None)), recon_labels, member_labels, nonmember_labels,
        n_permutations, seed, n_flips, chunk, start_terms)


def membership_shift_blocks(final_members: Blocks, final_nonmembers: Blocks,
                            start_members: Blocks | None, start_nonmembers: Blocks | None,
                            recon_labels, member_labels, nonmember_labels,
                            n_permutations: int = 1000, seed: int = 0, n_flips: int = 10000,
                            chunk: int = 100, start_terms: StartTerms | None = None
                            ) -> ShiftResult:
    """``membership_shift`` from class blocks (the starting points' only when no
    ``start_terms`` are given)."""
    if n_permutations < 1 or n_flips < 1:
        raise InputError(f"n_permutations and n_flips must be >= 1 (got {n_permutations}, "
                         f"{n_flips})")
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    if start_terms is None:
        start_terms = shift_start_terms_blocks(start_members, start_nonmembers, recon_labels,
                                               member_labels, nonmember_labels, n_permutations,
                                               seed, chunk)
    elif (start_terms.n_permutations, start_terms.seed, start_terms.chunk) != (
            n_permutations, seed, chunk):
        raise InputError("start_terms were computed with other permutations (count, seed or "
                         "chunk); compute them with this call's")
    final = pooled_blocks(final_members, final_nonmembers, recon_labels, member_labels,
                          nonmember_labels)
    masks = permutation_masks([n for _, n in final], n_permutations, seed)
    shifts, null = [], np.zeros(n_permutations)
    for (fin, n), mask, start_observed, start_null in zip(final, masks, start_terms.observed,
                                                          start_terms.null_chunks):
        fin, mask = fin.numpy(), mask.numpy()
        observed = np.r_[np.ones(n, bool), np.zeros(n, bool)][None]
        d_fin, r_fin = _nearest_pair(fin, observed)
        shifts.append(((r_fin - d_fin) - start_observed[None])[0])
        for i, lo in enumerate(range(0, n_permutations, chunk)):
            d_fin, r_fin = _nearest_pair(fin, mask[lo:lo + chunk])
            null[lo:lo + chunk] += ((r_fin - d_fin) - start_null[i]).sum(axis=1)
    shifts = np.concatenate(shifts)
    null /= len(shifts)
    mean = float(shifts.mean())
    tol = REL_TOL * max(1.0, float(np.abs(shifts).max(initial=0.0)))
    p_value = (1 + np.sum(null >= mean - tol)) / (1 + n_permutations)
    flipped = sign_flipped_means(shifts, n_flips, seed)
    sign_flip_p = (1 + np.sum(flipped >= mean - tol)) / (1 + n_flips)
    return ShiftResult(mean, float(p_value), float(sign_flip_p), shifts, null, n_permutations)


FLIP_CHUNK_VALUES = 1 << 22
"""Sign flips are drawn and averaged at most this many values (32 MB of float64) at a time."""


def sign_flipped_means(values: np.ndarray, n_flips: int, seed: int) -> np.ndarray:
    """(n_flips,) means of ``values`` under random signs (±1, each row its own draw from
    ``default_rng(seed)``), drawn a block of rows at a time: the same numbers as drawing the
    whole (n_flips, len(values)) matrix at once, without holding it."""
    rng = np.random.default_rng(seed)
    step = max(1, FLIP_CHUNK_VALUES // max(1, len(values)))
    return np.concatenate([(rng.choice([-1.0, 1.0], size=(min(step, n_flips - lo), len(values)))
                            * values).mean(axis=1) for lo in range(0, n_flips, step)])


def _mid_rank_quantiles(scores: np.ndarray, labels: np.ndarray, ref_scores: np.ndarray,
                        ref_labels: np.ndarray) -> np.ndarray:
    """For each score, (#{same-class ref < it} + ½ #{same-class ref == it}) / #{same-class ref}."""
    quantile = np.empty(len(scores))
    for c in np.unique(labels):
        ref = np.sort(ref_scores[ref_labels == c])
        idx = np.flatnonzero(labels == c)
        lower = np.searchsorted(ref, scores[idx], side="left")
        upper = np.searchsorted(ref, scores[idx], side="right")
        quantile[idx] = (lower + 0.5 * (upper - lower)) / len(ref)
    return quantile


def permutation_test(blocks: list, stat_d: float, stat_r: float, statistic: str,
                     n_members: int, n_nonmembers: int, n_permutations: int, seed: int,
                     eps: float = DEFAULT_EPS, chunk: int = 100) -> tuple[float, float, np.ndarray]:
    """(observed gap, one-sided p, null gaps) of the D-vs-R gap ``stat_d − stat_r`` from the
    per-class ``blocks`` (distances to D ∪ R, number of members), reshuffling membership
    within each class: p = (1 + #{null ≥ observed − tolerance}) / (1 + n_permutations)."""
    observed = stat_d - stat_r
    masks = permutation_masks([n for _, n in blocks], n_permutations, seed)
    null = gaps_for_masks(blocks, masks, statistic, n_members, n_nonmembers, eps, chunk)
    tol = REL_TOL * max(1.0, abs(stat_d), abs(stat_r))
    return observed, (1 + np.sum(null >= observed - tol)) / (1 + n_permutations), null


def membership_gap(dist_members, dist_nonmembers, recon_labels, member_labels,
                   nonmember_labels, statistic: str = "best", n_permutations: int = 1000,
                   seed: int = 0, eps: float = DEFAULT_EPS, chunk: int = 100) -> MembershipResult:
    """The D-vs-R gap of DDCS for the same reconstructions, with a permutation p-value.

    ``dist_members`` is (M, N_D), ``dist_nonmembers`` (M, N_R); every class needs as many
    members as non-members. The null reshuffles, within each class, which half of D ∪ R is
    "members" and rescores both halves with the DDCS rules. One-sided:
    p = (1 + #{null gap ≥ observed}) / (1 + n_permutations).
    """
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    dist_m = as_numpy(dist_members, np.float64)
    dist_n = as_numpy(dist_nonmembers, np.float64)
    check_distances(dist_m, len(recon_labels), len(member_labels))
    check_distances(dist_n, len(recon_labels), len(nonmember_labels))
    return membership_gap_blocks(class_blocks_of(dist_m, recon_labels, member_labels),
                                 class_blocks_of(dist_n, recon_labels, nonmember_labels),
                                 recon_labels, member_labels, nonmember_labels, statistic,
                                 n_permutations, seed, eps, chunk)


def membership_gap_blocks(to_members: Blocks, to_nonmembers: Blocks, recon_labels,
                          member_labels, nonmember_labels, statistic: str = "best",
                          n_permutations: int = 1000, seed: int = 0, eps: float = DEFAULT_EPS,
                          chunk: int = 100) -> MembershipResult:
    """``membership_gap`` from the class blocks (``lib.metrics.ddcs.Blocks``) to D and R: the
    (M, N) matrices are never built."""
    if statistic not in STATISTICS:
        raise InputError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    if n_permutations < 1:
        raise InputError(f"n_permutations must be >= 1 (got {n_permutations})")
    check_eps(eps)
    recon_labels = as_labels(recon_labels, "reconstruction labels")
    member_labels = as_labels(member_labels, "member labels")
    nonmember_labels = as_labels(nonmember_labels, "non-member labels")
    blocks = pooled_blocks(to_members, to_nonmembers, recon_labels, member_labels,
                           nonmember_labels)
    on_d = ddcs_blocks(to_members, recon_labels, member_labels, eps)
    on_r = ddcs_blocks(to_nonmembers, recon_labels, nonmember_labels, eps)
    stat_d, stat_r = getattr(on_d, statistic), getattr(on_r, statistic)
    observed, p_value, null = permutation_test(blocks, stat_d, stat_r, statistic,
                                               len(member_labels), len(nonmember_labels),
                                               n_permutations, seed, eps, chunk)

    score_d = getattr(on_d, f"per_sample_{statistic}")
    score_r = getattr(on_r, f"per_sample_{statistic}")
    quantile = _mid_rank_quantiles(score_d, member_labels, score_r, nonmember_labels)
    return MembershipResult(on_d, on_r, statistic, float(observed), float(p_value), null,
                            n_permutations, score_d, quantile)
