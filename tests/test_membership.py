"""Membership-calibrated DDCS: the D-vs-R gap and its permutation test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.metrics import ddcs, membership_gap
from lib.metrics.membership import _class_blocks, gaps_for_masks, random_masks


def setting(member_closer: bool, seed: int = 0, n: int = 10, classes: int = 2):
    """Reconstructions near members (or exchangeable D and R) in 2-D points."""
    rng = np.random.default_rng(seed)
    members = rng.normal(size=(classes * n, 2)) * 5
    nonmembers = rng.normal(size=(classes * n, 2)) * 5
    labels = np.repeat(np.arange(classes), n)
    if member_closer:
        recon = members + rng.normal(size=members.shape) * 0.05
    else:
        recon = rng.normal(size=members.shape) * 5
    dm = ((recon[:, None] - members[None]) ** 2).sum(-1)
    dn = ((recon[:, None] - nonmembers[None]) ** 2).sum(-1)
    return dm, dn, labels, labels, labels


def test_members_closer_gives_a_significant_gap():
    res = membership_gap(*setting(True), n_permutations=200, seed=1)
    assert res.gap > 0 and res.p_value < 0.05
    assert len(res.null_gaps) == 200
    assert res.p_value >= 1 / 201
    assert res.per_sample_nonmember_quantile.mean() > 0.8


def test_exchangeable_sets_give_no_significance():
    res = membership_gap(*setting(False, seed=3), n_permutations=200, seed=1)
    assert res.p_value > 0.05
    assert 1 / 201 <= res.p_value <= 1


def test_observed_gap_is_ddcs_difference():
    dm, dn, rl, ml, nl = setting(True)
    res = membership_gap(dm, dn, rl, ml, nl, statistic="avg", n_permutations=5)
    assert res.gap == pytest.approx(ddcs(dm, rl, ml).avg - ddcs(dn, rl, nl).avg)


@pytest.mark.parametrize("statistic", ["best", "avg"])
def test_vectorised_permutations_equal_a_slow_reference(statistic):
    dm, dn, rl, ml, nl = setting(False, n=6, classes=2)
    blocks = _class_blocks(dm, dn, rl, ml, nl)
    rng = np.random.default_rng(0)
    masks = [random_masks(n, 4, rng) for _, n in blocks]
    fast = gaps_for_masks(blocks, masks, statistic, len(ml), len(nl))
    for p in range(4):
        cols_d, cols_r, labels_d = [], [], []
        for c, ((block, n), mask) in enumerate(zip(blocks, masks)):
            pooled = block.numpy()
            cols_d.append(pooled[:, mask[p].numpy()])
            cols_r.append(pooled[:, ~mask[p].numpy()])
            labels_d += [c] * n
        rows = np.concatenate([np.full(b.shape[0], c) for c, (b, _) in enumerate(blocks)])
        full_d = np.full((len(rows), len(labels_d)), 1e9)
        full_r = np.full((len(rows), len(labels_d)), 1e9)
        r0 = c0 = 0
        for d_part, r_part in zip(cols_d, cols_r):
            full_d[r0:r0 + len(d_part), c0:c0 + d_part.shape[1]] = d_part
            full_r[r0:r0 + len(r_part), c0:c0 + r_part.shape[1]] = r_part
            r0, c0 = r0 + len(d_part), c0 + d_part.shape[1]
        slow = (getattr(ddcs(full_d, rows, labels_d), statistic)
                - getattr(ddcs(full_r, rows, labels_d), statistic))
        assert fast[p] == pytest.approx(slow, rel=1e-12)


def test_masks_select_half_of_each_class():
    masks = random_masks(5, 7, np.random.default_rng(0))
    assert masks.shape == (7, 10) and (masks.sum(1) == 5).all()


def test_errors():
    dm, dn, rl, ml, nl = setting(True)
    with pytest.raises(ValueError, match="equal numbers"):
        membership_gap(dm[:, :-1], dn, rl, ml[:-1], nl)
    with pytest.raises(ValueError, match="n_permutations"):
        membership_gap(dm, dn, rl, ml, nl, n_permutations=0)
    with pytest.raises(ValueError, match="statistic"):
        membership_gap(dm, dn, rl, ml, nl, statistic="median")
    with pytest.raises(ValueError, match="NaN"):
        membership_gap(dm * np.nan, dn, rl, ml, nl)


def test_torch_inputs():
    dm, dn, rl, ml, nl = setting(True)
    a = membership_gap(dm, dn, rl, ml, nl, n_permutations=20)
    b = membership_gap(torch.from_numpy(dm), torch.from_numpy(dn), torch.from_numpy(rl),
                       torch.from_numpy(ml), torch.from_numpy(nl), n_permutations=20)
    assert a.gap == b.gap and a.p_value == b.p_value
