"""Intervals over seeds."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..errors import InputError


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) Student-t interval of the mean; low = high = NaN for one value."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        raise InputError("no values to summarise")
    if x.size == 1:
        return float(x[0]), math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def format_ci(values, digits: int = 3) -> str:
    """'mean [low, high]' (or just the value for one seed), rounded to ``digits`` significant."""
    mean, low, high = mean_ci(values)
    fmt = lambda v: f"{v:.{digits}g}"  # noqa: E731
    return fmt(mean) if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def paired_bootstrap_ci(treatment, baseline, n_boot: int = 10000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences ``treatment − baseline`` (one pair per
    seed): percentile bootstrap over the pairs. With n pairs the interval can only take
    values among the n-sample means, so with 3 seeds it excludes 0 exactly when every
    difference has the same sign; low = high = NaN with fewer than 2 pairs."""
    a = np.asarray(treatment, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"need two equal-length 1-D sequences of per-seed values; got shapes "
                         f"{a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("NaN or missing per-seed values: every seed needs both measurements")
    diff = a - b
    if diff.size < 2:
        return (float(diff[0]) if diff.size else math.nan), math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(diff.mean()), float(low), float(high)


def combined_p_value(p_values) -> float:
    """Fisher's combination of independent p-values (one permutation test per seed)."""
    p = np.asarray([v for v in p_values if v is not None], dtype=float)
    if p.size == 0:
        raise InputError("no p-values to combine")
    if p.size == 1:
        return float(p[0])
    return float(stats.combine_pvalues(np.clip(p, 1e-300, 1.0), method="fisher").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (same order as given): the i-th
    smallest p becomes max over j ≤ i of min(1, (m − j + 1) · p_(j))."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.isfinite(p).all():
        raise InputError("holm needs a 1-D array of finite p-values")
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def sign_flip_p(differences, n_flips: int = 10000, seed: int = 0) -> float:
    """One-sided p-value that the mean of paired ``differences`` is > 0: the share of random
    sign flips whose mean is at least the observed one, (1 + #) / (1 + n_flips)."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise InputError("sign_flip_p needs a non-empty 1-D array of finite differences")
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, d.size))
    null = (signs * d).mean(axis=1)
    return float((1 + np.sum(null >= d.mean() - 1e-12 * max(1.0, np.abs(d).max())))
                 / (1 + n_flips))
