"""The findings are generated from the numbers (``lib.run.findings``): the README's equal what
the generator writes from ``results/``; the generator runs on constructed summaries."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.run import findings
from lib.stages.damped_study import NOT_READ

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_findings_are_generated_from_results():
    readme = (ROOT / "README.md").read_text()
    assert findings.readme_block(readme) == findings.published(ROOT / "results"), (
        "the README's findings differ from results/: paste `python -m lib.cli report --findings` "
        "into it")


def by_source(values: dict[str, dict[str, list]], seeds) -> dict:
    return {source: {"seeds": seeds, "metrics": {m: {"values": v, "space": "d_P"}
                                                  for m, v in metrics.items()}}
            for source, metrics in values.items()}


def constructed(gap_ppa, p_ppa, gap_controls, seeds=(0, 1, 2)) -> dict:
    n = len(seeds)
    attack = {"gap_DR_d_P": gap_ppa, "gap_p_d_P": [p_ppa] * n, "shift_d_P": gap_ppa,
              "shift_p_d_P": [p_ppa] * n, "shift_flip_p_d_P": [p_ppa] * n}
    control = {"gap_DR_d_P": [gap_controls] * n}
    return {"claims": [], "detection_limit": None, "profile": "cpu", "run": "r",
            "git_commit": "c" * 40,
            "notebooks": [{"name": "06_evaluation", "commit": "c" * 40, "seconds": 60.0,
                           "reexecutions": []}],
            "metrics": {"06_evaluation": {"by_source": by_source(
                {"ppa/vanilla": attack, "real_test": control}, list(seeds))}}}


def c1b_line(summary) -> str:
    return next(f for f in findings.findings(summary) if f.startswith("**C1b"))


def test_a_rejected_gap_is_stated_as_detected():
    line = c1b_line(constructed([0.05, 0.06, 0.055], 0.001, -0.01))
    assert "detected in 1 of 1" in line and "detected: ppa/vanilla +0.055 [" in line


def test_an_opposite_gap_whose_controls_share_its_sign_is_not_detected():
    line = c1b_line(constructed([-0.05, -0.06, -0.055], 0.99, -0.01))
    assert "not detected: ppa/vanilla -0.055 [" in line and "†" in line
    assert "opposite direction:" not in line
    clean = c1b_line(constructed([-0.05, -0.06, -0.055], 0.99, +0.01))
    assert "opposite direction: ppa/vanilla -0.055" in clean


def test_a_null_is_not_detected_with_its_interval():
    line = c1b_line(constructed([-0.05, 0.06, 0.0], 0.5, 0.01))
    assert "detected in 0 of 1" in line and "not detected: ppa/vanilla" in line


def test_one_seed_and_no_studies_still_gives_findings():
    out = findings.findings(constructed([-0.02], 0.6, -0.01, seeds=(0,)))
    assert any("(n = 1)" in f for f in out)


def test_every_summary_under_results_gets_its_own_block(tmp_path):
    (tmp_path / "shifted").mkdir()
    main = constructed([0.05, 0.06, 0.055], 0.001, -0.01)
    (tmp_path / "summary.json").write_text(json.dumps(main))
    (tmp_path / "shifted" / "summary.json").write_text(json.dumps(main))
    text = findings.published(tmp_path)
    assert text.count("**C1b") == 2 and "*shifted/*:" in text
    assert text.index("*shifted/*:") > text.index("**C1b")     # the main folder first


def test_a_readme_without_markers_is_an_error():
    with pytest.raises(ValueError, match="markers"):
        findings.readme_block("no markers here")


def test_the_provenance_line_gives_the_first_executions_time_and_the_reexecutions():
    summary = constructed([0.05, 0.06, 0.055], 0.001, -0.01)
    assert "1.0 minutes of notebooks, the sum of each notebook's first complete" in \
        findings.provenance_line(summary)
    summary["notebooks"][0]["reexecutions"] = [{"commit": "d" * 40, "seconds": 5.0, "status": "ok"}]
    summary["git_commit"] = "d" * 40
    line = findings.provenance_line(summary)
    assert "1.0 minutes" in line and "re-executed later by a resume: 06_evaluation, the last at `ddddddd`" in line


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text()) <= 15000


def test_a_committed_study_the_run_does_not_read_is_labelled_so():
    """C2d's bullet comes from the committed study; when the run's C2d says the study was made
    under another config, the bullet says so first (never reads as this run's verdict)."""
    study = json.loads((ROOT / "results" / "ngd_damped_study.json").read_text())
    summary = constructed([0.05, 0.06, 0.055], 0.001, -0.01)
    applies = next(f for f in findings.findings(summary, {"ngd_damped_study.json": study})
                   if f.startswith("**C2d"))
    assert applies.startswith("**C2d** (`entropy+ngd-damped` − `vanilla`")
    summary["claims"] = [{"id": "C2d", "passed": None, "status": f"{NOT_READ}the committed "
                          "study was made under another transfer or attack config"}]
    stale = next(f for f in findings.findings(summary, {"ngd_damped_study.json": study})
                 if f.startswith("**C2d"))
    assert stale.startswith("**C2d** (not read by this run: the committed study was made under "
                            f"another transfer or attack config, at commit `{study['git_commit'][:7]}`;")
    assert stale.split("): ", 1)[1] == applies.split("): ", 1)[1]      # the same numbers
