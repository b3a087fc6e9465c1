"""DDCS for defence (docs/method.md, "DDCS for defence"; claim C3): flag the training samples most at risk.

The defender runs the attack itself on its own model, ranks the private samples by their
per-sample DDCS (the audit), and asks three questions:

1. Does the ranking generalise? ``compare_rankings`` against the per-sample scores of
   independent runs: Spearman ρ (average ranks for ties) with a Fisher-z interval, and the
   precision of the top fraction (the share of the audit's flagged samples the other run
   also flags) against chance, with a Clopper–Pearson interval and a hypergeometric p-value.
2. Do cheaper signals that need no attack predict it? ``cheap_signals``: the target's
   confidence in each sample's class, the sample's typicality among public images and its
   proximity to random samples of the attacker's prior, in the attacker's perceptual space.
3. Does acting on it help? ``lib.stages.defense`` retrains the target without the flagged
   samples (``split_without``), or without as many random ones
   (``stratified_random_removal``), attacks again and compares the remaining samples' DDCS.

Ties in the top-fraction cut are broken at random with a fixed seed (docs/protocol.md).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .errors import InputError
from .inference import predict_logits
from .metrics.distances import pairwise_sq_distances

SIGNALS = {
    "target_confidence": "T's softmax probability of the sample's own class (higher: fitted "
                         "more confidently)",
    "public_typicality": "minus the mean d_P distance to the sample's k nearest public images "
                         "(higher: more like what the attacker's GAN learned from)",
    "prior_proximity": "minus the d_P distance to the nearest of N random samples of the "
                       "attacker's prior (higher: the prior already produces look-alikes)",
}


# ----------------------------------------------------------------------------- rankings
def top_flags(scores, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction · n)`` highest ``scores``; ties at the cut are
    broken at random with ``seed`` (many scores are 0)."""
    x = np.asarray(scores, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"need a non-empty 1-D array of scores; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("NaN or inf in the scores; per-sample scores must be finite")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction must lie in (0, 1); got {fraction}")
    k = math.ceil(fraction * x.size)
    jitter = np.random.default_rng(seed).random(x.size)
    order = np.lexsort((-jitter, -x))          # by score (desc), then a random tie-break
    flags = np.zeros(x.size, dtype=bool)
    flags[order[:k]] = True
    return flags


def compare_rankings(reference, other, fraction: float = 0.1, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """How well ``other``'s per-sample scores reproduce the ``reference`` ranking.

    Returns Spearman ``rho`` (average ranks), its two-sided ``rho_p`` and Fisher-z interval
    ``rho_low``/``rho_high``; ``precision`` = |top(ref) ∩ top(other)| / |top(ref)| with a
    Clopper–Pearson interval, ``chance`` (= the flagged fraction), ``lift`` = precision /
    chance and ``precision_p`` (hypergeometric: overlap at least this large by chance).
    """
    a, b = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"need two per-sample score vectors over the same samples; got "
                         f"shapes {a.shape} and {b.shape}")
    if a.size < 10:
        raise InputError(f"too few samples ({a.size}) to compare rankings; need at least 10")
    n = a.size
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho, p = math.nan, math.nan
    else:
        rho, p = stats.spearmanr(a, b)
    z = math.atanh(float(np.clip(rho, -0.999999, 0.999999)))   # NaN stays NaN
    half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(max(n - 3, 1))
    top_a, top_b = top_flags(a, fraction, seed), top_flags(b, fraction, seed + 1)
    k = int(top_a.sum())
    overlap = int((top_a & top_b).sum())
    ci = stats.binomtest(overlap, k).proportion_ci(level, method="exact")
    chance = int(top_b.sum()) / n
    return {"rho": float(rho), "rho_p": float(p), "rho_low": math.tanh(z - half),
            "rho_high": math.tanh(z + half), "precision": overlap / k,
            "precision_low": float(ci.low), "precision_high": float(ci.high),
            "chance": chance, "lift": (overlap / k) / chance,
            "precision_p": float(stats.hypergeom.sf(overlap - 1, n, int(top_b.sum()), k)),
            "n": n, "flagged": k}


# ----------------------------------------------------------------------------- cheap signals
def nearest_distances(queries: torch.Tensor, pool: torch.Tensor, k: int = 1,
                      batch_size: int = 256) -> torch.Tensor:
    """(len(queries), k) smallest squared distances from each query embedding to ``pool``."""
    if k < 1 or k > len(pool):
        raise InputError(f"k must lie in 1..{len(pool)} (the pool size); got {k}")
    return torch.cat([pairwise_sq_distances(queries[i:i + batch_size], pool)
                      .topk(k, dim=1, largest=False).values
                      for i in range(0, len(queries), batch_size)])


def cheap_signals(target: torch.nn.Module, distance, images: torch.Tensor,
                  target_labels: torch.Tensor, public_images: torch.Tensor,
                  prior_images: torch.Tensor, k_public: int = 10,
                  batch_size: int = 256, device: str | torch.device = "cpu") -> pd.DataFrame:
    """Per private sample, the signals of ``SIGNALS`` (one row per image, in order).

    ``distance`` is the attacker's ``PerceptualDistance`` (d_P); ``target_labels`` are in
    T's label space. None of them needs an attack. The networks run on ``device``.
    """
    probs = torch.softmax(predict_logits(target, images, batch_size, device), dim=1)
    emb = distance.embed_batched(images, batch_size, device)
    public = distance.embed_batched(public_images, batch_size, device)
    prior = distance.embed_batched(prior_images, batch_size, device)
    return pd.DataFrame({
        "target_confidence": probs.gather(1, target_labels.long()[:, None]).squeeze(1).numpy(),
        "public_typicality": (-nearest_distances(emb, public, k_public).mean(dim=1)).numpy(),
        "prior_proximity": (-nearest_distances(emb, prior, 1)[:, 0]).numpy(),
    })


# ----------------------------------------------------------------------------- acting on it
def split_without(split, removed) -> Any:
    """A copy of ``split`` whose private set D lacks the dataset indices ``removed``."""
    removed = np.asarray(removed, dtype=np.int64)
    unknown = np.setdiff1d(removed, split.private)
    if unknown.size:
        raise InputError(f"{unknown.size} indices to remove are not in D (e.g. "
                         f"{unknown[:5].tolist()}); pass dataset indices of private samples")
    return dataclasses.replace(split, private=np.setdiff1d(split.private, removed))


def stratified_random_removal(private_indices, private_labels, flagged_labels,
                              seed: int) -> np.ndarray:
    """As many random private samples per class as ``flagged_labels`` holds of that class."""
    rng = np.random.default_rng(seed)
    idx, lab = np.asarray(private_indices), np.asarray(private_labels)
    picks = []
    for c, count in zip(*np.unique(np.asarray(flagged_labels), return_counts=True)):
        pool = idx[lab == c]
        if count > pool.size:
            raise InputError(f"class {c} has {pool.size} private samples; cannot remove {count}")
        picks.append(rng.choice(pool, size=count, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)
