"""The claim criteria C1, C1b, C1c, C2 (lib.claims) and their statistics on constructed tables."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.errors import InputError
from lib.metrics.stats import combined_p_value, paired_bootstrap_ci
from lib.claims import improvement_claim, membership_claim, resilience_claim, shift_claim


def _results(values: dict) -> pd.DataFrame:
    """values[(mode, metric)] = per-seed list → the long table notebook 06 builds (attack ppa;
    a mode without "/" is a control)."""
    return pd.DataFrame([{"source": mode if mode in CONTROLS else f"ppa/{mode}", "seed": s,
                          "metric": metric, "value": v}
                         for (mode, metric), seq in values.items() for s, v in enumerate(seq)])


CONTROLS = ("real_test", "public_by_target", "random_generator")


def _full(changes=None):
    base = {}
    for mode, level in (("vanilla", 0.2), ("entropy", 0.25), ("entropy+ngd", 0.3)):
        base[mode, "ddcs_best_d_P"] = [level, level + 0.01, level - 0.01]
        base[mode, "resilient_fraction_d_P"] = [0.7, 0.6, 0.65]
        base[mode, "acc1_strict"] = [0.8, 0.7, 0.75]
        base[mode, "gap_DR_d_P"] = [0.0, 0.01, -0.01]
        base[mode, "gap_p_d_P"] = [0.5, 0.4, 0.6]
        base[mode, "shift_d_P"] = [0.0, 0.01, -0.01]
        base[mode, "shift_p_d_P"] = [0.5, 0.4, 0.6]
        base[mode, "shift_flip_p_d_P"] = [0.5, 0.4, 0.6]
        base[mode, "coverage"] = [level, level, level + 0.02]
        base[mode, "fid_e"] = [10 - 10 * level] * 3
    for control, resilient, acc in (("real_test", 0.5, 0.9), ("public_by_target", 0.53, 0.47),
                                    ("random_generator", 0.75, 0.5)):
        base[control, "ddcs_best_d_P"] = [0.5] * 3
        base[control, "resilient_fraction_d_P"] = [resilient] * 3
        base[control, "acc1_strict"] = [acc] * 3
    base.update(changes or {})
    return _results(base)


def test_paired_bootstrap_interval():
    mean, low, high = paired_bootstrap_ci([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert mean == pytest.approx(2.0)
    assert 1.0 <= low <= high <= 3.0            # within the range of the differences
    mean, low, high = paired_bootstrap_ci([1.0, 0.0, 2.0], [0.0, 1.0, 1.0])
    assert low < 0 < high                        # mixed signs: the interval holds 0
    assert math.isnan(paired_bootstrap_ci([1.0], [0.0])[1])
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap_ci([1.0, float("nan")], [1.0, 2.0])


def test_combined_p_value_is_fishers():
    from scipy import stats

    assert combined_p_value([0.3]) == 0.3
    expected = stats.chi2.sf(-2 * (np.log(0.01) + np.log(0.2)), 4)
    assert combined_p_value([0.01, 0.2]) == pytest.approx(expected)
    assert combined_p_value([0.01, 0.01, 0.01]) < 0.01


def test_resilience_claim_reads_the_strongest_attack_against_the_controls():
    out = resilience_claim(_full())
    assert out["passed"] and "entropy+ngd" in out["measured"]
    table = out["table"]
    assert table.loc["ppa/entropy+ngd", "role"] == "attack"
    assert not table.loc["public_by_target", "criterion_met"]           # Acc@1 0.47 < 0.5
    assert table.loc["random_generator", "criterion_met"]               # met without an attack
    assert "random_generator" not in out["measured"] and "met" in out["details"]
    out = resilience_claim(_full({("entropy+ngd", "resilient_fraction_d_P"): [0.4, 0.45, 0.3]}))
    assert not out["passed"]
    below_real = resilience_claim(_full({("real_test", "resilient_fraction_d_P"): [0.7] * 3,
                                         ("entropy+ngd", "resilient_fraction_d_P"): [0.6] * 3}))
    assert not below_real["passed"]                                    # < the real images'
    weak = resilience_claim(_full({("entropy+ngd", "acc1_strict"): [0.3] * 3}))
    assert not weak["passed"]                                          # no label-level success


def test_membership_claim_needs_a_positive_significant_gap():
    assert not membership_claim(_full())["passed"]
    out = membership_claim(_full({("entropy", "gap_DR_d_P"): [0.05, 0.04, 0.06],
                                    ("entropy", "gap_p_d_P"): [0.01, 0.03, 0.02]}))
    assert out["passed"] and "entropy" in out["measured"]
    negative = membership_claim(_full({("entropy", "gap_DR_d_P"): [-0.05, -0.04, -0.06],
                                         ("entropy", "gap_p_d_P"): [0.01, 0.03, 0.02]}))
    assert not negative["passed"]


def test_holm_over_the_family_can_undo_a_nominal_significance():
    """One mode at p = 0.02 in one seed: significant alone, not after Holm over three."""
    one = _results({(m, k): v for (m, k), v in {
        ("vanilla", "gap_DR_d_P"): [0.05], ("vanilla", "gap_p_d_P"): [0.02],
        ("entropy", "gap_DR_d_P"): [0.01], ("entropy", "gap_p_d_P"): [0.5],
        ("entropy+ngd", "gap_DR_d_P"): [0.01], ("entropy+ngd", "gap_p_d_P"): [0.5]}.items()})
    out = membership_claim(one)
    assert not out["passed"] and out["table"].loc["ppa/vanilla", "p_holm"] == pytest.approx(0.06)


def test_shift_claim_reports_the_sign_flips_beside_it():
    out = shift_claim(_full({("entropy", "shift_d_P"): [0.05, 0.04, 0.06],
                             ("entropy", "shift_p_d_P"): [0.001, 0.002, 0.001]}))
    assert out["passed"] and "ppa/entropy" in out["measured"] and "sign flips" in out["details"]
    assert not shift_claim(_full())["passed"]


def test_improvement_claim_needs_all_three_in_the_right_direction():
    out = improvement_claim(_full({("entropy+ngd", "coverage"): [0.25, 0.25, 0.27]}))
    assert out["passed"], out["measured"]
    worse_fid = improvement_claim(_full({("entropy+ngd", "coverage"): [0.25, 0.25, 0.27],
                                           ("entropy+ngd", "fid_e"): [9.0, 9.0, 9.0]}))
    assert not worse_fid["passed"]
    mixed = improvement_claim(_full({("entropy+ngd", "ddcs_best_d_P"): [0.25, 0.1, 0.3],
                                       ("entropy+ngd", "coverage"): [0.25, 0.25, 0.27]}))
    assert not mixed["passed"]
    one_seed = _results({(m, k): [v] for (m, k), seq in
                         {(m, k): [0.1] for m in ("vanilla", "entropy", "entropy+ngd")
                          for k in ("ddcs_best_d_P", "coverage", "fid_e")}.items() for v in seq})
    out = improvement_claim(one_seed)
    assert not out["passed"] and "one seed" in out["measured"]


def test_claims_name_missing_results():
    with pytest.raises(ValueError, match="no 'gap_DR_d_P' values for 'ppa/vanilla'"):
        membership_claim(_full().query("metric != 'gap_DR_d_P' or source != 'ppa/vanilla'"))


# ------------------------------------------------------------------------- wording rules
from lib.claims import DETECTED, NOT_DETECTED, OPPOSITE, read_result  # noqa: E402


def test_a_rejected_test_is_stated_in_its_direction_with_its_interval():
    r = read_result("gap", 0.04, 0.01, 0.07, rejected=True)
    assert r.kind == DETECTED and r.text == "gap detected, +0.04 [+0.01, +0.07]"


def test_an_opposite_result_needs_an_interval_excluding_0_and_controls_of_the_other_sign():
    clean = read_result("gap", -0.03, -0.05, -0.01, rejected=False, controls=[0.02, 0.01])
    assert clean.kind == OPPOSITE and "opposite direction, -0.03 [-0.05, -0.01]" in clean.text
    shared = read_result("gap", -0.03, -0.05, -0.01, rejected=False, controls=[-0.02, 0.01])
    assert shared.kind == NOT_DETECTED and "controls share its sign (-0.02)" in shared.text
    assert shared.controls_share_sign and not clean.controls_share_sign
    wrong_way_expected = read_result("FID-E", 3.0, 2.0, 4.0, rejected=False, expected_sign=-1)
    assert wrong_way_expected.kind == OPPOSITE


def test_anything_else_is_not_detected_with_its_interval_or_limit():
    null = read_result("shift", -0.01, -0.04, 0.02, rejected=False, limit="detection limit 5%")
    assert null.kind == NOT_DETECTED
    assert null.text == "shift not detected (-0.01 [-0.04, +0.02]; detection limit 5%)"
    one_seed = read_result("gap", -0.03, math.nan, math.nan, rejected=False)
    assert one_seed.kind == NOT_DETECTED and "(n = 1)" in one_seed.text
    # the right direction but not rejected (e.g. C3b at p 0.3) is not detected either
    assert read_result("drop", 0.03, 0.01, 0.05, rejected=False).kind == NOT_DETECTED


# ------------------------------------------------------------------------------- C0b
from scipy.spatial.distance import cdist  # noqa: E402

from lib.claims import precondition_claim, precondition_of  # noqa: E402
from lib.metrics.ddcs import ddcs  # noqa: E402
from lib.metrics.fidelity import per_class_prdc  # noqa: E402


def _c0b_results(seed: int, attack_like_members: bool) -> pd.DataFrame:
    """Five seeds of DDCS_best and coverage, computed by the real metric functions on
    constructed features: D is 30 points per class (2 classes, 8-d); the control draws fresh
    points from each class's distribution; the attack is either noisy copies of D's members
    or a draw made exactly like the control."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, size=(2, 8))
    labels = np.repeat([0, 1], 30)
    members = means[labels] + rng.normal(size=(60, 8))
    rows = []
    for s in range(5):
        control = means[labels] + rng.normal(size=(60, 8))
        attack = (members + 0.1 * rng.normal(size=(60, 8)) if attack_like_members
                  else means[labels] + rng.normal(size=(60, 8)))
        for source, x in (("random_generator", control), ("ppa/vanilla", attack)):
            best = ddcs(cdist(x, members, "sqeuclidean"), labels, labels).best
            coverage = per_class_prdc(members, labels, x, labels, k=3)["mean"]["coverage"]
            rows += [{"source": source, "seed": s, "metric": "ddcs_best_d_P", "value": best},
                     {"source": source, "seed": s, "metric": "coverage", "value": coverage}]
    return pd.DataFrame(rows)


def test_c0b_passes_for_noisy_copies_of_the_members():
    out = precondition_claim(_c0b_results(0, attack_like_members=True))
    assert out["passed"] is True
    assert out["table"]["passes"].all() and (out["table"]["seeds"] == 5).all()
    assert out["measured"].startswith("ppa pass")
    assert precondition_of(out["table"], "ppa/entropy") == "ppa/entropy; ppa C0b pass"
    assert precondition_of(out["table"], "gmi/vanilla") == "gmi/vanilla; gmi C0b not tested"


def test_c0b_rarely_passes_for_draws_made_like_the_control():
    passes = sum(bool(precondition_claim(_c0b_results(seed, attack_like_members=False))["passed"])
                 for seed in range(100))
    assert passes <= 10, f"{passes} of 100 null draws passed C0b"


def test_c0b_with_one_seed_is_not_run_rather_than_failed():
    results = _c0b_results(0, attack_like_members=True)
    out = precondition_claim(results[results.seed == 0])
    assert out["passed"] is None and "at least 2 seeds" in out["status"]
    assert precondition_of(out["table"], "ppa/vanilla") == "ppa/vanilla; ppa C0b not run"


def test_c0b_needs_the_control():
    results = _c0b_results(0, attack_like_members=True)
    with pytest.raises(InputError, match="random_generator"):
        precondition_claim(results[results.source != "random_generator"])


def test_c2_reads_the_paired_t_interval_with_the_bootstrap_beside():
    """Three differences of one sign but spread out: the bootstrap excludes 0 (all share a
    sign), the paired t interval does not — C2's registered interval is the t one."""
    out = improvement_claim(_full({("entropy+ngd", "ddcs_best_d_P"): [0.21, 0.41, 0.20]}))
    row = out["table"].query("mode == 'entropy+ngd' and metric == 'DDCS_best (d_P)'").iloc[0]
    assert row.boot_low > 0 and row.low < 0 < row.high
    assert not out["passed"] and "paired t" in out["criterion"] and "bootstrap [" in out["measured"]


def test_evaluation_claims_name_the_attack_and_its_c0b():
    from lib.stages.evaluation import evaluation_claims

    changes = {("vanilla", "acc1_restricted"): [0.9, 0.8, 0.85],
               ("random_generator", "acc1_restricted"): [0.6] * 3,
               ("real_test", "acc1_restricted"): [0.95] * 3,
               ("public_by_target", "acc1_restricted"): [0.5] * 3,
               ("random_generator", "coverage"): [0.1, 0.1, 0.12]}
    for mode in ("entropy", "entropy+ngd"):
        changes[mode, "acc1_restricted"] = [0.9, 0.8, 0.85]
    claims = evaluation_claims(_full(changes), "cluster-shift")
    assert list(claims) == ["C0b", "C1", "C1b", "C1c", "C2"]
    assert claims["C0b"]["passed"] is False            # DDCS_best 0.2 < the control's 0.5
    assert claims["C1"]["precondition"] == "ppa/entropy+ngd; ppa C0b FAIL"
    assert "restricted Acc@1 0.85 (strict 0.75)" in claims["C1"]["measured"]
    assert claims["C2"]["precondition"] == "ppa/entropy+ngd − ppa/vanilla; ppa C0b FAIL"
    same_class = evaluation_claims(_full(changes), "same-class")
    assert "strict Acc@1 0.75" in same_class["C1"]["measured"]
