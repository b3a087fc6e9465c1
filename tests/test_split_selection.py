"""The shifted split's selection rule (docs/protocol.md, "Choosing a shifted split") on
constructed measurements: each criterion can fail on its own, and the larger shift wins."""
from __future__ import annotations

import copy

from lib.stages import split_selection as S


def _candidate(restricted=0.7, attack=(0.3, 0.4), control=(0.2, 0.3), shift=(10.0, 1.0),
               c0=True):
    per_seed = {}
    for seed in S.SELECTION_SEEDS:
        per_seed[f"ppa/vanilla/seed{seed}"] = {"ddcs_best_d_P": attack[0], "coverage": attack[1],
                                               "acc1_restricted": restricted, "acc1_strict": 0.4}
        per_seed[f"random_generator/seed{seed}"] = {"ddcs_best_d_P": control[0],
                                                    "coverage": control[1],
                                                    "acc1_restricted": 0.5, "acc1_strict": 0.3}
    return {"C0": {"passed": c0}, "per_seed": per_seed,
            "shift": {"mean": shift[0], "sd": shift[1]}}


REFERENCE = {"mean": 2.0, "sd": 0.5}


def test_a_candidate_meeting_all_four_passes():
    out = S.criteria(_candidate(), REFERENCE)
    assert out["passes"] and all(out["checks"].values())
    assert out["shift_over_same_class"] == 8.0
    assert abs(out["restricted_acc1_mean"] - 0.7) < 1e-12


def test_each_criterion_fails_on_its_own():
    failing = {"1_C0": _candidate(c0=False), "2_restricted_acc1": _candidate(restricted=0.45),
               "3_beats_random_generator": _candidate(control=(0.2, 0.45)),
               "4_shift": _candidate(shift=(3.0, 1.0))}       # 3 − 2 = 1 ≤ 2 × 1
    for name, candidate in failing.items():
        out = S.criteria(candidate, REFERENCE)
        assert not out["passes"] and [k for k, v in out["checks"].items() if not v] == [name]


def test_criterion_3_needs_every_seed():
    candidate = _candidate()
    one = copy.deepcopy(candidate)
    one["per_seed"][f"random_generator/seed{S.SELECTION_SEEDS[1]}"]["coverage"] = 0.5
    assert not S.criteria(one, REFERENCE)["checks"]["3_beats_random_generator"]


def test_the_larger_shift_is_chosen_and_none_when_neither_passes():
    small, large = _candidate(shift=(6.0, 1.0)), _candidate(shift=(9.0, 1.0))
    both = {"a": {"criteria": S.criteria(small, REFERENCE)},
            "b": {"criteria": S.criteria(large, REFERENCE)}}
    assert S.choose(both) == "b"
    both["b"]["criteria"] = S.criteria(_candidate(c0=False, shift=(9.0, 1.0)), REFERENCE)
    assert S.choose(both) == "a"
    both["a"]["criteria"] = S.criteria(_candidate(restricted=0.1), REFERENCE)
    assert S.choose(both) is None
