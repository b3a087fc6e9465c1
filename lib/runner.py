"""Run the notebooks headlessly with papermill into a fresh run folder.

``python run_all.py --profile cpu`` executes the ordered ``NOTEBOOKS`` into
``runs/<UTC>_<profile>_<git>/`` with their parameters, keeps going past a failed notebook
(and exits non-zero), and writes ``env.json``, ``summary.json`` and ``summary.md``.
``--resume RUN_DIR`` skips notebooks whose fingerprint (code cells, parameters, lib/ and
requirements) is unchanged since they last succeeded there, with the run's own profile and
overrides when ``--profile`` is not given; inside a notebook, every expensive stage reuses
its saved result and continues from its partial state (``checkpoint_every_s``), so a paper
run carries on across GPU sessions. ``--golden`` re-executes the
committed notebooks in place under the smoke profile (their stored outputs are nbval's
reference).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from . import artifacts, paths, profiles

NOTEBOOKS = ["00_overview", "01_data", "02_classifiers", "03_gan_prior", "04_transfer", "05_attacks",
             "06_evaluation", "07_defense", "99_summary"]
KERNEL_NAME = "ddcs-mi"
SUMMARY_SCHEMA_VERSION = 2
STATE = "runner_state.json"
PACKAGES = ["torch", "torchvision", "kornia", "numpy", "scipy", "pandas", "matplotlib",
            "seaborn", "safetensors", "papermill", "nbval", "prdc", "lpips"]

Executor = Callable[..., Any]


class RunnerError(RuntimeError):
    """The runner cannot start (bad arguments, wrong kernel, unknown run folder)."""


# ---------------------------------------------------------------------------- helpers
def notebook_path(name: str) -> Path:
    return paths.repo_root() / "notebooks" / f"{name}.ipynb"


def _hash_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def lib_hash() -> str:
    root = paths.repo_root()
    return _hash_files(list((root / "lib").rglob("*.py")), root)


def requirements_hash() -> str:
    root = paths.repo_root()
    return _hash_files([root / "requirements.txt"], root)


def code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(Path(nb_path).read_text())
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def fingerprint(nb_path: Path, parameters: Mapping[str, Any]) -> str:
    """What a notebook's result depends on: code cells, parameters, lib/, requirements."""
    blob = json.dumps({"code": code_cells(nb_path), "parameters": dict(parameters),
                       "lib": lib_hash(), "requirements": requirements_hash()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def git_commit(short: bool = True) -> str:
    try:
        args = ["git", "rev-parse", "--short" if short else "--verify", "HEAD"]
        return subprocess.run(args, cwd=paths.repo_root(), capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def git_dirty() -> bool:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=paths.repo_root(), capture_output=True, text=True, check=True)
        return bool(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return False


def new_run_dir(profile: str, now: _dt.datetime | None = None) -> Path:
    """A new ``runs/<UTC>_<profile>_<git>/`` (a suffix if the name is taken; never reused)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    base = f"{now:%Y%m%dT%H%M%SZ}_{profile}_{git_commit()}"
    root = paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}_{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunnerError(f"could not create a new run folder under {root}")


def check_kernel(name: str = KERNEL_NAME) -> str:
    """Raise unless the Jupyter kernel ``name`` runs this interpreter; returns its argv[0]."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    fix = (f"register it for this environment: {sys.executable} -m ipykernel install "
           f"--sys-prefix --name {name} (make install does it)")
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as err:
        raise RunnerError(f"Jupyter kernel {name!r} not found; {fix}") from err
    kernel_python = spec.argv[0]
    if os.path.abspath(kernel_python) != os.path.abspath(sys.executable):
        raise RunnerError(f"Jupyter kernel {name!r} runs {kernel_python}, not this "
                          f"environment's {sys.executable}; {fix}")
    return kernel_python


def environment_info(device: str = "") -> dict:
    from importlib import metadata

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions,
            "git_commit": git_commit(short=False), "git_dirty": git_dirty(),
            "executable": sys.executable, "requested_device": device}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch missing is reported by the notebooks themselves
        pass
    return info


def papermill_executor(input_path: Path, output_path: Path, parameters: dict | None,
                       cwd: Path, timeout: int) -> None:
    """Execute one notebook with papermill (the default executor)."""
    import papermill as pm

    pm.execute_notebook(str(input_path), str(output_path), parameters=parameters or None,
                        kernel_name=KERNEL_NAME, cwd=str(cwd), progress_bar=False,
                        log_output=False, execution_timeout=timeout)


def clean_golden(nb_path: Path) -> None:
    """Strip papermill metadata and timings from an executed notebook, keeping outputs."""
    nb = json.loads(nb_path.read_text())
    nb["metadata"].pop("papermill", None)
    for cell in nb["cells"]:
        meta = cell.get("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        if meta.get("tags") == []:
            meta.pop("tags")
    artifacts.atomic_write_bytes(nb_path, (json.dumps(nb, indent=1, ensure_ascii=False)
                                           + "\n").encode())


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"
    return text.strip().splitlines()[0][:500] if text.strip() else type(err).__name__


def collect_metrics(run_dir: Path) -> tuple[list, dict]:
    """(claims as a list, other metrics by notebook) from ``<run>/metrics``."""
    folder = run_dir / "metrics"
    claims, metrics = [], {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            content = json.loads(path.read_text())
            if path.stem == "claims":
                claims = [content[k] for k in sorted(content)]
            else:
                metrics[path.stem] = content
    return claims, metrics


SUMMARY_KEYS = {"schema_version", "run", "profile", "overrides", "seed", "git_commit",
                "started", "finished", "notebooks", "claims", "attacks", "metrics"}
CLAIM_KEYS = {"id", "claim", "criterion", "measured", "passed", "notebook", "profile",
              "feature_space", "details", "paper_says"}
ATTACK_KEYS = {"attack", "mode", "seeds", "metrics"}
ATTACK_METRIC_KEYS = {"mean", "values", "space"}


def attack_table(metrics: Mapping[str, Any]) -> list[dict]:
    """Per attack × mode, every metric of notebook 06 (mean over seeds, per-seed values,
    feature space) and the seeds it covers; [] when notebook 06 has not run."""
    by_source = metrics.get("06_evaluation", {}).get("by_source", {})
    rows = []
    for source, entry in by_source.items():
        if "/" not in source:                       # the controls
            continue
        attack, mode = source.split("/", 1)
        table = {}
        for name, m in entry["metrics"].items():
            values = [v for v in m["values"] if v is not None]
            table[name] = {"mean": sum(values) / len(values) if values else None,
                           "values": m["values"], "space": m["space"]}
        rows.append({"attack": attack, "mode": mode, "seeds": entry["seeds"], "metrics": table})
    return rows


def validate_summary(summary: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is missing if ``summary`` does not follow the schema."""
    def need(keys, obj, where):
        missing = set(keys) - set(obj)
        if missing:
            raise ValueError(f"summary.json: {where} lacks {sorted(missing)} (schema version "
                             f"{SUMMARY_SCHEMA_VERSION}, README 'Where outputs go')")

    need(SUMMARY_KEYS, summary, "the top level")
    if summary["schema_version"] != SUMMARY_SCHEMA_VERSION:
        raise ValueError(f"summary.json: schema version {summary['schema_version']}, expected "
                         f"{SUMMARY_SCHEMA_VERSION}")
    for c in summary["claims"]:
        need(CLAIM_KEYS, c, f"claim {c.get('id')}")
    for a in summary["attacks"]:
        need(ATTACK_KEYS, a, f"attack entry {a.get('attack')}/{a.get('mode')}")
        for name, m in a["metrics"].items():
            need(ATTACK_METRIC_KEYS, m, f"metric {name} of {a['attack']}/{a['mode']}")
    for nb in summary["notebooks"]:
        need({"name", "status", "seconds", "error"}, nb, f"notebook entry {nb.get('name')}")


def write_summary(run_dir: Path, profile: str, overrides: Mapping, seed: int,
                  state: dict, started: str) -> dict:
    """``summary.json`` (schema in README) and ``summary.md`` of a run folder."""
    from .metrics.claims import PAPER_SAYS

    claims, metrics = collect_metrics(run_dir)
    claims = [{"feature_space": "", "details": "", **c, "paper_says": PAPER_SAYS.get(c["id"], "")}
              for c in claims]
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run": run_dir.name,
        "profile": profile,
        "overrides": dict(overrides),
        "seed": seed,
        "git_commit": git_commit(short=False),
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notebooks": [{"name": n, "status": state[n]["status"],
                       "seconds": state[n].get("seconds"), "error": state[n].get("error")}
                      for n in state],
        "claims": claims,
        "attacks": attack_table(metrics),
        "metrics": metrics,
    }
    validate_summary(summary)
    artifacts.atomic_write_json(run_dir / "summary.json", summary)
    lines = [f"# Run {run_dir.name}", "", f"profile `{profile}`, seed {seed}, overrides "
             f"`{json.dumps(dict(overrides))}`, commit `{summary['git_commit'][:10]}`", "",
             "| notebook | status | seconds |", "| --- | --- | --- |"]
    for nb in summary["notebooks"]:
        secs = "" if nb["seconds"] is None else f"{nb['seconds']:.1f}"
        status = nb["status"] + (f" ({nb['error']})" if nb["error"] else "")
        lines.append(f"| {nb['name']} | {status} | {secs} |")
    lines += ["", "## Claims", ""]
    if claims:
        lines += ["| id | claim | criterion | measured | result |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {c['id']} | {c['claim']} | {c['criterion']} | {c['measured']} | "
                  f"{'pass' if c['passed'] else 'FAIL'} |" for c in claims]
    else:
        lines.append("No claims recorded.")
    artifacts.atomic_write_bytes(run_dir / "summary.md", ("\n".join(lines) + "\n").encode())
    return summary


# ---------------------------------------------------------------------------- main entry
def resume_settings(run_dir: str | Path) -> dict:
    """The profile, overrides and seed a run folder was started with (its state file)."""
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise RunnerError(f"{run_dir} is not a run folder of this runner (no {STATE})")
    return json.loads(path.read_text())


def run(profile: str = "cpu", overrides: Mapping[str, Any] | None = None, seed: int = 0,
        device: str = "auto", resume: str | Path | None = None,
        notebooks: list[str] | None = None, executor: Executor | None = None,
        kernel_check: bool = True, timeout: int | None = None,
        log: Callable[[str], None] = print) -> tuple[int, Path]:
    """Execute ``notebooks`` (default: all, in order) under ``profile``; (exit code, run dir)."""
    overrides = dict(overrides or {})
    cfg = profiles.resolve(profile, overrides)          # unknown profile/key: ValueError
    profiles.check_inputs(cfg)                          # paper: face data and weights present
    selected = list(notebooks or NOTEBOOKS)
    unknown = [n for n in selected if n not in NOTEBOOKS]
    if unknown:
        raise RunnerError(f"unknown notebook(s) {unknown}; valid: {', '.join(NOTEBOOKS)}")
    selected = [n for n in NOTEBOOKS if n in selected]   # always in pipeline order
    executor = executor or papermill_executor
    if kernel_check:
        check_kernel()
    os.environ["PYTHONHASHSEED"] = "0"      # inherited by the kernels papermill starts
    os.environ["DDCS_MI_HEADLESS"] = "1"    # no progress bars in executed notebooks
    if resume:
        run_dir = Path(resume).resolve()
        if not (run_dir / STATE).is_file():
            raise RunnerError(f"{run_dir} is not a run folder of this runner (no {STATE})")
        state_all = json.loads((run_dir / STATE).read_text())
        if state_all.get("profile") != profile or state_all.get("overrides") != overrides:
            raise RunnerError(f"{run_dir} was run with profile {state_all.get('profile')!r} "
                              f"and overrides {state_all.get('overrides')}; resume it with the "
                              "same ones, or start a new run")
    else:
        run_dir = new_run_dir(profile)
        state_all = {"profile": profile, "overrides": overrides, "seed": seed, "notebooks": {}}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    artifacts.atomic_write_json(run_dir / "env.json", environment_info(device))
    (run_dir / "notebooks").mkdir(exist_ok=True)
    timeout = timeout or int(cfg["cell_timeout_s"])
    log(f"run folder: {run_dir}")
    state = state_all["notebooks"]
    for i, name in enumerate(selected, 1):
        params = {"PROFILE": profile, "RUN_DIR": str(run_dir), "SEED": seed,
                  "DEVICE": device, "OVERRIDES": overrides}
        fp = fingerprint(notebook_path(name), params)
        prev = state.get(name, {})
        if resume and prev.get("status") == "ok" and prev.get("fingerprint") == fp:
            log(f"[{i}/{len(selected)}] {name}: unchanged since it succeeded here, skipped")
            continue
        log(f"[{i}/{len(selected)}] {name}: running ...")
        out = run_dir / "notebooks" / f"{name}.ipynb"
        t0 = time.monotonic()
        try:
            executor(notebook_path(name), out, params, notebook_path(name).parent, timeout)
            entry = {"status": "ok", "error": None}
        except Exception as err:  # keep going; the failure is reported and sets the exit code
            entry = {"status": "failed", "error": _error_text(err)}
        entry.update(seconds=round(time.monotonic() - t0, 2), fingerprint=fp)
        state[name] = entry
        if out.is_file():
            artifacts.register(run_dir, out, producer="runner", kind="executed-notebook")
        artifacts.atomic_write_json(run_dir / STATE, state_all)
        log(f"[{i}/{len(selected)}] {name}: {entry['status']} in {entry['seconds']:.1f} s"
            + (f" — {entry['error']}" if entry["error"] else ""))
    ordered = {n: state[n] for n in NOTEBOOKS if n in state}
    write_summary(run_dir, profile, overrides, seed, ordered, started)
    failed = [n for n, e in ordered.items() if e["status"] != "ok"]
    log(f"summary: {run_dir / 'summary.md'}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "; all notebooks ok"))
    return (1 if failed else 0), run_dir


PUBLISHED = ("summary.json", "summary.md", "figures/99_headline.png")


def publish(run_dir: str | Path, dest: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Copy a finished run's summary and headline figure into ``results/`` (committed), after
    checking the summary's schema and that every notebook succeeded."""
    import shutil

    run_dir = Path(run_dir).resolve()
    dest = Path(dest) if dest is not None else paths.repo_root() / "results"
    summary = json.loads((run_dir / "summary.json").read_text())
    validate_summary(summary)
    failed = [n["name"] for n in summary["notebooks"] if n["status"] != "ok"]
    if failed or [n["name"] for n in summary["notebooks"]] != NOTEBOOKS:
        raise RunnerError(f"{run_dir.name} is not a complete, successful run (failed: {failed}; "
                          f"ran {[n['name'] for n in summary['notebooks']]}); publish a full run")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in PUBLISHED:
        if rel.startswith("figures/"):                  # registered artefacts: verify first
            artifacts.verify(run_dir, run_dir / rel)
        shutil.copyfile(run_dir / rel, dest / Path(rel).name)
        log(f"published {rel} → {dest.name}/{Path(rel).name}")
    return dest


def golden(notebooks: list[str] | None = None, executor: Executor | None = None,
           kernel_check: bool = True, log: Callable[[str], None] = print) -> int:
    """Re-execute the committed notebooks in place under smoke defaults (no injected cell).

    The shared smoke folder ``runs/interactive/smoke`` is moved aside first (kept), so the
    golden outputs come from a clean rebuild, as in CI.
    """
    executor = executor or papermill_executor
    if kernel_check:
        check_kernel()
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ["DDCS_MI_HEADLESS"] = "1"
    shared = paths.runs_dir() / "interactive" / "smoke"
    if shared.exists():
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        shared.rename(shared.with_name(f"smoke.replaced-{stamp}"))
    failed = []
    for name in notebooks or NOTEBOOKS:
        path = notebook_path(name)
        tmp = path.with_name(f".{name}.golden.ipynb")
        t0 = time.monotonic()
        try:
            executor(path, tmp, None, path.parent, profiles.PROFILES["smoke"]["cell_timeout_s"])
            clean_golden(tmp)
            os.replace(tmp, path)
            log(f"{name}: golden outputs written ({time.monotonic() - t0:.1f} s)")
        except Exception as err:
            failed.append(name)
            log(f"{name}: FAILED ({_error_text(err)}); the committed notebook is unchanged")
        finally:
            tmp.unlink(missing_ok=True)
    return 1 if failed else 0


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"override {text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None,
                        help=f"one of {', '.join(profiles.PROFILES)} (default: cpu; with "
                             "--resume: the run's own)")
    parser.add_argument("--seed", type=int, default=0, help="master seed")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--override", "-o", action="append", default=[], type=_parse_override,
                        metavar="KEY=VALUE", help="override a profile key (JSON value)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run these notebooks")
    parser.add_argument("--golden", action="store_true",
                        help="regenerate the committed smoke notebooks in place")
    parser.add_argument("--list", action="store_true", help="list the notebooks in order")
    parser.add_argument("--publish", metavar="RUN_DIR",
                        help="copy a finished run's summary and headline figure into results/")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print("\n".join(NOTEBOOKS))
            return 0
        if args.golden:
            return golden(args.only)
        if args.publish:
            publish(args.publish)
            return 0
        profile, overrides, seed = args.profile or "cpu", dict(args.override), args.seed
        if args.resume and args.profile is None:   # continue a run as it was started
            saved = resume_settings(args.resume)
            profile, overrides = saved["profile"], saved["overrides"]
            overrides = {**overrides, **dict(args.override)}
            seed = saved.get("seed", seed)
        code, _ = run(profile, overrides, seed, args.device, args.resume, args.only)
        return code
    except (ValueError, RunnerError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
