"""DDCS and membership-calibrated DDCS on hand-computed cases, and every error path."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lib.metrics.ddcs import DEFAULT_EPS, ddcs
from lib.metrics.membership import (_class_blocks, gaps_for_masks, membership_gap,
                                    permutation_masks)


# ----------------------------------------------------------------------------------- DDCS
def test_hand_computed_two_classes():
    # training: class 0 = samples 0, 1; class 1 = samples 2, 3.
    # r0, r1 (class 0): nearest same-class sample is 0 (0.5 < 1.0 and 0.25 < 3.0).
    # r2 (class 1): sample 3 at 2.0 beats sample 2 at 4.0; samples 0, 1 at 0.1 are class 0
    #   and must be ignored.
    # best: s0 = 1/min(0.5, 0.25) = 4, s3 = 1/2 = 0.5, s1 = s2 = 0 → DDCS_best = 4.5 / 4.
    # avg:  s0 = 1/mean(0.5, 0.25) = 1/0.375, s3 = 0.5 → DDCS_avg = (1/0.375 + 0.5) / 4.
    dist = np.array([[0.5, 1.0, 9.0, 9.0],
                     [0.25, 3.0, 9.0, 9.0],
                     [0.1, 0.1, 4.0, 2.0]])
    res = ddcs(dist, [0, 0, 1], [0, 0, 1, 1])
    assert res.assignment.tolist() == [0, 0, 3]
    assert res.assigned_distance.tolist() == [0.5, 0.25, 2.0]
    assert res.n_assigned.tolist() == [2, 0, 0, 1]
    assert res.min_distance.tolist() == [0.25, np.inf, np.inf, 2.0]
    assert res.per_sample_best.tolist() == [4.0, 0.0, 0.0, 0.5]
    assert res.per_sample_avg.tolist() == pytest.approx([1 / 0.375, 0, 0, 0.5])
    assert res.best == pytest.approx(4.5 / 4)
    assert res.avg == pytest.approx((1 / 0.375 + 0.5) / 4)
    assert res.resilient_fraction == 0.5


def test_collapse_onto_one_sample_counts_once():
    # ten reconstructions all nearest to sample 0, best at 0.5 → only s0 = 2, DDCS = 2 / 3
    dist = np.array([[0.5, 2.0, 3.0]] + [[0.8, 2.0, 3.0]] * 9)
    res = ddcs(dist, [0] * 10, [0, 0, 0])
    assert res.per_sample_best.tolist() == [2.0, 0.0, 0.0]
    assert res.best == pytest.approx(2.0 / 3)
    assert res.avg == pytest.approx(1 / ((0.5 + 9 * 0.8) / 10) / 3)
    assert res.n_assigned.tolist() == [10, 0, 0]
    assert res.resilient_fraction == pytest.approx(2 / 3)


def test_full_coverage():
    d = 0.2
    dist = np.full((4, 4), 5.0)
    np.fill_diagonal(dist, d)
    res = ddcs(dist, [0, 0, 1, 1], [0, 0, 1, 1])
    assert res.best == pytest.approx(1 / d) and res.avg == pytest.approx(1 / d)
    assert res.assignment.tolist() == [0, 1, 2, 3] and res.resilient_fraction == 0.0


def test_class_without_reconstructions_counts_zero():
    # class 1 has two training samples and no reconstructions: mean over all 3 samples
    res = ddcs(np.array([[1.0, 7.0, 7.0]]), [0], [0, 1, 1])
    assert res.per_sample_best.tolist() == [1.0, 0.0, 0.0]
    assert res.best == pytest.approx(1 / 3) and res.avg == pytest.approx(1 / 3)


def test_ties_go_to_the_lowest_index():
    res = ddcs(np.array([[3.0, 1.0, 1.0, 1.0]]), [0], [1, 0, 0, 0])
    assert res.assignment.tolist() == [1]
    assert res.per_sample_best.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_zero_distance_is_floored_at_eps():
    res = ddcs(np.array([[0.0, 1.0]]), [0], [0, 0])
    assert res.per_sample_best[0] == pytest.approx(1 / DEFAULT_EPS)
    assert np.isfinite(res.best) and res.best == pytest.approx(0.5 / DEFAULT_EPS)
    assert ddcs(np.array([[0.0]]), [0], [0], eps=0.5).best == 2.0
    assert ddcs(np.array([[0.0]]), [0], [0], eps=0.5).avg == 2.0


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    dist, rl, tl = rng.random((12, 9)), rng.integers(0, 3, 12), np.repeat([0, 1, 2], 3)
    a = ddcs(dist, rl, tl)
    b = ddcs(torch.from_numpy(dist), torch.from_numpy(rl), torch.from_numpy(tl))
    c = ddcs(torch.from_numpy(dist), rl.tolist(), tl.tolist())
    for other in (b, c):
        assert a.best == other.best and a.avg == other.avg
        for field in ("per_sample_best", "per_sample_avg", "n_assigned", "assignment",
                      "assigned_distance", "min_distance"):
            assert np.array_equal(getattr(a, field), getattr(other, field))


@pytest.mark.parametrize("dist, rl, tl, match", [
    (np.ones((2, 3)), [0], [0, 0, 0], r"shape \(2, 3\).*\(1, 3\)"),
    (np.ones((1, 2)), [0], [0, 0, 0], r"shape \(1, 2\).*\(1, 3\)"),
    (np.ones(3), [0, 0, 0], [0], "shape"),
    (np.array([[np.nan]]), [0], [0], "NaN or inf"),
    (np.array([[np.inf]]), [0], [0], "NaN or inf"),
    (np.array([[-np.inf]]), [0], [0], "NaN or inf"),
    (np.array([[-1.0]]), [0], [0], "negative distances"),
    (np.ones((1, 2)), [5], [0, 0], r"class\(es\) \[5\] have no training samples"),
    (np.ones((0, 2)), [], [0, 0], "at least one reconstruction"),
    (np.ones((1, 0)), [0], [], "at least one reconstruction and one training sample"),
    (np.ones((1, 1)), [0.5], [0], "integer class ids"),
    (np.ones((1, 1)), [[0]], [0], "1-D"),
])
def test_errors(dist, rl, tl, match):
    with pytest.raises(ValueError, match=match):
        ddcs(dist, rl, tl)


@pytest.mark.parametrize("eps", [0.0, -1e-8, float("nan")])
def test_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="eps must be"):
        ddcs(np.ones((1, 1)), [0], [0], eps=eps)


# ----------------------------------------------------------------------------- membership
def slow_gap(dist_m, dist_n, rl, ml, nl, masks, p, statistic):
    """Gap of permutation ``p`` by calling ddcs() on the permuted column selections.

    Pooled columns of class c are [its members | its non-members] in index order, the
    layout the masks refer to."""
    pooled = np.concatenate([dist_m, dist_n], axis=1)
    pooled_labels = np.r_[ml, nl]
    in_d, in_r = [], []
    for c, mask in zip(np.unique(np.r_[ml, nl]), masks):
        cols = np.r_[np.flatnonzero(ml == c), len(ml) + np.flatnonzero(nl == c)]
        in_d.append(cols[mask[p].numpy()])
        in_r.append(cols[~mask[p].numpy()])
    in_d, in_r = np.concatenate(in_d), np.concatenate(in_r)
    on_d = ddcs(pooled[:, in_d], rl, pooled_labels[in_d])
    on_r = ddcs(pooled[:, in_r], rl, pooled_labels[in_r])
    return getattr(on_d, statistic) - getattr(on_r, statistic)


def points_setting(members_close: bool, seed: int, n: int = 8, classes: int = 3):
    """Squared distances in 3-D: reconstructions next to members, or drawn like D and R."""
    rng = np.random.default_rng(seed)
    members, nonmembers = rng.normal(size=(2, classes * n, 3)) * 3
    recon = (members + 0.05 * rng.normal(size=members.shape) if members_close
             else rng.normal(size=members.shape) * 3)
    labels = np.repeat(np.arange(classes), n)
    dm = ((recon[:, None] - members[None]) ** 2).sum(-1)
    dn = ((recon[:, None] - nonmembers[None]) ** 2).sum(-1)
    return dm, dn, labels, labels, labels


def test_membership_hand_computed():
    # one class, 2 members, 2 non-members, 2 reconstructions.
    # D: both go to member 0 (1 and 2) → best: s = [1, 0], DDCS = 0.5; avg: [1/1.5, 0] → 1/3
    # R: r0 → R0 at 2, r1 → R1 at 0.5 → s = [0.5, 2] for both → DDCS = 1.25
    dm = np.array([[1.0, 4.0], [2.0, 4.0]])
    dn = np.array([[2.0, 8.0], [4.0, 0.5]])
    res = membership_gap(dm, dn, [0, 0], [0, 0], [0, 0], "best", n_permutations=10)
    assert res.ddcs_members.best == 0.5 and res.ddcs_nonmembers.best == 1.25
    assert res.gap == pytest.approx(-0.75)
    assert res.per_sample_member_score.tolist() == [1.0, 0.0]
    # member 0 (score 1) is above R's 0.5 and below 2 → 0.5; member 1 (0) is below both → 0
    assert res.per_sample_nonmember_quantile.tolist() == [0.5, 0.0]
    avg = membership_gap(dm, dn, [0, 0], [0, 0], [0, 0], "avg", n_permutations=10)
    assert avg.gap == pytest.approx(1 / 3 - 1.25)


def test_quantile_counts_ties_as_half():
    # member scores [1, 1/2]; non-member scores [1/2, 1]: one lower + half a tie, half a tie
    dm = np.array([[1.0, 9.0], [9.0, 2.0]])
    dn = np.array([[2.0, 9.0], [9.0, 1.0]])
    res = membership_gap(dm, dn, [0, 0], [0, 0], [0, 0], n_permutations=5)
    assert res.per_sample_nonmember_quantile.tolist() == [0.75, 0.25]


def test_reconstructions_next_to_members_give_a_significant_gap():
    res = membership_gap(*points_setting(True, seed=0), n_permutations=200, seed=0)
    assert res.gap > 0 and res.p_value < 0.05
    assert res.p_value >= 1 / 201
    assert res.null_gaps.shape == (200,) and res.n_permutations == 200
    assert res.per_sample_nonmember_quantile.mean() > 0.8


def test_equidistant_reconstructions_give_p_one():
    # every distance equal: every permutation gives exactly the observed gap 0
    dm = dn = np.ones((6, 6))
    labels = np.repeat([0, 1], 3)
    res = membership_gap(dm, dn, labels, labels, labels, n_permutations=50)
    assert res.gap == 0.0 and np.all(res.null_gaps == 0.0) and res.p_value == 1.0


def test_exchangeable_sets_are_not_significant():
    res = membership_gap(*points_setting(False, seed=1), n_permutations=200, seed=0)
    assert res.p_value > 0.05
    assert 1 / 201 <= res.p_value <= 1
    assert res.null_gaps.shape == (200,)


def test_single_permutation_p_value_bounds():
    res = membership_gap(*points_setting(True, seed=0), n_permutations=1)
    assert res.null_gaps.shape == (1,) and res.p_value in (0.5, 1.0)


@pytest.mark.parametrize("statistic", ["best", "avg"])
def test_permutation_gaps_equal_slow_ddcs_reference(statistic):
    # tie-heavy integer distances, 3 classes, class 2 without reconstructions
    rng = np.random.default_rng(2)
    ml = nl = np.repeat([0, 1, 2], 3)
    rl = np.array([0, 0, 0, 0, 1, 1, 1])
    dm = rng.integers(0, 4, size=(7, 9)).astype(float)
    dn = rng.integers(0, 4, size=(7, 9)).astype(float)
    res = membership_gap(dm, dn, rl, ml, nl, statistic, n_permutations=6, seed=5)
    masks = permutation_masks([3, 3, 3], 6, seed=5)
    for p in range(6):
        expected = slow_gap(dm, dn, rl, ml, nl, masks, p, statistic)
        assert res.null_gaps[p] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_all_explicit_masks_of_a_small_class_match_ddcs():
    # every way to choose 2 "members" out of 4 pooled samples
    rng = np.random.default_rng(3)
    dm, dn = rng.random((3, 2)), rng.random((3, 2))
    rl, ml, nl = np.zeros(3, int), np.zeros(2, int), np.zeros(2, int)
    rows = [[i in pick for i in range(4)] for pick in itertools.combinations(range(4), 2)]
    masks = [torch.tensor(rows)]
    blocks = _class_blocks(dm, dn, rl, ml, nl)
    for statistic in ("best", "avg"):
        fast = gaps_for_masks(blocks, masks, statistic, 2, 2)
        slow = [slow_gap(dm, dn, rl, ml, nl, masks, p, statistic) for p in range(len(rows))]
        assert fast == pytest.approx(slow, rel=1e-12)
    identity = gaps_for_masks(blocks, masks, "best", 2, 2)[0]  # first combination = (0, 1)
    assert identity == pytest.approx(ddcs(dm, rl, ml).best - ddcs(dn, rl, nl).best)


def test_chunk_size_does_not_change_the_result():
    setting = points_setting(False, seed=4)
    a = membership_gap(*setting, n_permutations=30, seed=2, chunk=1)
    b = membership_gap(*setting, n_permutations=30, seed=2, chunk=1000)
    assert np.allclose(a.null_gaps, b.null_gaps, rtol=1e-12, atol=0) and a.p_value == b.p_value


def test_membership_numpy_and_torch_agree():
    dm, dn, rl, ml, nl = points_setting(True, seed=0)
    a = membership_gap(dm, dn, rl, ml, nl, n_permutations=20)
    b = membership_gap(*(torch.from_numpy(x) for x in (dm, dn, rl, ml, nl)), n_permutations=20)
    assert a.gap == b.gap and a.p_value == b.p_value
    assert np.array_equal(a.null_gaps, b.null_gaps)


def test_membership_errors():
    dm, dn, rl, ml, nl = points_setting(True, seed=0)
    with pytest.raises(ValueError, match="class 2: 7 members but 8 non-members.*equal numbers"):
        membership_gap(dm[:, :-1], dn, rl, ml[:-1], nl)
    with pytest.raises(ValueError, match="n_permutations must be >= 1"):
        membership_gap(dm, dn, rl, ml, nl, n_permutations=0)
    with pytest.raises(ValueError, match="unknown statistic 'median'"):
        membership_gap(dm, dn, rl, ml, nl, statistic="median")
    with pytest.raises(ValueError, match="NaN or inf"):
        membership_gap(dm, dn * np.nan, rl, ml, nl)
    with pytest.raises(ValueError, match="shape"):
        membership_gap(dm, dn[:, :-1], rl, ml, nl)
    with pytest.raises(ValueError, match="eps must be"):
        membership_gap(dm, dn, rl, ml, nl, eps=0.0)
    with pytest.raises(ValueError, match="chunk must be"):
        membership_gap(dm, dn, rl, ml, nl, chunk=0)


def _authors_ddcs(dist, recon_labels, train_labels):
    """DDCS as the authors' get_ddcs computes it (evaluate.py:212-268 at 2b16694, written here
    from its description, not copied): per class, each reconstruction goes to its nearest
    training image; a training image scores 1 / its smallest and 1 / the mean of its assigned
    distances, 0 when none is assigned; both sums are divided by the number of training images.
    No distance floor."""
    n = len(train_labels)
    best = avg = 0.0
    for c in np.unique(train_labels):
        rows, cols = np.flatnonzero(recon_labels == c), np.flatnonzero(train_labels == c)
        if not rows.size:
            continue
        block = dist[np.ix_(rows, cols)]
        nearest = block.argmin(1)
        for j in range(len(cols)):
            mine = block[nearest == j, j]
            if mine.size:
                best += 1.0 / mine.min()
                avg += 1.0 / mine.mean()
    return best / n, avg / n


def test_equals_the_authors_formula_in_float64():
    """docs/method.md: ours equals the authors' DDCS where theirs is defined (no zero distance,
    classes contiguous, ≥ 2 training images per class)."""
    rng = np.random.default_rng(3)
    train_labels, recon_labels = np.repeat([0, 1, 2], [7, 5, 9]), rng.integers(0, 3, 40)
    dist = rng.random((40, 21)) + 0.05
    ours = ddcs(dist, recon_labels, train_labels)
    theirs = _authors_ddcs(dist, recon_labels, train_labels)
    assert abs(ours.best - theirs[0]) <= 1e-12 * theirs[0]
    assert abs(ours.avg - theirs[1]) <= 1e-12 * theirs[1]


def test_sign_flips_drawn_in_blocks_equal_the_whole_draw(monkeypatch):
    """C1c's sign-flip null is drawn a block of rows at a time (its (flips × reconstructions)
    matrix would be 800 MB at the paper's counts); the means equal the whole draw's exactly."""
    from lib.metrics import membership

    values = np.random.default_rng(1).normal(size=997)
    whole = (np.random.default_rng(5).choice([-1.0, 1.0], size=(1000, 997)) * values).mean(axis=1)
    monkeypatch.setattr(membership, "FLIP_CHUNK_VALUES", 997 * 7 + 3)   # blocks of 7 rows
    assert np.array_equal(membership.sign_flipped_means(values, 1000, 5), whole)
