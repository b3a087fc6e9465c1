"""Fidelity and diversity metrics: PRDC, Fréchet distance, Acc@k, KNN distance (docs/method.md, "The metric suite").

Pure functions on numpy arrays or torch tensors (converted to float64 numpy). Each metric
documents and enforces its minimum sample count; below it, on NaN/inf input or on
inconsistent shapes it raises ``InputError`` (a ``ValueError``; ``TooFewSamplesError`` below the
minimum) — never a placeholder value.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from ..errors import InputError, TooFewSamplesError
from .arrays import as_features, as_labels, as_numpy

PRDC_KEYS = ("precision", "recall", "density", "coverage")
PRDC_MIN_SAMPLES_OVER_K = 1   # PRDC needs k + 1 samples in each set (k neighbours besides self)
FRECHET_MIN_SAMPLES = 2       # a covariance needs 2 samples (ddof = 1)
ACCURACY_MIN_SAMPLES = 1      # accuracy of an empty set is undefined
ACCURACY_ROWS = 4096          # logits rows an accuracy sorts at a time (temporaries ~ rows × classes)
KNN_MIN_SAMPLES = 1           # at least one reconstruction, and one training sample per its class
FRECHET_EPS = 1e-6            # ridge added to both covariances when their product is near-singular
SQRTM_MAX_IMAG = 1e-3         # a larger imaginary part of sqrtm(Σa Σb) is an error, not noise
SQRTM_MAX_REL_ERROR = 1e-6    # relative residual ||X X − A||_F / ||A||_F of a trusted sqrtm


# ---------------------------------------------------------------------------- input checks

def _same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{names} features differ in dimension ({a.shape[1]} vs "
                         f"{b.shape[1]}); compute both with the same network and layer")


def _too_few(metric: str, got: int, need: int, what: str) -> None:
    if got < need:
        raise TooFewSamplesError(f"too few samples for {metric}: got {got}, need at least {need} "
                         f"({what}); add samples or lower the requirement")


# -------------------------------------------------------------------------------- PRDC

def _check_k(k, metric: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be an integer ≥ 1 for {metric}; got {k!r}")
    return int(k)


def prdc_min_samples(k: int) -> int:
    """Samples needed in each set for PRDC with ``k`` neighbours: k + 1."""
    return k + PRDC_MIN_SAMPLES_OVER_K


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest neighbour in ``x``, self excluded."""
    d = cdist(x, x)
    return np.partition(d, k, axis=1)[:, k]   # (k+1)-th smallest including self (0)


def prdc(real_features, fake_features, k: int = 3) -> dict[str, float]:
    """Precision, recall, density, coverage of Naeem et al. 2020 (as the ``prdc`` package).

    Radii are Euclidean distances to the k-th nearest neighbour within the same set, self
    excluded. precision: fraction of fakes inside at least one real ball; recall: fraction
    of reals inside at least one fake ball; density: (1 / kM) Σ_fake Σ_real 1[d < r_real];
    coverage: fraction of reals whose nearest fake is closer than their own radius.
    Minimum: k + 1 samples in each set.
    """
    k = _check_k(k, "PRDC")
    real, fake = as_features(real_features, "real"), as_features(fake_features, "fake")
    _same_dim(real, fake, "real and fake")
    need = prdc_min_samples(k)
    _too_few("PRDC", len(real), need, f"real features, k = {k}")
    _too_few("PRDC", len(fake), need, f"fake features, k = {k}")
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    d = cdist(real, fake)                                   # (N_real, M_fake)
    in_real_ball = d < real_radii[:, None]                  # fake j inside real i's ball
    return {
        "precision": float(in_real_ball.any(axis=0).mean()),
        "recall": float((d < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(in_real_ball.sum() / (k * len(fake))),
        "coverage": float((d.min(axis=1) < real_radii).mean()),
    }


def per_class_prdc(real_features, real_labels, fake_features, fake_labels,
                   k: int = 3) -> dict:
    """PRDC within each class present in ``fake_labels``, and the mean over those classes.

    Real = that class's real samples, fake = its fake samples; never the whole data set.
    Returns ``{"mean": {key: float}, "per_class": {class: {key: float}}}``.
    Minimum: k + 1 real and k + 1 fake samples in every evaluated class (raises naming it).
    """
    k = _check_k(k, "PRDC")
    real, fake = as_features(real_features, "real"), as_features(fake_features, "fake")
    _same_dim(real, fake, "real and fake")
    real_labels = as_labels(real_labels, "real labels", len(real))
    fake_labels = as_labels(fake_labels, "fake labels", len(fake))
    classes = np.unique(fake_labels)
    if len(classes) == 0:
        raise TooFewSamplesError("too few samples for per-class PRDC: got 0, need at least "
                         f"{prdc_min_samples(k)} (fake features); no fake samples given")
    need = prdc_min_samples(k)
    per_class = {}
    for c in classes:
        r, f = real[real_labels == c], fake[fake_labels == c]
        _too_few("PRDC", len(r), need, f"real features of class {c}, k = {k}")
        _too_few("PRDC", len(f), need, f"fake features of class {c}, k = {k}")
        per_class[int(c)] = prdc(r, f, k)
    mean = {key: float(np.mean([v[key] for v in per_class.values()])) for key in PRDC_KEYS}
    return {"mean": mean, "per_class": per_class}


# --------------------------------------------------------------------- Fréchet distance

def frechet_min_samples(dim: int) -> int:
    """Recommended samples per set for a full-rank covariance in ``dim`` dimensions: dim + 1."""
    return int(dim) + 1


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """Matrix square root of ``a`` and whether it is trustworthy.

    scipy ≥ 1.16 deprecates ``sqrtm(..., disp=False)`` (and returns a bare matrix without
    it in every version), so the relative residual ||X X − A||_F / ||A||_F is computed
    here; a singular/ill-conditioned warning from scipy also marks the result untrusted.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        root = np.asarray(scipy.linalg.sqrtm(a))
    near_singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
    if not np.isfinite(root).all():
        return root, False
    norm = np.linalg.norm(a, "fro")
    rel_error = np.linalg.norm(root @ root - a, "fro") / norm if norm > 0 else 0.0
    return root, not near_singular and rel_error <= SQRTM_MAX_REL_ERROR


def frechet_distance(features_a, features_b, strict: bool = False,
                     eps: float = FRECHET_EPS) -> float:
    """Fréchet distance ||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½) between two feature sets.

    Covariances use ddof = 1. Minimum: 2 samples per set. Below ``frechet_min_samples(dim)``
    (dim + 1) the covariance is rank-deficient and the estimate biased and unreliable;
    ``strict=True`` raises there. If Σa Σb is near-singular or its square root is not
    finite, ``eps``·I (default 1e-6) is added to both covariances and the root recomputed; a
    negligible imaginary part is dropped, a large one (> ``SQRTM_MAX_IMAG``) raises.
    """
    a, b = as_features(features_a, "first"), as_features(features_b, "second")
    _same_dim(a, b, "first and second")
    dim = a.shape[1]
    need = frechet_min_samples(dim) if strict else FRECHET_MIN_SAMPLES
    why = (f"strict: a full-rank covariance in {dim} dimensions" if strict
           else "a covariance needs 2")
    _too_few("the Fréchet distance", len(a), need, f"first set; {why}")
    _too_few("the Fréchet distance", len(b), need, f"second set; {why}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    covmean, ok = _sqrtm(cov_a @ cov_b)
    if not ok:
        ridge = eps * np.eye(dim)
        covmean, _ = _sqrtm((cov_a + ridge) @ (cov_b + ridge))
        if not np.isfinite(covmean).all():
            raise InputError("the matrix square root of Σa Σb is not finite even after adding "
                             f"{eps}·I; the features are degenerate")
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > SQRTM_MAX_IMAG:
            raise InputError(f"matrix square root of Σa Σb has a large imaginary part "
                             f"({imag:.3g} > {SQRTM_MAX_IMAG}); the covariances are degenerate: "
                             "use more samples or lower-dimensional features")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


# ---------------------------------------------------------------------------- accuracy

def _logits(logits) -> np.ndarray:
    """``logits`` checked (2-D, finite, not empty), in their own dtype: the accuracies convert
    ``ACCURACY_ROWS`` rows at a time (``_row_blocks``), so 50 reconstructions × 1,000 classes per
    class never make whole-set float64 copies."""
    x = as_numpy(logits)
    if x.ndim != 2:
        raise InputError(f"logits must be 2-D (samples, classes); got shape {x.shape}")
    if not all(np.isfinite(block).all() for _, block in _row_blocks(x)):
        raise InputError("NaN or inf in logits; check the classifier that made them")
    _too_few("accuracy", len(x), ACCURACY_MIN_SAMPLES, "an empty set has no accuracy")
    return x


def _row_blocks(x: np.ndarray):
    """(first row, float64 copy of the rows) of ``x``, ``ACCURACY_ROWS`` rows at a time."""
    for lo in range(0, len(x), ACCURACY_ROWS):
        yield lo, x[lo:lo + ACCURACY_ROWS].astype(np.float64)


def topk_accuracy(logits, target_labels, k: int = 1) -> float:
    """Fraction of rows whose target label is among the ``k`` largest logits.

    Ties are broken by the lower class index (as argmax does). Minimum: 1 sample.
    """
    x = _logits(logits)
    labels = as_labels(target_labels, "target labels", len(x))
    n_classes = x.shape[1]
    k = _check_k(k, "top-k accuracy")
    if k > n_classes:
        raise InputError(f"k = {k} exceeds the {n_classes} classes; use k ≤ {n_classes}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InputError(f"target labels must lie in [0, {n_classes}); got "
                         f"{labels.min()}..{labels.max()}")
    hits = 0
    for lo, block in _row_blocks(x):
        top = np.argsort(-block, axis=1, kind="stable")[:, :k]
        hits += int((top == labels[lo:lo + len(block), None]).any(axis=1).sum())
    return hits / len(x)


def restricted_accuracy(logits, target_labels, classes) -> float:
    """Acc@1 with the argmax over the columns ``classes`` only.

    Target labels are ORIGINAL class ids (column indices) and must be among ``classes``.
    Ties are broken by the first of ``classes``. Minimum: 1 sample.
    """
    x = _logits(logits)
    labels = as_labels(target_labels, "target labels", len(x))
    classes = as_labels(np.asarray(classes), "restricted class labels")
    if len(classes) == 0 or len(np.unique(classes)) != len(classes):
        raise InputError(f"classes must be a non-empty list of distinct class ids; got "
                         f"{classes.tolist()}")
    if classes.min() < 0 or classes.max() >= x.shape[1]:
        raise InputError(f"classes {classes.tolist()} are not all columns of logits with "
                         f"{x.shape[1]} classes")
    missing = sorted(set(labels.tolist()) - set(classes.tolist()))
    if missing:
        raise InputError(f"target labels {missing} are not among the restricted classes "
                         f"{classes.tolist()}; pass original class ids that are in `classes`")
    hits = 0
    for lo, block in _row_blocks(x):
        pred = classes[block[:, classes].argmax(axis=1)]
        hits += int((pred == labels[lo:lo + len(block)]).sum())
    return hits / len(x)


# ------------------------------------------------------------------------ KNN distance

def knn_distances(recon_features, recon_labels, train_features, train_labels) -> np.ndarray:
    """Per reconstruction: min SQUARED L2 distance to a training sample of the same class.

    Minimum: 1 reconstruction, and at least 1 training sample of each reconstruction's class.
    """
    rf = as_features(recon_features, "reconstruction")
    tf = as_features(train_features, "training")
    _same_dim(rf, tf, "reconstruction and training")
    rl = as_labels(recon_labels, "reconstruction labels", len(rf))
    tl = as_labels(train_labels, "training labels", len(tf))
    _too_few("the KNN distance", len(rf), KNN_MIN_SAMPLES, "reconstructions")
    out = np.empty(len(rf))
    for c in np.unique(rl):
        rows, cols = rl == c, tl == c
        _too_few("the KNN distance", int(cols.sum()), KNN_MIN_SAMPLES,
                 f"training samples of class {c}, which has reconstructions")
        out[rows] = cdist(rf[rows], tf[cols], "sqeuclidean").min(axis=1)
    return out


def knn_distance(recon_features, recon_labels, train_features, train_labels) -> float:
    """The paper's KNN dist: mean over reconstructions of ``knn_distances``."""
    return float(knn_distances(recon_features, recon_labels, train_features, train_labels).mean())


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts (true class × predicted class)."""
    flat = labels * n_classes + pred
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
