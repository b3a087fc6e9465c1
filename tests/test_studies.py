"""The committed studies' logic on constructed inputs: the memorisation regime's split and its
reading in words, and how a committed study's claim is labelled where it does not apply."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lib import paths
from lib.config import resolve
from lib.data.split import Split
from lib.stages import damped_study, regimes


def test_regime_split_draws_subsets_of_d_and_r_and_keeps_the_rest():
    labels = np.repeat([0, 2, 3], 40)
    d = np.r_[0:10, 40:50, 80:90]
    r = np.r_[10:20, 50:60, 90:100]
    split = Split("same-class", 0, (0, 2, 3), 10, d, r, np.r_[20:40], np.r_[20:40], np.arange(5))
    small = regimes.regime_split(split, labels, 4, seed=1)
    assert small.per_class == 4 and len(small.private) == len(small.reference) == 12
    assert np.isin(small.private, d).all() and np.isin(small.reference, r).all()
    assert (np.bincount(labels[small.private], minlength=4)[[0, 2, 3]] == 4).all()
    assert np.array_equal(small.public, split.public) and np.array_equal(small.test, split.test)
    assert np.array_equal(regimes.regime_split(split, labels, 4, seed=1).private, small.private)
    with pytest.raises(ValueError, match="needs 11"):
        regimes.regime_split(split, labels, 11, seed=1)


def _regime(per_class, c1c_p, limit):
    def table(p, value):
        return [{"source": "ppa/vanilla", "value": value, "low": value - 0.02,
                 "high": value + 0.02, "p": p, "p_holm": p, "significant": p < 0.05}]
    return {"per_class": per_class, "target": {"epochs": 100, "train_acc": 1.0, "test_acc": 0.7,
                                              "gap": 0.3},
            "C1b_table": table(0.5, -0.01), "C1c_table": table(c1c_p, 0.05),
            "detection_limit": {"C1b": {"blend α=0.5": limit}, "C1c": {"blend α=0.5": None}}}


def test_the_reading_follows_the_numbers_under_the_wording_rules():
    leaky = regimes.reading({"regimes": [_regime(10, 0.01, 0.1), _regime(20, 0.5, 0.1)]})
    assert "10/class C1c ppa/vanilla detected, +0.05 [+0.03, +0.07]" in leaky[0]
    assert "Holm p 0.01 in the regime, 0.04 over all 4" in leaky[0]
    assert "10/class C1b ppa/vanilla not detected (-0.01 [-0.03, +0.01])" in leaky[0]
    assert "blend α=0.5 from f = 0.1" in leaky[0]
    assert "Detected within its regime: 10/class C1c ppa/vanilla" in leaky[-1]
    assert "1 of them stay below 0.05" in leaky[-1]
    weak = regimes.reading({"regimes": [_regime(10, 0.03, 0.1), _regime(20, 0.03, 0.1)]})
    assert "0 of them stay below 0.05" in weak[-1]        # 0.03 × 4 tests, Holm: 0.09+
    blind = regimes.reading({"regimes": [_regime(10, 0.5, None)]})
    assert "no leak of any kind" in blind[0] and "None of the study's 2 tests" in blind[-1]


def test_c2d_is_not_run_where_its_committed_study_does_not_apply(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results_dir", lambda: tmp_path)
    missing = damped_study.committed_claim(resolve("cpu"))
    assert missing["passed"] is None and "make ngd-damped" in missing["status"]
    cfg = resolve("cpu")
    study = {"profile": "cpu", "git_commit": "abcdef1234567", "date": "2026-11-29T00:00:00",
             "run_dir": "runs/x", "claim": {"id": "C2d", "claim": "c", "criterion": "k",
                                            "measured": "m", "passed": False, "details": "d"},
             "config": {"transfer": damped_study.transfer_config(cfg),
                        "attack": damped_study.attack_config(cfg, "ppa")}}
    (tmp_path / "ngd_damped_study.json").write_text(json.dumps(study))
    applies = damped_study.committed_claim(cfg)
    assert applies["passed"] is False and "abcdef1234" in applies["details"]
    other = damped_study.committed_claim(resolve("smoke"))
    assert other["passed"] is None and "cpu profile" in other["status"]
    assert "measured: m" in other["details"]


def test_the_memorisation_study_runs_end_to_end_at_smoke_size(tmp_path, monkeypatch):
    """The whole study on a tiny run: a regime of 4 per class, its target, attacks, doses."""
    from lib.artifacts import atomic_write_json
    from lib.metrics.leaks import BLEND_ALPHAS, LEAK_FRACTIONS
    from lib.run import context

    tiny = {"target_epochs": 2, "perc_train_limit": 500, "gan_steps": 20, "gan_train_limit": 500,
            "transfer_steps": 4, "monitor_every": 2, "monitor_samples": 32, "ngd_rank": 2,
            "ngd_codes": 2, "attack_steps": 2, "attack_pool": 100, "reach_per_class": 2,
            "projection_steps": 2}
    monkeypatch.setattr(regimes, "REGIME_SIZES", (4,))
    ctx = context.setup("smoke", str(tmp_path / "run"), 0, "cpu", tiny, notebook="test",
                        show_config=False)
    study = regimes.run_study(ctx)
    (regime,) = study["regimes"]
    assert regime["per_class"] == 4 and regime["target"]["reached_1"]
    assert set(regime["detection_limit"]) == {"C1b", "C1c"}
    kinds = {(d["kind"], d["fraction"]) for d in regime["doses"]}
    assert len(kinds) == len(LEAK_FRACTIONS) * (len(BLEND_ALPHAS) + 1)
    atomic_write_json(tmp_path / "regimes.json", study)      # what make regimes commits
    assert regimes.reading(study)
