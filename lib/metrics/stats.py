"""Intervals over seeds."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) Student-t interval of the mean; low = high = NaN for one value."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        raise ValueError("no values to summarise")
    if x.size == 1:
        return float(x[0]), math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def format_ci(values, digits: int = 3) -> str:
    """'mean [low, high]' (or just the value for one seed), rounded to ``digits`` significant."""
    mean, low, high = mean_ci(values)
    fmt = lambda v: f"{v:.{digits}g}"  # noqa: E731
    return fmt(mean) if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"
