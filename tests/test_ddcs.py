"""DDCS on hand-computed cases, and every error path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.metrics import DEFAULT_EPS, ddcs


def test_hand_computed_two_classes():
    # training: class 0 = samples 0, 1; class 1 = samples 2, 3
    # reconstructions: r0, r1 (class 0) both nearest to sample 0 (d 0.5, 0.25); r2 (class 1)
    # nearest to sample 3 (d 2.0; sample 0 at 0.1 is another class and must be ignored)
    dist = np.array([[0.5, 1.0, 9.0, 9.0],
                     [0.25, 3.0, 9.0, 9.0],
                     [0.1, 0.1, 4.0, 2.0]])
    res = ddcs(dist, [0, 0, 1], [0, 0, 1, 1])
    assert res.assignment.tolist() == [0, 0, 3]
    assert res.n_assigned.tolist() == [2, 0, 0, 1]
    assert res.per_sample_best.tolist() == [4.0, 0.0, 0.0, 0.5]
    assert res.per_sample_avg.tolist() == pytest.approx([1 / 0.375, 0, 0, 0.5])
    assert res.best == pytest.approx((4.0 + 0.5) / 4)
    assert res.avg == pytest.approx((1 / 0.375 + 0.5) / 4)
    assert res.min_distance[1] == np.inf and res.resilient_fraction == 0.5
    assert res.assigned_distance.tolist() == [0.5, 0.25, 2.0]


def test_collapse_onto_one_sample_counts_once():
    dist = np.array([[0.5, 2.0, 3.0]] * 10)
    res = ddcs(dist, [0] * 10, [0, 0, 0])
    assert res.best == pytest.approx(2.0 / 3)
    assert res.n_assigned.tolist() == [10, 0, 0]


def test_full_coverage():
    d = 0.2
    dist = np.full((4, 4), 5.0)
    np.fill_diagonal(dist, d)
    res = ddcs(dist, [0, 0, 1, 1], [0, 0, 1, 1])
    assert res.best == pytest.approx(1 / d) and res.avg == pytest.approx(1 / d)
    assert res.resilient_fraction == 0.0


def test_class_without_reconstructions_counts_zero():
    dist = np.array([[1.0, 7.0, 7.0]])
    res = ddcs(dist, [0], [0, 1, 1])
    assert res.best == pytest.approx(1 / 3)
    assert res.per_sample_best.tolist() == [1.0, 0.0, 0.0]


def test_ties_go_to_the_lowest_index():
    res = ddcs(np.array([[1.0, 1.0, 1.0]]), [0], [0, 0, 0])
    assert res.assignment.tolist() == [0]


def test_zero_distance_is_floored():
    res = ddcs(np.array([[0.0]]), [0], [0])
    assert res.best == pytest.approx(1 / DEFAULT_EPS)
    assert ddcs(np.array([[0.0]]), [0], [0], eps=0.5).best == 2.0


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    dist, rl, tl = rng.random((12, 9)), rng.integers(0, 3, 12), np.repeat([0, 1, 2], 3)
    a = ddcs(dist, rl, tl)
    b = ddcs(torch.from_numpy(dist), torch.from_numpy(rl), torch.from_numpy(tl))
    assert a.best == b.best and np.array_equal(a.per_sample_avg, b.per_sample_avg)


@pytest.mark.parametrize("dist, rl, tl, match", [
    (np.ones((2, 3)), [0], [0, 0, 0], "shape"),
    (np.ones(3), [0, 0, 0], [0], "shape"),
    (np.array([[np.nan]]), [0], [0], "NaN"),
    (np.array([[np.inf]]), [0], [0], "inf"),
    (np.array([[-1.0]]), [0], [0], "negative"),
    (np.ones((1, 2)), [5], [0, 0], "no training samples"),
    (np.ones((0, 2)), [], [0, 0], "at least one"),
])
def test_errors(dist, rl, tl, match):
    with pytest.raises(ValueError, match=match):
        ddcs(dist, rl, tl)


def test_eps_must_be_positive():
    with pytest.raises(ValueError, match="eps"):
        ddcs(np.ones((1, 1)), [0], [0], eps=0)
