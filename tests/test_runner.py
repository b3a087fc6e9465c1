"""The runner with papermill mocked: order, keep-going, resume, summaries, kernel check."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from lib.errors import RunnerError
from lib.run import runner, summary as run_summary

SUMMARY_KEYS = {"schema_version", "run", "profile", "overrides", "seed", "git_commit",
                "started", "finished", "notebooks", "claims", "detection_limit", "attacks",
                "metrics"}


class FakeExecutor:
    """Writes the output notebook like papermill; fails on the names in ``fail``."""

    def __init__(self, fail=()):
        self.fail, self.calls, self.env = set(fail), [], []

    def __call__(self, input_path, output_path, parameters, cwd, timeout):
        name = input_path.stem
        self.calls.append((name, parameters, timeout))
        self.env.append(os.environ.get("PYTHONHASHSEED"))
        output_path.write_text(json.dumps({"cells": [], "metadata": {}}))
        if parameters and name == "02_classifiers":  # a notebook recording a claim
            run_dir = parameters["RUN_DIR"]
            from lib import artifacts
            artifacts.save_json(os.path.join(run_dir, "metrics", "claims.json"),
                                {"C0": {"id": "C0", "claim": "sound", "criterion": "x",
                                        "measured": "T 0.9", "passed": True,
                                        "notebook": name, "profile": "smoke"}}, run_dir,
                                producer=name)
        if parameters and name == "06_evaluation":  # per-source metrics, as notebook 06 records
            run_dir = parameters["RUN_DIR"]
            from lib import artifacts
            metric = {"values": [0.2, 0.4], "space": "d_P"}
            artifacts.save_json(os.path.join(run_dir, "metrics", "06_evaluation.json"),
                                {"by_source": {"ppa/vanilla": {"seeds": [0, 1],
                                                               "metrics": {"ddcs_best_d_P": metric}},
                                               "real_test": {"seeds": [0, 1],
                                                             "metrics": {"ddcs_best_d_P": metric}}}},
                                run_dir, producer=name)
        if name in self.fail:
            raise RuntimeError(f"{name} exploded")


def run(**kw):
    kw.setdefault("kernel_check", False)
    kw.setdefault("log", lambda s: None)
    return runner.run(**kw)


def test_runs_all_in_order_and_writes_a_summary(tmp_runs):
    ex = FakeExecutor()
    code, run_dir = run(profile="smoke", executor=ex)
    assert code == 0 and run_dir.parent == tmp_runs
    assert [c[0] for c in ex.calls] == runner.NOTEBOOKS
    assert ex.calls[0][1] == {"PROFILE": "smoke", "RUN_DIR": str(run_dir), "SEED": 0,
                              "DEVICE": "auto", "OVERRIDES": {}}
    assert ex.calls[0][2] is None and set(ex.env) == {"0"}     # no cell time limit by default
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert [n["status"] for n in summary["notebooks"]] == ["ok"] * len(runner.NOTEBOOKS)
    assert summary["claims"][0]["id"] == "C0"
    assert "| C0 |" in (run_dir / "summary.md").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert f"notebooks/{runner.NOTEBOOKS[0]}.ipynb" in manifest
    assert json.loads((run_dir / "env.json").read_text())["packages"]["torch"]


def test_keeps_going_past_a_failure_and_exits_non_zero(tmp_runs):
    ex = FakeExecutor(fail={"01_data"})
    code, run_dir = run(profile="smoke", executor=ex)
    assert code == 1
    assert [c[0] for c in ex.calls] == runner.NOTEBOOKS  # the later ones still ran
    summary = json.loads((run_dir / "summary.json").read_text())
    failed = [n for n in summary["notebooks"] if n["status"] == "failed"]
    assert [n["name"] for n in failed] == ["01_data"] and "exploded" in failed[0]["error"]


def test_resume_skips_unchanged_successes_only(tmp_runs):
    code, run_dir = run(profile="smoke", executor=FakeExecutor(fail={"01_data"}))
    ex = FakeExecutor()
    code, again = run(profile="smoke", executor=ex, resume=run_dir)
    assert code == 0 and again == run_dir
    assert [c[0] for c in ex.calls] == ["01_data"]
    ex2 = FakeExecutor()
    run(profile="smoke", executor=ex2, resume=run_dir, seed=0)
    assert ex2.calls == []


def test_resume_refuses_another_profile_or_folder(tmp_runs, tmp_path):
    _, run_dir = run(profile="smoke", executor=FakeExecutor())
    with pytest.raises(RunnerError, match="started with profile 'smoke'"):
        run(profile="cpu", executor=FakeExecutor(), resume=run_dir)
    with pytest.raises(RunnerError, match="not a run folder"):
        run(profile="smoke", executor=FakeExecutor(), resume=tmp_path)


def test_resume_compares_seed_and_device_but_not_the_time_limit(tmp_runs):
    _, run_dir = run(profile="smoke", executor=FakeExecutor())
    with pytest.raises(RunnerError, match=r"seed 0 \(asked: 7\)"):
        run(profile="smoke", seed=7, executor=FakeExecutor(), resume=run_dir,
            notebooks=["02_classifiers"])
    with pytest.raises(RunnerError, match="device 'auto' \\(asked: 'cpu'\\)"):
        run(profile="smoke", device="cpu", executor=FakeExecutor(), resume=run_dir)
    ex = FakeExecutor()                  # a longer limit is not another configuration
    code, _ = run(profile="smoke", overrides={"cell_timeout_s": 7200}, executor=ex,
                  resume=run_dir)
    assert code == 0 and ex.calls == []
    ex = FakeExecutor()
    _, run_dir = run(profile="smoke", overrides={"cell_timeout_s": 60}, executor=ex,
                     notebooks=["00_overview"])
    state = json.loads((run_dir / runner.STATE).read_text())
    assert ex.calls[0][2] == 60 and ex.calls[0][1]["OVERRIDES"] == {}
    assert state["overrides"] == {} and state["settings"] == {"cell_timeout_s": 60}


def test_cli_resume_takes_the_runs_seed_and_refuses_another(tmp_runs, monkeypatch, capsys):
    _, run_dir = run(profile="smoke", seed=3, executor=FakeExecutor())
    calls = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: calls.append(a) or (0, run_dir))
    assert runner.main(["--resume", str(run_dir), "--only", "02_classifiers"]) == 0
    assert calls[-1][2:4] == (3, "auto")             # the run's own seed and device
    monkeypatch.undo()
    monkeypatch.setenv("DDCS_MI_RUNS", str(tmp_runs))
    assert runner.main(["--resume", str(run_dir), "--seed", "7", "--only", "02_classifiers"]) == 2
    assert "seed 3 (asked: 7)" in capsys.readouterr().err


def test_resume_verifies_every_artefact_and_overwrites_nothing(tmp_runs):
    from lib.errors import ArtifactError

    _, run_dir = run(profile="smoke", executor=FakeExecutor())
    claims = run_dir / "metrics" / "claims.json"     # registered, read by no re-run notebook
    flipped = bytearray(claims.read_bytes())
    flipped[5] ^= 0x01
    claims.write_bytes(bytes(flipped))
    ex = FakeExecutor()
    with pytest.raises(ArtifactError, match="metrics/claims.json .*modified"):
        run(profile="smoke", executor=ex, resume=run_dir)
    assert ex.calls == [] and claims.read_bytes() == bytes(flipped)
    with pytest.raises(ArtifactError, match="metrics/claims.json"):
        runner.publish(run_dir, dest=tmp_runs / "published")
    assert not (tmp_runs / "published").exists()


def test_resume_sets_aside_unregistered_files_and_rebuilds_missing_ones(tmp_runs):
    _, run_dir = run(profile="smoke", executor=FakeExecutor())
    cut = run_dir / "models" / ".target.safetensors.x1y2.safetensors"   # a write cut in flight
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(b"half")
    partial = run_dir / "models" / "gan_prior.partial.safetensors"     # a stage's partial state
    partial.write_bytes(b"kept")
    (run_dir / "metrics" / "06_evaluation.json").unlink()              # deleted to be rebuilt
    logs, ex = [], FakeExecutor()
    code, _ = run(profile="smoke", executor=ex, resume=run_dir, log=logs.append)
    assert code == 0 and [c[0] for c in ex.calls] == ["06_evaluation"]
    assert not cut.exists() and partial.read_bytes() == b"kept"
    aside = list((run_dir / "set-aside").rglob(cut.name))
    assert len(aside) == 1 and aside[0].read_bytes() == b"half"
    assert any("set aside 1 file" in line for line in logs)
    assert (run_dir / "metrics" / "06_evaluation.json").is_file()


def test_a_run_killed_in_its_first_notebook_resumes(tmp_runs):
    class Killed(FakeExecutor):
        def __call__(self, input_path, output_path, parameters, cwd, timeout):
            output_path.write_text("{\"cells\": [")              # papermill's half-written output
            raise KeyboardInterrupt                              # like kill: not caught

    with pytest.raises(KeyboardInterrupt):
        run(profile="smoke", executor=Killed())
    (run_dir,) = tmp_runs.iterdir()
    ex = FakeExecutor()
    code, _ = run(profile="smoke", executor=ex, resume=run_dir)
    assert code == 0 and [c[0] for c in ex.calls] == runner.NOTEBOOKS


def test_fingerprint_changes_with_parameters_and_code(tmp_path):
    nb = runner.notebook_path("00_overview")
    a = runner.fingerprint(nb, {"PROFILE": "smoke"})
    assert a == runner.fingerprint(nb, {"PROFILE": "smoke"})
    assert a != runner.fingerprint(nb, {"PROFILE": "cpu"})
    assert a != runner.fingerprint(runner.notebook_path("01_data"), {"PROFILE": "smoke"})


def test_fingerprint_changes_when_a_committed_study_it_reads_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.paths, "results_dir", lambda: tmp_path)
    reader, other = runner.notebook_path("08_memorisation"), runner.notebook_path("02_classifiers")
    before = runner.fingerprint(reader, {}), runner.fingerprint(other, {})
    (tmp_path / "regimes.json").write_text('{"regimes": []}')
    after = runner.fingerprint(reader, {}), runner.fingerprint(other, {})
    assert before[0] != after[0] and before[1] == after[1]
    (tmp_path / "regimes.json").write_text('{"regimes": [1]}')
    assert runner.fingerprint(reader, {}) != after[0]


def test_never_reuses_a_run_folder(tmp_runs):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    a, b = runner.new_run_dir("cpu", now), runner.new_run_dir("cpu", now)
    assert a != b and a.is_dir() and b.is_dir()
    assert a.name.startswith("20260101T000000Z_cpu_")


def test_bad_arguments_fail_before_any_folder_is_made(tmp_runs):
    with pytest.raises(ValueError, match="unknown profile"):
        run(profile="laptop", executor=FakeExecutor())
    with pytest.raises(ValueError, match="unknown override key"):
        run(profile="smoke", overrides={"nope": 1}, executor=FakeExecutor())
    with pytest.raises(RunnerError, match="unknown notebook"):
        run(profile="smoke", notebooks=["42_magic"], executor=FakeExecutor())
    with pytest.raises(ValueError, match="unknown device 'banana'"):
        run(profile="smoke", device="banana", executor=FakeExecutor())
    assert not tmp_runs.exists() or not any(tmp_runs.iterdir())


@pytest.mark.parametrize("override", ["private_per_class=-5", "seeds=[]", "image_size=-8",
                                      "batch_size=0", "private_classes=[0,99]", "split=bogus"])
def test_values_outside_their_domain_exit_2_and_create_nothing(tmp_runs, capsys, override):
    from lib import paths

    splits = sorted(paths.splits_dir().iterdir()) if paths.splits_dir().is_dir() else []
    assert runner.main(["--profile", "smoke", "-o", override, "--only", "01_data"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and override.split("=")[0] in err and "must be" in err
    assert not tmp_runs.exists() or not any(tmp_runs.iterdir())
    assert (sorted(paths.splits_dir().iterdir()) if paths.splits_dir().is_dir() else []) == splits


def test_an_unknown_device_exits_2(tmp_runs, capsys):
    assert runner.main(["--profile", "smoke", "--device", "banana"]) == 2
    assert "unknown device 'banana'; valid: auto, cpu, cuda" in capsys.readouterr().err
    assert not tmp_runs.exists() or not any(tmp_runs.iterdir())


def test_cli_reports_bad_input_with_exit_code_2(tmp_runs, capsys):
    assert runner.main(["--profile", "laptop"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert runner.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == runner.NOTEBOOKS


def test_override_parsing():
    assert runner.parse_override("target_epochs=3") == ("target_epochs", 3)
    assert runner.parse_override("split=class-disjoint") == ("split", "class-disjoint")
    assert runner.parse_override("seeds=[1,2]") == ("seeds", [1, 2])


def test_kernel_check(monkeypatch):
    from jupyter_client import kernelspec

    class Spec:
        argv = ["/somewhere/else/python", "-m", "ipykernel_launcher"]

    monkeypatch.setattr(kernelspec.KernelSpecManager, "get_kernel_spec", lambda self, n: Spec)
    with pytest.raises(RunnerError, match="not this environment"):
        runner.check_kernel()

    def missing(self, name):
        raise kernelspec.NoSuchKernel(name)

    monkeypatch.setattr(kernelspec.KernelSpecManager, "get_kernel_spec", missing)
    with pytest.raises(RunnerError, match="ipykernel install"):
        runner.check_kernel()


@pytest.fixture
def golden_folder(tmp_path, monkeypatch):
    """Two empty notebooks standing in for the repository's, on a clean tree."""
    folder = tmp_path / "nbs"
    folder.mkdir()
    for name in ("00_overview", "01_data"):
        (folder / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    monkeypatch.setattr(runner, "notebook_path", lambda n: folder / f"{n}.ipynb")
    monkeypatch.setattr(runner, "git_dirty_files", lambda: [])
    return folder


def test_golden_cleans_in_place_and_keeps_notebook_on_failure(tmp_runs, golden_folder,
                                                              monkeypatch):
    folder = golden_folder
    monkeypatch.setattr(runner, "git_commit", lambda short=True: "c0ffee" * 6 + "c0ff")
    shared = tmp_runs / "interactive" / "smoke"
    shared.mkdir(parents=True)

    def executor(input_path, output_path, parameters, cwd, timeout):
        assert parameters is None  # no injected-parameters cell
        if input_path.stem == "01_data":
            raise RuntimeError("broken")
        output_path.write_text(json.dumps({
            "metadata": {"papermill": {"duration": 1}},
            "cells": [{"cell_type": "code", "metadata": {"papermill": {}, "execution": {},
                                                        "tags": []}, "source": ["print(1)"],
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": ["x"]}]}]}))

    code = runner.golden(["00_overview", "01_data"], executor, kernel_check=False,
                         log=lambda s: None)
    assert code == 1
    cleaned = json.loads((folder / "00_overview.ipynb").read_text())
    assert cleaned["metadata"] == {"ddcs_mi": {"golden_commit": "c0ffee" * 6 + "c0ff"}}
    banner, cell = cleaned["cells"]
    assert banner["metadata"]["tags"] == ["banner"] and "plumbing" in "".join(banner["source"])
    assert "results/notebooks/00_overview.ipynb" in "".join(banner["source"])
    assert cell["metadata"] == {}
    assert json.loads((folder / "01_data.ipynb").read_text()) == {"cells": [], "metadata": {}}
    assert not shared.exists() and any(p.name.startswith("smoke.replaced-")
                                       for p in shared.parent.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["00_overview.ipynb", "01_data.ipynb"]


def test_golden_refuses_a_dirty_tree(monkeypatch):
    monkeypatch.setattr(runner, "git_dirty_files", lambda: ["lib/ngd.py"])
    with pytest.raises(RunnerError, match="clean tree.*lib/ngd.py"):
        runner.golden(["00_overview"], executor=None, kernel_check=False, log=lambda s: None)


def test_golden_refuses_while_the_shared_folders_are_held(tmp_runs, golden_folder):
    """A second batch (make golden, nbval) refuses at its start, naming the one running, and
    touches nothing; once the first is done the lock is free again."""
    from lib.run.context import interactive_lock

    shared = tmp_runs / "interactive" / "smoke"
    shared.mkdir(parents=True)
    (shared / "prior.safetensors").write_text("kept")
    ran = []
    with interactive_lock("an nbval session"):
        with pytest.raises(RunnerError, match=r"an nbval session \(pid \d+\) is using .*interactive \(the notebooks' shared"):
            runner.golden(["00_overview"], lambda *a: ran.append(a), kernel_check=False,
                          log=lambda s: None)
    assert ran == [] and (shared / "prior.safetensors").read_text() == "kept"
    with interactive_lock("make golden"):
        pass


def test_summary_carries_the_attacks_and_validates(tmp_runs):
    code, run_dir = run(profile="smoke", executor=FakeExecutor())
    summary = json.loads((run_dir / "summary.json").read_text())
    run_summary.validate_summary(summary)
    assert summary["attacks"] == [{"attack": "ppa", "mode": "vanilla", "seeds": [0, 1],
                                   "metrics": {"ddcs_best_d_P": {"mean": pytest.approx(0.3),
                                                                 "values": [0.2, 0.4],
                                                                 "space": "d_P"}}}]
    assert summary["claims"][0]["paper_says"]
    broken = {k: v for k, v in summary.items() if k != "attacks"}
    with pytest.raises(ValueError, match="lacks \\['attacks'\\]"):
        run_summary.validate_summary(broken)
    silent = {**summary, "claims": [{**summary["claims"][0], "passed": None, "status": ""}]}
    with pytest.raises(ValueError, match="not measured but says not why"):
        run_summary.validate_summary(silent)
    assert run_summary.verdict({**summary["claims"][0], "passed": None, "status": "x"}) == "not run"
    with pytest.raises(ValueError, match="not a dose"):
        run_summary.validate_summary({**summary, "detection_limit": {"C1b": {"blend": 2.0}}})


def test_publish_copies_a_complete_run_only(tmp_runs, tmp_path):
    from lib import artifacts

    code, run_dir = run(profile="smoke", executor=FakeExecutor())
    figure = run_dir / "figures" / "99_headline.png"
    figure.parent.mkdir(exist_ok=True)
    figure.write_bytes(b"png")
    artifacts.register(run_dir, figure)
    table = run_dir / "audit" / "ppa-vanilla_seed0.csv"
    table.parent.mkdir()
    table.write_text(f"dataset_index,class\n1,0\n# {run_dir}/x\n")
    artifacts.register(run_dir, table, producer="06_evaluation")
    stale = tmp_path / "results" / "notebooks" / "old.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    dest = runner.publish(run_dir, tmp_path / "results", log=lambda s: None)
    assert sorted(p.name for p in dest.iterdir()) == ["99_headline.png", "audit", "notebooks",
                                                      "summary.json", "summary.md"]
    published = sorted(p.stem for p in (dest / "notebooks").iterdir())
    assert published == sorted(runner.NOTEBOOKS)              # the stale one is gone
    nb = json.loads((dest / "notebooks" / "05_attacks.ipynb").read_text())
    assert "Published results" in "".join(nb["cells"][0]["source"]) and run_dir.name in \
        "".join(nb["cells"][0]["source"])
    assert str(tmp_path) not in (dest / "notebooks" / "05_attacks.ipynb").read_text()
    assert sorted(p.name for p in (dest / "audit").iterdir()) == ["README.md", table.name]
    assert f"| `{table.name}` | ppa-vanilla | 0 | 06_evaluation |" in (dest / "audit" / "README.md").read_text()
    table.write_text("tampered")
    with pytest.raises(Exception, match="sha256|modified"):
        runner.publish(run_dir, tmp_path / "again", log=lambda s: None)
    _, partial = run(profile="smoke", executor=FakeExecutor(), notebooks=["00_overview"])
    with pytest.raises(RunnerError, match="not a complete"):
        runner.publish(partial, tmp_path / "elsewhere", log=lambda s: None)


def test_committed_results_follow_the_schema_the_runner_writes():
    """results/summary.json (published from a full cpu run) has the runner's structure."""
    from lib.paths import repo_root

    summary = json.loads((repo_root() / "results" / "summary.json").read_text())
    run_summary.validate_summary(summary)
    assert set(summary) == run_summary.SUMMARY_KEYS
    assert [n["name"] for n in summary["notebooks"]] == runner.NOTEBOOKS
    from lib.paper import CLAIM_IDS

    ids = [c["id"] for c in summary["claims"]]
    assert ids == [c for c in CLAIM_IDS if c in ids]          # in the claims table's order
    # results/ may predate the claims the five-seed protocol added (docs/protocol.md); no other
    # claim may be missing
    assert set(CLAIM_IDS) - set(ids) <= {"C0b"}
    assert summary["profile"] == "cpu"


def test_cli_resume_continues_with_the_runs_own_profile(tmp_runs, monkeypatch):
    _, run_dir = run(profile="smoke", executor=FakeExecutor(fail={"03_gan_prior"}),
                     overrides={"target_epochs": 2})
    seen = {}

    def fake_run(profile, overrides, seed, device, resume, only, started_kernels=()):
        seen.update(profile=profile, overrides=overrides, resume=resume)
        return 0, run_dir

    monkeypatch.setattr(runner, "run", fake_run)
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert seen == {"profile": "smoke", "overrides": {"target_epochs": 2}, "resume": str(run_dir)}
    assert runner.main(["--resume", str(run_dir.parent / "nope")]) == 2


def test_every_command_line_job_runs_with_the_pinned_cpu_kernels():
    """The sweep and the studies compute as the notebooks do, even from a bare shell."""
    import subprocess
    import sys

    from lib import paths

    env = {k: v for k, v in os.environ.items() if k not in paths.CPU_KERNELS}
    code = ("import lib.cli, os, torch; print(torch.backends.cpu.get_cpu_capability(), "
            "os.environ['OPENBLAS_CORETYPE'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=paths.repo_root(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["AVX2", paths.CPU_KERNELS["OPENBLAS_CORETYPE"]]


def test_golden_writes_the_notebooks_only_after_executing_them_all(tmp_runs, golden_folder):
    """Every golden's provenance cell sees the clean tree of its commit."""
    folder = golden_folder
    seen = []

    def executor(input_path, output_path, parameters, cwd, timeout):
        seen.append(sorted(p.read_text() for p in folder.iterdir()))
        output_path.write_text(json.dumps({"metadata": {}, "cells": []}))

    assert runner.golden(["00_overview", "01_data"], executor, kernel_check=False,
                         log=lambda s: None) == 0
    untouched = json.dumps({"cells": [], "metadata": {}})
    assert seen == [[untouched, untouched]] * 2
    assert json.loads((folder / "00_overview.ipynb").read_text())["metadata"]["ddcs_mi"]


def test_the_log_prints_each_notebooks_time_against_its_budget(tmp_runs, monkeypatch):
    table = {"smoke": {"00_overview": 1e6, "01_data": 1e-9}}
    monkeypatch.setattr(runner, "budgets", lambda protocol=None: table)
    lines = []
    run(profile="smoke", executor=FakeExecutor(), notebooks=["00_overview", "01_data"],
        log=lines.append)
    assert any("00_overview: ok in" in line and "(budget 1e+06 s)" in line for line in lines)
    assert any("01_data: ok in" in line for line in lines)
    assert runner.budget_note("smoke", "01_data", 0.5, table).startswith(" (OVER its budget of")
    assert runner.budget_note("smoke", "00_overview", 0.5, table) == " (budget 1e+06 s)"
    assert runner.budget_note("paper", "01_data", 5.0, table) == ""


def test_every_notebook_has_a_budget_in_the_protocol(tmp_path):
    table = runner.budgets()
    for profile in ("smoke", "cpu"):
        assert set(table[profile]) == set(runner.NOTEBOOKS), profile
        assert all(v > 0 for v in table[profile].values())
    assert runner.budgets(tmp_path / "absent.md") == {}


def test_one_provenance_first_complete_executions_and_reexecutions(tmp_runs, monkeypatch):
    """A constructed resume: a failed first attempt, a success, then a re-execution at another
    commit. The summary keeps each notebook's first complete execution, lists the others,
    keeps the run's first start, and its wall time is the sum of the first executions."""
    from lib.run import notebooks as nbfiles
    monkeypatch.setattr(runner, "git_commit", lambda short=True: "a" * 40)
    _, run_dir = run(profile="smoke", executor=FakeExecutor(fail={"01_data"}))
    first_start = json.loads((run_dir / "summary.json").read_text())["started"]
    run(profile="smoke", executor=FakeExecutor(), resume=run_dir)          # 01_data completes
    monkeypatch.setattr(runner, "git_commit", lambda short=True: "b" * 40)
    real = runner.fingerprint
    monkeypatch.setattr(runner, "fingerprint", lambda path, params: (
        "changed" if path.stem == "04_transfer" else real(path, params)))
    run(profile="smoke", executor=FakeExecutor(), resume=run_dir)          # 04 re-executed
    summary = json.loads((run_dir / "summary.json").read_text())
    by_name = {nb["name"]: nb for nb in summary["notebooks"]}
    assert summary["started"] == first_start
    data, transfer, other = by_name["01_data"], by_name["04_transfer"], by_name["02_classifiers"]
    assert data["status"] == "ok" and data["commit"] == "a" * 40
    assert [e["status"] for e in data["reexecutions"]] == ["failed"]      # the attempt before
    assert transfer["commit"] == "a" * 40 and other["reexecutions"] == []
    assert [(e["commit"], e["status"]) for e in transfer["reexecutions"]] == [("b" * 40, "ok")]
    assert summary["git_commit"] == "b" * 40                               # the newest execution
    assert run_summary.wall_seconds(summary) == pytest.approx(
        sum(nb["seconds"] for nb in summary["notebooks"]))
    assert run_summary.outputs_commit(transfer) == "b" * 40
    banner = nbfiles.published_banner(summary, "04_transfer")
    assert "`bbbbbbb`" in banner and "first executed at commit `aaaaaaa`" in banner
    assert "re-executed" not in nbfiles.published_banner(summary, "02_classifiers")
    md = (run_dir / "summary.md").read_text()
    assert "| 04_transfer | ok | aaaaaaa |" in md and "bbbbbbb" in md


def test_a_run_cut_in_its_first_notebook_can_be_resumed(tmp_runs):
    class Cut(FakeExecutor):
        def __call__(self, input_path, *args):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(profile="smoke", executor=Cut())
    (run_dir,) = tmp_runs.iterdir()
    code, again = run(profile="smoke", executor=FakeExecutor(), resume=run_dir)
    assert code == 0 and again == run_dir


def test_publishing_into_results_re_executes_the_overview_on_the_new_summary(tmp_runs, tmp_path,
                                                                             monkeypatch):
    """Notebook 00 prints results/' findings: publish re-executes it once the run's summary is
    there (a re-execution in the provenance), then publishes again."""
    from lib import artifacts, paths

    results = tmp_path / "results"
    monkeypatch.setattr(paths, "results_dir", lambda: results)
    _, run_dir = run(profile="smoke", executor=FakeExecutor())
    figure = run_dir / "figures" / "99_headline.png"
    figure.parent.mkdir(exist_ok=True)
    figure.write_bytes(b"png")
    artifacts.register(run_dir, figure)
    again = FakeExecutor()
    runner.publish(run_dir, log=lambda s: None, executor=again, kernel_check=False)
    assert [c[0] for c in again.calls] == ["00_overview"]
    published = json.loads((results / "summary.json").read_text())
    overview = next(nb for nb in published["notebooks"] if nb["name"] == "00_overview")
    assert [e["status"] for e in overview["reexecutions"]] == ["ok"]
    banner = "".join(json.loads((results / "notebooks" / "00_overview.ipynb").read_text())
                     ["cells"][0]["source"])
    assert "re-executed 1× by a resume" in banner


def test_a_run_of_another_split_is_published_under_its_own_folder():
    from lib import config, paths
    from lib.run.runner import publish_dest

    default = config.PROFILES["cpu"]["split"]
    other = next(k for k in ("same-class", "class-disjoint") if k != default)
    assert publish_dest({"profile": "cpu", "overrides": {}}) == paths.results_dir()
    assert publish_dest({"profile": "cpu", "overrides": {"split": default}}) == paths.results_dir()
    assert publish_dest({"profile": "cpu", "overrides": {"split": other}}) == paths.results_dir() / other


def test_progress_bars_only_on_a_terminal_or_in_a_kernel(monkeypatch):
    import io
    import sys

    from lib import paths

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(paths.ENV_HEADLESS, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())       # a redirected log
    assert paths.progress_enabled() is False and paths.progress_enabled(True) is True
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert paths.progress_enabled() is True
    monkeypatch.setenv(paths.ENV_HEADLESS, "1")
    assert paths.progress_enabled() is False


def test_a_notebook_run_prints_no_kernel_transport_warning(tmp_path, capfd):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": runner.KERNEL_NAME, "display_name": "ddcs-mi",
                                 "language": "python"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    runner.papermill_executor(src, out, None, tmp_path, None)
    assert "42" in out.read_text()
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out


def test_the_shared_folder_is_keyed_by_unpinned_cpu_kernels(tmp_runs, monkeypatch):
    """Under the pins (the runner, nbval) the shared folder is ``<profile>``; a kernel with other
    CPU kernel settings (JupyterLab's: none set) gets its own, never the pinned one's artefacts."""
    from lib import paths
    from lib.run.context import interactive_run_dir

    for name, value in paths.CPU_KERNELS.items():
        monkeypatch.setenv(name, value)
    pinned = interactive_run_dir("smoke", {})
    assert pinned == tmp_runs / "interactive" / "smoke" and paths.unpinned_kernels() == {}
    assert interactive_run_dir("smoke", {"seeds": 2}).name.startswith("smoke-")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert paths.unpinned_kernels() == {"ONEDNN_MAX_CPU_ISA": None}
    unset = interactive_run_dir("smoke", {})
    assert unset.name.startswith("smoke-kernels-") and unset != pinned
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    other = interactive_run_dir("smoke", {})
    assert other.name.startswith("smoke-kernels-") and other not in (pinned, unset)
