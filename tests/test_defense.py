"""lib.defense on constructed data where the right answer is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib import defense
from lib.claims import recurrence_claim


def test_top_flags_takes_the_highest_and_breaks_ties_at_random():
    scores = np.array([0.0] * 16 + [5.0, 4.0, 3.0, 2.0])
    flags = defense.top_flags(scores, 0.1)
    assert flags.sum() == 2 and flags[16] and flags[17]
    ties = np.zeros(20)
    a, b = defense.top_flags(ties, 0.1, seed=0), defense.top_flags(ties, 0.1, seed=0)
    assert (a == b).all() and a.sum() == 2                   # reproducible with a seed
    picks = {tuple(np.flatnonzero(defense.top_flags(ties, 0.1, seed=s))) for s in range(20)}
    assert len(picks) > 5                                    # ties broken at random
    with pytest.raises(ValueError, match="NaN"):
        defense.top_flags(np.array([np.nan] * 20), 0.1)
    with pytest.raises(ValueError, match="fraction"):
        defense.top_flags(scores, 1.5)


def test_compare_rankings_identical_reversed_and_independent():
    rng = np.random.default_rng(0)
    x = rng.random(200)
    same = defense.compare_rankings(x, x)
    assert same["rho"] == pytest.approx(1.0) and same["precision"] == 1.0
    assert same["lift"] == pytest.approx(10.0) and same["precision_p"] < 1e-10
    assert same["chance"] == pytest.approx(0.1)
    rev = defense.compare_rankings(x, -x)
    assert rev["rho"] == pytest.approx(-1.0) and rev["precision"] == 0.0
    noise = defense.compare_rankings(x, rng.random(200))
    assert noise["rho_low"] < 0 < noise["rho_high"] and noise["rho_p"] > 0.01
    assert noise["precision_low"] <= noise["precision"] <= noise["precision_high"]
    with pytest.raises(ValueError, match="too few samples"):
        defense.compare_rankings(x[:5], x[:5])
    with pytest.raises(ValueError, match="same samples"):
        defense.compare_rankings(x, x[:100])


def test_compare_rankings_with_many_zeros_uses_average_ranks():
    from scipy import stats

    a = np.array([0.0] * 80 + list(np.linspace(1, 2, 20)))
    b = np.array([0.0] * 70 + list(np.linspace(1, 2, 30)))
    out = defense.compare_rankings(a, b)
    assert out["rho"] == pytest.approx(stats.spearmanr(stats.rankdata(a), stats.rankdata(b))[0])
    assert out["precision"] == 1.0                           # the top 10 are the top of both


def test_nearest_distances_against_brute_force():
    q, pool = torch.randn(7, 5), torch.randn(30, 5)
    d = ((q[:, None] - pool[None]) ** 2).sum(-1)
    got = defense.nearest_distances(q, pool, k=3, batch_size=2)
    assert torch.allclose(got.float(), d.sort(dim=1).values[:, :3], atol=1e-5)


def test_cheap_signals_rank_a_planted_typical_sample_first():
    from lib.metrics.distances import PerceptualDistance
    from lib.models import ConvClassifier

    torch.manual_seed(0)
    net = ConvClassifier("mcnn", 2, width=4).eval()
    public = torch.rand(40, 1, 32, 32) * 0.1                 # public images near 0
    prior = public[:10] + 0.01
    private = torch.cat([public[:1] + 0.001, torch.rand(9, 1, 32, 32) * 2 - 1])
    out = defense.cheap_signals(net, PerceptualDistance(net), private, torch.zeros(10, dtype=torch.long),
                                public, prior, k_public=3)
    assert list(out.columns) == list(defense.SIGNALS)
    assert out["public_typicality"].idxmax() == 0 and out["prior_proximity"].idxmax() == 0
    assert ((out["target_confidence"] > 0) & (out["target_confidence"] < 1)).all()


def test_split_without_and_stratified_random_removal():
    from lib.data.split import Split

    split = Split("same-class", 0, (0, 1), 3, np.arange(6), np.arange(6, 12), np.arange(12, 20),
                  np.arange(12, 20), np.arange(5))
    labels = np.array([0, 0, 0, 1, 1, 1])
    reduced = defense.split_without(split, [1, 4])
    assert reduced.private.tolist() == [0, 2, 3, 5] and split.private.size == 6
    with pytest.raises(ValueError, match="not in D"):
        defense.split_without(split, [7])
    removed = defense.stratified_random_removal(split.private, labels, [0, 1, 1], seed=0)
    assert sorted(labels[removed].tolist()) == [0, 1, 1]
    assert (defense.stratified_random_removal(split.private, labels, [0, 1, 1], 0) == removed).all()
    with pytest.raises(ValueError, match="cannot remove"):
        defense.stratified_random_removal(split.private, labels, [0] * 4, 0)


def test_recurrence_claim_needs_every_comparison():
    good = {"run": "a", "rho": 0.5, "rho_p": 0.001, "rho_low": 0.3, "rho_high": 0.6,
            "precision": 0.4, "precision_low": 0.2, "precision_high": 0.6, "chance": 0.1}
    weak = {**good, "run": "b", "precision": 0.15}
    assert recurrence_claim(pd.DataFrame([good]))["passed"]
    assert not recurrence_claim(pd.DataFrame([good, weak]))["passed"]
    assert not recurrence_claim(pd.DataFrame([{**good, "rho_p": 0.2}]))["passed"]
    with pytest.raises(ValueError, match="no independent runs"):
        recurrence_claim(pd.DataFrame())
