"""The membership tests on constructed data where the answer is known (claims C1b, C1c, C3b),
and the positive-control machinery (leaks, doses, the detection limit)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.claims import detection_limit, membership_exposure_claim, shift_claim
from lib.errors import InputError
from lib.metrics.leaks import blend, dose, lazy_blend, project, same_class_partners
from lib.metrics.membership import membership_gap, membership_shift
from lib.metrics.stats import holm, sign_flip_p

N, DIM, CLASSES = 40, 16, (0, 1)


def world(seed: int = 0):
    """Members D and non-members R (N per class, the same class distribution), and starting
    points r0 drawn from that distribution too: no reconstruction knows D."""
    rng = np.random.default_rng(seed)
    means = {c: rng.normal(0, 4, DIM) for c in CLASSES}
    labels = np.repeat(CLASSES, N)
    draw = lambda: np.stack([means[c] + rng.normal(0, 1, DIM) for c in labels])  # noqa: E731
    return draw(), draw(), draw(), labels, means


def sq(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def run_tests(final, starts, members, nonmembers, labels):
    gap = membership_gap(sq(final, members), sq(final, nonmembers), labels, labels, labels,
                         n_permutations=300, seed=1)
    shift = membership_shift(sq(final, members), sq(final, nonmembers), sq(starts, members),
                             sq(starts, nonmembers), labels, labels, labels, n_permutations=300,
                             seed=1, n_flips=2000)
    return gap, shift


def dosed(starts, members, labels, fraction, alpha=0.7, seed=0):
    """Starting points with a dose of them replaced by blends toward distinct members."""
    final = starts + np.random.default_rng(seed + 7).normal(0, 0.05, starts.shape)
    rows, who = dose(labels, labels, fraction, seed)
    final[rows] = alpha * members[who] + (1 - alpha) * starts[rows]
    return final


def test_blends_of_members_are_seen_at_a_high_dose_and_not_at_zero():
    members, nonmembers, starts, labels, _ = world()
    gap, shift = run_tests(dosed(starts, members, labels, 1.0), starts, members, nonmembers, labels)
    assert gap.gap > 0 and gap.p_value < 0.05
    assert shift.mean_shift > 0 and shift.p_value < 0.05 and shift.sign_flip_p < 0.05
    gap, shift = run_tests(dosed(starts, members, labels, 0.0), starts, members, nonmembers, labels)
    assert gap.p_value > 0.05 and shift.p_value > 0.05


def test_a_drift_toward_the_class_mean_does_not_pass_c1c():
    """Moving every reconstruction toward its class's mean (membership-independent) brings it
    closer to D and to R alike: no shift toward the members."""
    members, nonmembers, starts, labels, means = world(seed=3)
    centre = np.stack([means[c] for c in labels])
    final = starts + 0.6 * (centre - starts)
    _, shift = run_tests(final, starts, members, nonmembers, labels)
    assert shift.p_value > 0.05
    results = pd.DataFrame([{"source": "ppa/vanilla", "seed": 0, "metric": m, "value": v,
                             "space": "d_P"}
                            for m, v in (("shift_d_P", shift.mean_shift),
                                         ("shift_p_d_P", shift.p_value),
                                         ("shift_flip_p_d_P", shift.sign_flip_p))])
    assert not shift_claim(results)["passed"]


def test_dose_is_nested_and_leaks_distinct_members():
    labels = np.repeat([0, 1], 20)
    small_rows, small_members = dose(labels, labels, 0.25, seed=4)
    big_rows, big_members = dose(labels, labels, 0.5, seed=4)
    assert len(small_rows) == 10 and len(big_rows) == 20
    assert set(zip(small_rows, small_members)) <= set(zip(big_rows, big_members))
    assert (labels[big_rows] == labels[big_members]).all()       # leaks of its own class
    assert len(set(big_members)) == len(big_members)
    assert dose(labels, labels, 0.0, seed=4)[0].size == 0
    with pytest.raises(ValueError, match="fraction"):
        dose(labels, labels, 1.5, seed=4)


def test_a_dose_beyond_the_members_cycles_through_them():
    """The face split: 50 reconstructions per identity, about 27 members."""
    recon_labels, member_labels = np.repeat([0, 1], 5), np.repeat([0, 1], 3)
    rows, members = dose(recon_labels, member_labels, 1.0, seed=4)
    assert len(rows) == 10 and (member_labels[members] == recon_labels[rows]).all()
    for c in (0, 1):
        mine = members[recon_labels[rows] == c]
        assert len(set(mine[:3])) == 3 and (mine[3:] == mine[:2]).all()   # each once, then again
    half_rows, half_members = dose(recon_labels, member_labels, 0.6, seed=4)
    assert set(zip(half_rows, half_members)) <= set(zip(rows, members))
    with pytest.raises(ValueError, match="no members to leak"):
        dose(recon_labels, np.repeat([0], 3), 0.5, seed=4)


def test_lazy_blend_gives_the_whole_blend_a_slice_at_a_time():
    members, partners = torch.rand(11, 1, 4, 4), torch.rand(11, 1, 4, 4)
    lazy = lazy_blend(members, lambda lo, hi: partners[lo:hi], 0.35)
    assert torch.equal(lazy.tensor(rows=3), blend(members, partners, 0.35))
    assert torch.equal(lazy[4:7], blend(members, partners, 0.35)[4:7])
    with pytest.raises(InputError, match="exact copy"):
        lazy_blend(members, lambda lo, hi: partners[lo:hi], 1.0)


def test_blend_refuses_an_exact_copy_and_partners_are_same_class():
    a, b = torch.ones(2, 1, 2, 2), -torch.ones(2, 1, 2, 2)
    assert torch.allclose(blend(a, b, 0.25), torch.full_like(a, -0.5))
    with pytest.raises(ValueError, match="exact copy"):
        blend(a, b, 1.0)
    partners = same_class_partners(np.array([0, 1, 1]), np.array([1, 0, 0, 1]), seed=0)
    assert (np.array([1, 0, 0, 1])[partners] == [0, 1, 1]).all()


def test_project_finds_a_code_whose_image_is_near_the_target():
    class Linear(torch.nn.Module):                 # a generator: z ↦ W z, as 1×2×2 images
        z_dim = 3

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(3, 4, bias=False)

        def forward(self, z):
            return self.w(z).reshape(-1, 1, 2, 2)

    class Squared(torch.nn.Module):
        def forward(self, x, y):
            return (x - y).pow(2).flatten(1).sum(1)

    torch.manual_seed(0)
    G = Linear()
    targets = G(torch.randn(5, 3)).detach()          # inside the range: distance → 0
    codes, images, dist = project(G, Squared(), targets, steps=300, lr=0.05, restarts=2)
    assert codes.shape == (5, 3) and images.shape == targets.shape and (dist < 1e-3).all()


def test_detection_limit_is_the_smallest_dose_meeting_the_criterion():
    rows = []
    for fraction, p in ((0.0, 0.6), (0.1, 0.2), (0.25, 0.01), (0.5, 0.001)):
        for seed in (0, 1):
            rows += [{"statistic": "C1b", "kind": "blend α=0.5", "fraction": fraction,
                      "seed": seed, "value": 0.1 if fraction else -0.01, "p": p},
                     {"statistic": "C1c", "kind": "blend α=0.5", "fraction": fraction,
                      "seed": seed, "value": -0.1, "p": p}]          # wrong sign: never
    assert detection_limit(pd.DataFrame(rows)) == {"C1b": {"blend α=0.5": 0.25},
                                                   "C1c": {"blend α=0.5": None}}


def test_holm_and_sign_flips():
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]).tolist() == [0.5]
    assert sign_flip_p(np.full(20, 1.0), 2000) < 0.001
    assert sign_flip_p(np.r_[np.ones(10), -np.ones(10)], 2000) > 0.4


def _drops(effect: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"retrain_seed": r, "drop_without_flagged": rng.normal(effect, 1),
                          "drop_without_random": rng.normal(0, 1)}
                         for r in (0, 1) for _ in range(30)])


def test_c3b_passes_when_removing_the_flagged_samples_lowers_their_exposure():
    assert membership_exposure_claim(_drops(1.0, 0))["passed"]


def test_c3b_fails_for_a_random_ranking():
    """Flags unrelated to membership: removing them does no more than removing random ones."""
    claim = membership_exposure_claim(_drops(0.0, 5))
    assert not claim["passed"]


def test_the_starting_points_half_of_the_shift_null_is_reused_bit_for_bit():
    """The dose-response loop computes the starts' half of C1c's null once (``StartTerms``):
    every dose then gives exactly what a call computing it afresh gives."""
    from lib.metrics.membership import shift_start_terms
    members, nonmembers, starts, labels, _ = world()
    terms = shift_start_terms(sq(starts, members), sq(starts, nonmembers), labels, labels, labels,
                              n_permutations=300, seed=1, chunk=70)
    for fraction in (0.0, 0.5, 1.0):
        final = dosed(starts, members, labels, fraction)
        args = (sq(final, members), sq(final, nonmembers), sq(starts, members),
                sq(starts, nonmembers), labels, labels, labels)
        fresh = membership_shift(*args, n_permutations=300, seed=1, chunk=70)
        reused = membership_shift(*args, n_permutations=300, seed=1, chunk=70, start_terms=terms)
        assert fresh.mean_shift == reused.mean_shift and fresh.p_value == reused.p_value
        assert np.array_equal(fresh.null, reused.null) and np.array_equal(fresh.shifts, reused.shifts)
    with pytest.raises(InputError, match="other permutations"):
        membership_shift(*args, n_permutations=300, seed=2, chunk=70, start_terms=terms)
