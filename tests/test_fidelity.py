"""PRDC against the prdc package and by hand; Fréchet closed forms; Acc@k; KNN distance."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from prdc import compute_prdc

import lib.metrics.fidelity as fidelity
from lib.metrics.fidelity import (PRDC_KEYS, frechet_distance, frechet_min_samples, knn_distance,
                                  knn_distances, per_class_prdc, prdc, prdc_min_samples,
                                  restricted_accuracy, topk_accuracy)

# ------------------------------------------------------------------------------ PRDC


@pytest.mark.parametrize("n_real, n_fake, dim, k, shift", [
    (40, 30, 5, 3, 0.0), (25, 50, 8, 5, 0.7), (60, 60, 3, 3, 2.0), (12, 80, 2, 5, 0.3),
    (70, 9, 16, 3, 1.0), (30, 30, 4, 5, 5.0)])
def test_prdc_equals_reference_package(n_real, n_fake, dim, k, shift):
    rng = np.random.default_rng(n_real + dim)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) + shift
    ref = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    ours = prdc(real, fake, k)
    assert set(ours) == set(PRDC_KEYS)
    for key in PRDC_KEYS:
        assert isinstance(ours[key], float)
        assert ours[key] == pytest.approx(ref[key], abs=1e-6)


def test_prdc_accepts_torch_tensors():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(20, 3)), rng.normal(size=(25, 3))
    assert prdc(torch.tensor(real, dtype=torch.float32), torch.tensor(fake)) == \
        prdc(real.astype(np.float32), fake)


def test_prdc_by_hand_in_one_dimension():
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [1.5], [20.0]])
    # k = 1: real radii 1, 1, 1, 8; fake radii 1, 1, 18.5
    out = prdc(real, fake, k=1)
    assert out["precision"] == pytest.approx(2 / 3)   # 20 lies in no real ball (10 > 8)
    assert out["recall"] == pytest.approx(1.0)        # 10 lies in 20's ball (10 < 18.5)
    assert out["density"] == pytest.approx(4 / 3)     # 0.5 in 2 balls, 1.5 in 2, 20 in 0; / (1·3)
    assert out["coverage"] == pytest.approx(3 / 4)    # 10's nearest fake is 8.5 away, not < 8
    # k = 2: real radii 2, 1, 2, 9; fake radii 19.5, 18.5, 19.5
    out = prdc(real, fake, k=2)
    assert out["precision"] == pytest.approx(2 / 3)   # 20 is 10 from 10, not < 9
    assert out["recall"] == pytest.approx(1.0)
    assert out["density"] == pytest.approx(7 / 6)     # 0.5 in 3 balls, 1.5 in 4, 20 in 0; / (2·3)
    assert out["coverage"] == pytest.approx(1.0)      # 10's nearest fake 8.5 < 9


def test_prdc_min_samples_is_k_plus_one():
    rng = np.random.default_rng(0)
    assert prdc_min_samples(3) == 4
    prdc(rng.normal(size=(4, 2)), rng.normal(size=(4, 2)), k=3)   # exactly the minimum
    with pytest.raises(ValueError, match="too few samples for PRDC: got 3, need at least 4"):
        prdc(rng.normal(size=(3, 2)), rng.normal(size=(10, 2)), k=3)
    with pytest.raises(ValueError, match=r"for PRDC: got 5, need at least 6 \(fake"):
        prdc(rng.normal(size=(10, 2)), rng.normal(size=(5, 2)), k=5)


def test_prdc_errors():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="NaN or inf in fake features"):
        prdc(good, np.full((10, 2), np.nan))
    bad = good.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf in real features"):
        prdc(bad, good)
    with pytest.raises(ValueError, match="dimension"):
        prdc(good, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="k must be an integer ≥ 1"):
        prdc(good, good, k=0)
    with pytest.raises(ValueError, match="2-D"):
        prdc(good.ravel(), good)


def test_per_class_prdc_is_the_class_mean():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.4
    rl, fl = np.repeat([0, 1], 20), np.repeat([0, 1], 15)
    out = per_class_prdc(real, rl, fake, fl)
    a, b = prdc(real[:20], fake[:15]), prdc(real[20:], fake[15:])
    assert out["per_class"] == {0: a, 1: b}
    for key in PRDC_KEYS:
        assert out["mean"][key] == pytest.approx((a[key] + b[key]) / 2)


def test_per_class_prdc_evaluates_the_fake_classes_only():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(42, 3)), rng.normal(size=(15, 3))
    rl = np.r_[np.repeat([0, 1], 20), [7, 7]]          # class 7: too few, but has no fakes
    fl = np.full(15, 1)
    out = per_class_prdc(real, rl, fake, fl)
    assert list(out["per_class"]) == [1]
    assert out["mean"] == prdc(real[20:40], fake)


def test_per_class_prdc_class_with_too_few_samples_raises():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 3)), rng.normal(size=(30, 3))
    rl, fl = np.repeat([0, 1, 2], 20), np.repeat([0, 1], 15)
    with pytest.raises(ValueError, match=r"got 2, need at least 4 \(fake features of class 2"):
        per_class_prdc(real, rl, np.r_[fake, fake[:2]], np.r_[fl, [2, 2]])
    # a fake class absent from the real set raises; it never falls back to the whole set
    with pytest.raises(ValueError, match=r"got 0, need at least 4 \(real features of class 3"):
        per_class_prdc(real, rl, np.r_[fake, fake[:5]], np.r_[fl, [3] * 5])
    with pytest.raises(ValueError, match="one label per sample"):
        per_class_prdc(real, rl[:-1], fake, fl)


# --------------------------------------------------------------------- Fréchet distance


def test_frechet_identical_shifted_and_symmetric():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    c = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(a, a + c) == pytest.approx(c @ c, rel=1e-6, abs=1e-9)
    b = rng.normal(size=(400, 4)) * 2 + 1
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == frechet_distance(a, b)


def test_frechet_exact_for_diagonal_sample_covariances():
    # columns of a Hadamard matrix: ±1, zero mean, mutually orthogonal, so the sample
    # covariance of z·diag(s) + m is exactly diag(s² · n / (n − 1)) and the square root is
    # elementwise: FD = ||Δm||² + Σ (σa − σb)² with σ² = s² n / (n − 1).
    h = scipy.linalg.hadamard(16)[:, 1:5].astype(np.float64)
    n = len(h)
    sa, sb = np.array([1.0, 2.0, 0.5, 3.0]), np.array([1.5, 1.0, 0.5, 0.2])
    ma, mb = np.array([0.0, 1.0, -1.0, 2.0]), np.array([0.5, 1.0, 1.0, -2.0])
    a, b = h * sa + ma, h[::-1] * sb + mb
    sig_a, sig_b = sa * np.sqrt(n / (n - 1)), sb * np.sqrt(n / (n - 1))
    expected = np.sum((ma - mb) ** 2) + np.sum((sig_a - sig_b) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_closed_form_from_sample_statistics():
    rng = np.random.default_rng(3)
    mix = np.array([[1.0, 0.3, 0.0], [0.0, 2.0, 0.4], [0.2, 0.0, 0.5]])
    a = rng.normal(size=(300, 3)) @ mix
    b = rng.normal(size=(250, 3)) @ np.diag([1.5, 1.0, 0.5]) + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb)
           - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).real))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)


def test_frechet_minimum_samples():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="too few samples for the Fréchet distance: got 1, "
                                         "need at least 2"):
        frechet_distance(rng.normal(size=(1, 3)), rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="got 1, need at least 2"):
        frechet_distance(rng.normal(size=(5, 3)), rng.normal(size=(1, 3)))
    assert frechet_min_samples(3) == 4
    with pytest.raises(ValueError, match="got 3, need at least 4"):
        frechet_distance(rng.normal(size=(3, 3)), rng.normal(size=(5, 3)), strict=True)
    assert np.isfinite(frechet_distance(rng.normal(size=(4, 3)), rng.normal(size=(4, 3)),
                                        strict=True))
    # non-strict: rank-deficient covariances (n < dim) still give a finite, regularised value
    assert np.isfinite(frechet_distance(rng.normal(size=(3, 8)), rng.normal(size=(5, 8))))


def test_frechet_input_errors():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(rng.normal(size=(9, 3)), rng.normal(size=(9, 4)))
    with pytest.raises(ValueError, match="NaN or inf in second features"):
        frechet_distance(rng.normal(size=(9, 3)), np.full((9, 3), np.inf))


def test_frechet_retries_with_a_ridge_when_sqrtm_fails(monkeypatch):
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(60, 3)) + 1
    expected = frechet_distance(a, b)
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(fidelity.scipy.linalg, "sqrtm", flaky)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-4)
    assert len(calls) == 2
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ridge = 1e-6 * np.eye(3)
    np.testing.assert_allclose(calls[1], (ca + ridge) @ (cb + ridge))


def test_frechet_large_imaginary_part_raises(monkeypatch):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    real_sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(fidelity.scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 0.5j)
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(a, b)


# ---------------------------------------------------------------------------- accuracy


def test_accuracies_by_hand():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 3.0, 2.0], [5.0, 1.0, 2.0, 0.0]])
    target = [1, 3, 1]
    assert topk_accuracy(logits, target, k=1) == 0.0
    assert topk_accuracy(logits, target, k=2) == pytest.approx(2 / 3)   # row 2: top-2 {0, 2}
    assert topk_accuracy(logits, target, k=3) == 1.0
    assert topk_accuracy(logits.numpy(), np.array(target), k=4) == 1.0
    # restricted to {1, 2, 3}: row 0 → 1 (hit), row 1 → 2 (miss), row 2 → 2 (hit);
    # strict argmax (0, 2, 0) hits none of these targets
    assert topk_accuracy(logits, [1, 3, 2], k=1) == 0.0
    assert restricted_accuracy(logits, [1, 3, 2], classes=[1, 2, 3]) == pytest.approx(2 / 3)
    assert restricted_accuracy(logits, [1, 3, 2], classes=[3, 2, 1]) == pytest.approx(2 / 3)
    assert restricted_accuracy(logits, [0, 2, 0], classes=[0, 2]) == pytest.approx(1.0)


def test_topk_ties_go_to_the_lower_class_index():
    logits = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert topk_accuracy(logits, [0, 1], k=1) == 0.5   # same as argmax
    assert topk_accuracy(logits, [0, 1], k=2) == 1.0


def test_accuracies_in_row_blocks_equal_the_whole_set_computation(monkeypatch):
    """The accuracies sort a few rows at a time (bounded memory at 1,000 classes); the
    fraction is the one of the whole-set computation, ties and a NaN in a later block included."""
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 4, size=(23, 6)).astype(np.float32)        # many ties
    target = rng.integers(0, 6, size=23)
    x = logits.astype(np.float64)
    whole = {k: float((np.argsort(-x, axis=1, kind="stable")[:, :k] == target[:, None])
                      .any(axis=1).mean()) for k in (1, 2, 5)}
    classes = np.array([4, 1, 2, 5, 0, 3])
    whole_restricted = float((classes[x[:, classes].argmax(axis=1)] == target).mean())
    monkeypatch.setattr(fidelity, "ACCURACY_ROWS", 5)
    assert {k: topk_accuracy(logits, target, k) for k in whole} == whole
    assert restricted_accuracy(logits, target, classes) == whole_restricted
    logits[21, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        topk_accuracy(logits, target, 1)


def test_accuracy_errors():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 3.0, 2.0]])
    with pytest.raises(ValueError, match="not among"):
        restricted_accuracy(logits, [0, 3], classes=[1, 3])
    with pytest.raises(ValueError, match="not all columns"):
        restricted_accuracy(logits, [1, 3], classes=[1, 3, 4])
    with pytest.raises(ValueError, match="distinct"):
        restricted_accuracy(logits, [1, 1], classes=[1, 1])
    with pytest.raises(ValueError, match="exceeds"):
        topk_accuracy(logits, [0, 0], k=5)
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(logits, [0, 0], k=0)
    with pytest.raises(ValueError, match="too few samples for accuracy: got 0"):
        topk_accuracy(torch.zeros(0, 4), [], k=1)
    with pytest.raises(ValueError, match="too few samples for accuracy: got 0"):
        restricted_accuracy(torch.zeros(0, 4), [], classes=[1, 2])
    with pytest.raises(ValueError, match="one label per sample"):
        topk_accuracy(logits, [0, 0, 1])
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        topk_accuracy(logits, [0, 4])
    with pytest.raises(ValueError, match="NaN or inf in logits"):
        topk_accuracy(torch.tensor([[0.0, float("nan")]]), [0])
    with pytest.raises(ValueError, match="integer"):
        topk_accuracy(logits, [0.5, 1.0])


# ------------------------------------------------------------------------ KNN distance


def test_knn_distance_by_hand():
    train = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 10.0]])
    tl = [0, 0, 1]
    recon = np.array([[1.0, 0.0], [0.0, 8.0], [0.0, 1.0]])
    rl = [0, 1, 1]
    # squared L2 to the nearest same-class training sample: 1, 2² = 4, 9² = 81
    # (recon 2 is 1 from train 0, but train 0 is class 0)
    assert knn_distances(recon, rl, train, tl).tolist() == [1.0, 4.0, 81.0]
    assert knn_distance(recon, rl, train, tl) == pytest.approx(86 / 3)
    assert knn_distance(torch.tensor(recon), torch.tensor(rl), torch.tensor(train),
                        torch.tensor(tl)) == pytest.approx(86 / 3)


def test_knn_distance_errors():
    train = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 10.0]])
    tl = [0, 0, 1]
    recon = np.array([[1.0, 0.0], [0.0, 8.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="class 2"):
        knn_distance(recon, [2, 1, 1], train, tl)
    with pytest.raises(ValueError, match="too few samples for the KNN distance: got 0"):
        knn_distance(np.zeros((0, 2)), [], train, tl)
    with pytest.raises(ValueError, match="dimension"):
        knn_distance(recon[:, :1], [0, 1, 1], train, tl)
    with pytest.raises(ValueError, match="one label per sample"):
        knn_distance(recon, [0, 1], train, tl)
    with pytest.raises(ValueError, match="NaN or inf in reconstruction features"):
        knn_distance(np.full((3, 2), np.nan), [0, 1, 1], train, tl)


def test_inception_needs_local_weights(tmp_path):
    from lib.metrics.inception import INCEPTION_WEIGHTS_FILE, inception_pool3

    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_FILE):
        inception_pool3(tmp_path)


def test_inception_pool3_from_a_local_file(tmp_path):
    import torchvision

    from lib.metrics.inception import INCEPTION_WEIGHTS_FILE, inception_pool3

    torch.manual_seed(0)
    state = torchvision.models.inception_v3(weights=None, aux_logits=True,
                                            init_weights=False).state_dict()
    torch.save(state, tmp_path / INCEPTION_WEIGHTS_FILE)
    feats = inception_pool3(tmp_path)(torch.rand(2, 1, 32, 32) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
