"""Input coercion shared by every metric: numpy copies of arrays or tensors, class labels and
feature matrices, each checked with a clear error."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def as_numpy(x, dtype=None) -> np.ndarray:
    """A numpy array of a numpy array, torch tensor or sequence (``dtype`` when given)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def as_labels(x, name: str, n: int | None = None) -> np.ndarray:
    """1-D int64 class labels from numpy, torch or a list; ``InputError`` unless they are
    integer-valued (and ``n`` of them, when given)."""
    raw = as_numpy(x)
    if raw.ndim != 1:
        raise InputError(f"{name} must be 1-D (one class per item); got shape {raw.shape}")
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        numeric = np.issubdtype(raw.dtype, np.number)
        if not (numeric and np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            raise InputError(f"{name} must be integer class ids; got dtype {raw.dtype} "
                             f"({raw[:5]}...)")
    labels = raw.astype(np.int64)
    if n is not None and len(labels) != n:
        raise InputError(f"{name} have {len(labels)} entries but there are {n} samples; pass "
                         "one label per sample")
    return labels


def as_features(x, name: str) -> np.ndarray:
    """``x`` as a finite float64 (samples, dims) array."""
    x = as_numpy(x).astype(np.float64)
    if x.ndim != 2:
        raise InputError(f"{name} features must be 2-D (samples, dims); got shape {x.shape}; "
                         f"reshape to (n, -1)")
    if not np.isfinite(x).all():
        raise InputError(f"NaN or inf in {name} features; check the network that made them")
    return x
