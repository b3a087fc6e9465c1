"""Fidelity and diversity metrics: PRDC, Fréchet distance, Acc@k, KNN distance (PAPER.md §2).

Each function documents and enforces its minimum sample count; below it, or on NaN/inf
features, it raises ``ValueError`` — never a placeholder value.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

FRECHET_MIN_SAMPLES = 2


def _features(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} features must be 2-D (samples, dims); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"NaN or inf in {name} features; check the network that made them")
    return x


def _labels(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64).ravel()


def _too_few(metric: str, got: int, need: int, what: str = "") -> None:
    if got < need:
        raise ValueError(f"too few samples for {metric}{what}: got {got}, need at least {need}")


def prdc(real_features, fake_features, k: int = 3) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020) with k-NN balls.

    Radii are the distance to the k-th nearest neighbour within the same set (self
    excluded). Minimum: k + 1 samples in each set.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1 (got {k})")
    real, fake = _features(real_features, "real"), _features(fake_features, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension ({real.shape[1]} vs "
                         f"{fake.shape[1]})")
    _too_few("PRDC", len(real), k + 1, " (real)")
    _too_few("PRDC", len(fake), k + 1, " (fake)")
    real_radii = np.sort(cdist(real, real), axis=1)[:, k]
    fake_radii = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)                                    # (N_real, N_fake)
    inside_real = d < real_radii[:, None]                    # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((d.min(axis=1) < real_radii).mean()),
    }


def per_class_prdc(real_features, real_labels, fake_features, fake_labels,
                   k: int = 3) -> dict:
    """PRDC within each class present in ``fake_labels``, and their mean over classes."""
    real, fake = _features(real_features, "real"), _features(fake_features, "fake")
    real_labels, fake_labels = _labels(real_labels), _labels(fake_labels)
    per_class = {}
    for c in np.unique(fake_labels):
        r, f = real[real_labels == c], fake[fake_labels == c]
        _too_few("PRDC", len(r), k + 1, f" (real, class {c})")
        _too_few("PRDC", len(f), k + 1, f" (fake, class {c})")
        per_class[int(c)] = prdc(r, f, k)
    keys = ("precision", "recall", "density", "coverage")
    mean = {key: float(np.mean([v[key] for v in per_class.values()])) for key in keys}
    return {"mean": mean, "per_class": per_class}


def frechet_min_samples(dim: int) -> int:
    """Samples per set for a full-rank covariance estimate (dim + 1)."""
    return dim + 1


def frechet_distance(features_a, features_b, strict: bool = False, eps: float = 1e-6) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½) between two feature sets.

    Needs ≥ 2 samples per set; below ``dim + 1`` the covariance is rank-deficient and the
    estimate biased (``strict=True`` raises there). A singular product is regularised by
    adding ``eps``·I to both covariances.
    """
    a, b = _features(features_a, "first"), _features(features_b, "second")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ ({a.shape[1]} vs {b.shape[1]})")
    need = frechet_min_samples(a.shape[1]) if strict else FRECHET_MIN_SAMPLES
    _too_few("the Fréchet distance", min(len(a), len(b)), need)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(cov_a)) * eps
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        if np.abs(covmean.imag).max() > 1e-3:
            raise ValueError(f"matrix square root has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}); the covariances are degenerate")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def topk_accuracy(logits, target_labels, k: int = 1) -> float:
    """Fraction of rows whose target label is among the ``k`` largest logits."""
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(_labels(target_labels))
    if len(logits) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    if k > logits.shape[1]:
        raise ValueError(f"k = {k} exceeds the {logits.shape[1]} classes")
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def restricted_accuracy(logits, target_labels, classes) -> float:
    """Acc@1 with the argmax over the columns ``classes`` only (labels are original ids)."""
    classes = [int(c) for c in classes]
    labels = _labels(target_labels)
    if not np.isin(labels, classes).all():
        raise ValueError(f"target labels {sorted(set(labels.tolist()) - set(classes))} are "
                         f"not among the restricted classes {classes}")
    logits = torch.as_tensor(logits)[:, classes]
    pred = np.asarray(classes)[logits.argmax(1).numpy()]
    if len(pred) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((pred == labels).mean())


def knn_distances(recon_features, recon_labels, train_features, train_labels) -> np.ndarray:
    """Per reconstruction: min squared L2 distance to a same-class training sample."""
    rf, tf = _features(recon_features, "reconstruction"), _features(train_features, "training")
    rl, tl = _labels(recon_labels), _labels(train_labels)
    out = np.empty(len(rf))
    for c in np.unique(rl):
        rows, cols = rl == c, tl == c
        if not cols.any():
            raise ValueError(f"class {c} has reconstructions but no training samples")
        out[rows] = cdist(rf[rows], tf[cols], "sqeuclidean").min(axis=1)
    return out


def knn_distance(recon_features, recon_labels, train_features, train_labels) -> float:
    """Mean over reconstructions of ``knn_distances`` (the paper's KNN dist)."""
    if len(recon_labels) == 0:
        raise ValueError("KNN distance of no reconstructions is undefined")
    return float(knn_distances(recon_features, recon_labels, train_features, train_labels).mean())
