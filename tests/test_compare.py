"""``python -m lib.cli compare``: constructed folders, run in-process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib import cli
from lib.run import compare

SUMMARY = {"schema_version": 3, "run": "r1", "git_commit": "abc", "started": "t0",
           "finished": "t1", "profile": "cpu",
           "notebooks": [{"name": "01_data", "status": "ok", "seconds": 9.1, "error": None}],
           "claims": [{"id": "C0", "measured": "T 0.89", "passed": True}],
           "attacks": [{"attack": "ppa", "mode": "vanilla",
                        "metrics": {"ddcs_best_d_P": {"mean": 0.174, "values": [0.1, 0.2, 0.222],
                                                      "space": "d_P"}}}],
           "metrics": {"02_classifiers": {"acc": 0.9}, "timings": {"x": 3.0}}}


def make_folder(root: Path, name: str, summary: dict = SUMMARY, run: bool = False) -> Path:
    folder = root / name
    (folder / "audit").mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "regimes.json").write_text(json.dumps({"seconds": 12, "C1b": {"p": 0.5}}))
    (folder / "audit" / "ppa-vanilla_seed0.csv").write_text("dataset_index,ddcs\n1,0.5\n2,0.25\n")
    if run:
        (folder / "models").mkdir()
        (folder / "models" / "t.safetensors").write_bytes(b"weights")
        (folder / "manifest.json").write_text(json.dumps({
            "models/t.safetensors": {"sha256": "aa", "written": "t"},
            "notebooks/01_data.ipynb": {"sha256": "n1"}}))
    return folder


def run_cli(*args: str, capsys) -> tuple[int, list[str]]:
    code = cli.main(["compare", *args])
    return code, capsys.readouterr().out.strip().splitlines()


def test_identical_folders_exit_0(tmp_path, capsys):
    a, b = make_folder(tmp_path, "a", run=True), make_folder(tmp_path, "b", run=True)
    code, lines = run_cli(str(a), str(b), capsys=capsys)
    assert code == 0 and lines[-1].startswith("0 differences")


def test_provenance_and_timing_are_ignored(tmp_path, capsys):
    other = json.loads(json.dumps(SUMMARY))
    other.update(run="r2", git_commit="def", started="s", finished="f")
    other["notebooks"][0]["seconds"] = 99.0
    other["metrics"]["timings"] = {"x": 1.0, "y": 2.0}
    a, b = make_folder(tmp_path, "a"), make_folder(tmp_path, "b", other)
    (b / "regimes.json").write_text(json.dumps({"seconds": 40, "C1b": {"p": 0.5}}))
    assert run_cli(str(a), str(b), capsys=capsys)[0] == 0


def test_a_changed_number_is_a_difference_beyond_rtol(tmp_path, capsys):
    other = json.loads(json.dumps(SUMMARY))
    other["attacks"][0]["metrics"]["ddcs_best_d_P"]["values"][2] = 0.222 * (1 + 1e-5)
    a, b = make_folder(tmp_path, "a"), make_folder(tmp_path, "b", other)
    code, lines = run_cli(str(a), str(b), "--rtol", "1e-6", capsys=capsys)
    assert code == 1
    assert lines[0].startswith("summary.json.attacks[ppa/vanilla].metrics.ddcs_best_d_P.values[2]:")
    assert lines[-1].startswith("1 difference ")
    assert run_cli(str(a), str(b), "--rtol", "1e-4", capsys=capsys)[0] == 0


def test_a_changed_claim_and_a_changed_audit_cell(tmp_path, capsys):
    other = json.loads(json.dumps(SUMMARY))
    other["claims"][0]["passed"] = False
    a, b = make_folder(tmp_path, "a"), make_folder(tmp_path, "b", other)
    (b / "audit" / "ppa-vanilla_seed0.csv").write_text("dataset_index,ddcs\n1,0.5\n2,0.3\n")
    code, lines = run_cli(str(a), str(b), capsys=capsys)
    assert code == 1
    assert "summary.json.claims[C0].passed: A=true B=false" in lines
    assert "audit/ppa-vanilla_seed0.csv[1].ddcs: A=0.25 B=0.3" in lines


def test_a_key_on_one_side_only_is_a_difference(tmp_path, capsys):
    other = json.loads(json.dumps(SUMMARY))
    del other["metrics"]["02_classifiers"]["acc"]
    a, b = make_folder(tmp_path, "a"), make_folder(tmp_path, "b", other)
    (a / "audit" / "gmi-vanilla_seed0.csv").write_text("dataset_index\n1\n")
    code, lines = run_cli(str(a), str(b), capsys=capsys)
    assert code == 1
    assert "summary.json.metrics.02_classifiers.acc: A=0.9 B=<absent>" in lines
    assert "audit/gmi-vanilla_seed0.csv: A='present' B=<absent>" in lines


def test_manifest_sha256_compared_where_both_have_it(tmp_path, capsys):
    a, b = make_folder(tmp_path, "a", run=True), make_folder(tmp_path, "b", run=True)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["notebooks/01_data.ipynb"]["sha256"] = "n2"        # executed notebooks: ignored
    manifest["models/extra.safetensors"] = {"sha256": "cc"}     # on one side only: ignored
    (b / "manifest.json").write_text(json.dumps(manifest))
    assert run_cli(str(a), str(b), capsys=capsys)[0] == 0
    manifest["models/t.safetensors"]["sha256"] = "bb"
    (b / "manifest.json").write_text(json.dumps(manifest))
    code, lines = run_cli(str(a), str(b), capsys=capsys)
    assert code == 1 and "models/t.safetensors sha256: A='aa' B='bb'" in lines


def test_a_run_folder_against_a_results_folder(tmp_path, capsys):
    a, b = make_folder(tmp_path, "run", run=True), make_folder(tmp_path, "results")
    assert compare.folder_kind(a) == "run" and compare.folder_kind(b) == "results"
    assert run_cli(str(a), str(b), capsys=capsys)[0] == 0


def test_a_bogus_folder_exits_2(tmp_path, capsys):
    a = make_folder(tmp_path, "a")
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", str(a), str(tmp_path / "empty")]) == 2
    assert "neither a finished run folder nor a results folder" in capsys.readouterr().err
    assert cli.main(["compare", str(a), str(tmp_path / "missing")]) == 2
    shutil.copy(a / "summary.json", tmp_path / "file.json")
    assert cli.main(["compare", str(tmp_path / "file.json"), str(a)]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    assert cli.main(["compare", str(a), str(tmp_path / "bad")]) == 2
    assert cli.main(["compare", str(a), str(a), "--rtol", "-1"]) == 2


@pytest.mark.parametrize("a,b,rtol,same", [(1.0, 1.0 + 1e-7, 1e-6, True), (1.0, 1.1, 1e-6, False),
                                            (0.0, 0.0, 0.0, True), (0.0, 1e-300, 1e-6, False),
                                            (float("nan"), float("nan"), 0.0, True),
                                            (float("inf"), float("inf"), 0.0, True),
                                            (1.0, float("nan"), 1.0, False)])
def test_numbers_match(a, b, rtol, same):
    assert compare.numbers_match(a, b, rtol) is same
