"""PRDC against the prdc package, Fréchet distance closed forms, Acc@k, KNN distance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from lib.metrics import (frechet_distance, knn_distance, knn_distances, per_class_prdc, prdc,
                         restricted_accuracy, topk_accuracy)
from lib.metrics.fidelity import frechet_min_samples


@pytest.mark.parametrize("n_real, n_fake, dim, k, shift", [
    (40, 30, 5, 3, 0.0), (25, 50, 8, 5, 0.7), (60, 60, 3, 3, 2.0)])
def test_prdc_equals_reference_package(n_real, n_fake, dim, k, shift):
    rng = np.random.default_rng(n_real + dim)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) + shift
    ref = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    ours = prdc(real, fake, k)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-6)


def test_prdc_by_hand_in_one_dimension():
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [1.5], [20.0]])
    # k = 1: real radii 1, 1, 1, 8; fake radii 1, 1, 18.5
    out = prdc(real, fake, k=1)
    assert out["precision"] == pytest.approx(2 / 3)   # 20.0 lies in no real ball
    assert out["recall"] == pytest.approx(1.0)        # 10.0 lies in 20.0's ball (9.5 < 18.5)
    assert out["density"] == pytest.approx(4 / 3)     # 0.5 in 2 balls, 1.5 in 2 balls
    assert out["coverage"] == pytest.approx(3 / 4)    # 10.0's nearest fake is 8.5 away, not < 8


def test_prdc_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="too few samples for PRDC"):
        prdc(rng.normal(size=(3, 2)), rng.normal(size=(10, 2)), k=3)
    with pytest.raises(ValueError, match="NaN or inf in fake"):
        prdc(rng.normal(size=(10, 2)), np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="dimension"):
        prdc(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)))


def test_per_class_prdc_is_the_class_mean():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    rl, fl = np.repeat([0, 1], 20), np.repeat([0, 1], 15)
    out = per_class_prdc(real, rl, fake, fl)
    a, b = prdc(real[:20], fake[:15]), prdc(real[20:], fake[15:])
    assert out["mean"]["coverage"] == pytest.approx((a["coverage"] + b["coverage"]) / 2)
    assert out["per_class"][1] == b
    with pytest.raises(ValueError, match="class 2"):
        per_class_prdc(real, rl, np.r_[fake, fake[:2]], np.r_[fl, [2, 2]])


def test_frechet_identical_and_shifted():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    c = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(a, a + c) == pytest.approx(c @ c, rel=1e-6)
    b = rng.normal(size=(400, 4)) * 2 + 1
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_closed_form_for_gaussians():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 3)) @ np.diag([1.0, 2.0, 0.5])
    b = rng.normal(size=(300, 3)) @ np.diag([1.5, 1.0, 0.5]) + 0.3
    # closed form from the sample statistics (sqrtm of a well-conditioned product)
    import scipy.linalg
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb)
           - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).real))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)


def test_frechet_minimum_samples():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="too few samples"):
        frechet_distance(rng.normal(size=(1, 3)), rng.normal(size=(5, 3)))
    assert frechet_min_samples(3) == 4
    with pytest.raises(ValueError, match="need at least 4"):
        frechet_distance(rng.normal(size=(3, 3)), rng.normal(size=(5, 3)), strict=True)
    assert np.isfinite(frechet_distance(rng.normal(size=(3, 3)), rng.normal(size=(5, 3))))


def test_accuracies_by_hand():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 3.0, 2.0]])
    assert topk_accuracy(logits, [1, 3], k=1) == 0.0
    assert topk_accuracy(logits, [1, 3], k=2) == 1.0
    assert restricted_accuracy(logits, [1, 3], classes=[1, 3]) == 1.0
    with pytest.raises(ValueError, match="not among"):
        restricted_accuracy(logits, [0, 3], classes=[1, 3])
    with pytest.raises(ValueError, match="exceeds"):
        topk_accuracy(logits, [0, 0], k=5)


def test_knn_distance_by_hand():
    train = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 10.0]])
    tl = [0, 0, 1]
    recon = np.array([[1.0, 0.0], [0.0, 8.0], [0.0, 1.0]])
    rl = [0, 1, 1]
    assert knn_distances(recon, rl, train, tl).tolist() == [1.0, 4.0, 81.0]
    assert knn_distance(recon, rl, train, tl) == pytest.approx(86 / 3)
    with pytest.raises(ValueError, match="class 2"):
        knn_distance(recon, [2, 1, 1], train, tl)
