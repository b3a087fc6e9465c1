"""Run the notebooks headlessly with papermill into a fresh run folder.

``python run_all.py --profile cpu`` executes the ordered ``NOTEBOOKS`` into
``runs/<UTC>_<profile>_<git>/`` with their parameters, keeps going past a failed notebook
(and exits non-zero), and writes ``env.json``, ``summary.json`` and ``summary.md``.
``--resume RUN_DIR`` skips notebooks whose fingerprint (code cells, parameters, lib/,
requirements and the committed results files they read) is unchanged since they last succeeded there, with the run's own profile and
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
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import artifacts, config, paths
from ..audit import example as audit_example
from ..data import dataset
from ..errors import DdcsMiError, RunnerError
from ..stages.transfer import load_sweep, sweep_file
from . import kernels, notebooks as nbfiles
from .context import interactive_lock
from .provenance import environment_info, git_commit, git_dirty_files
from .summary import record_execution, validate_summary, write_summary

NOTEBOOKS = ["00_overview", "01_data", "02_classifiers", "03_gan_prior", "04_transfer", "05_attacks",
             "06_evaluation", "07_defense", "08_memorisation", "99_summary"]
TOOL_NOTEBOOKS = ["notebooks/tools/audit.ipynb"]
"""Notebooks beside the pipeline (not run by ``run``), whose goldens ``golden`` also makes."""
COMMITTED_INPUTS = {"00_overview": ["summary.json"],
                    "04_transfer": ["entropy_sweep.json", "ngd_damped_study.json"],
                    "08_memorisation": ["regimes.json"],
                    "99_summary": ["ngd_damped_study.json"]}
"""The committed files under ``results/`` that a notebook reads (part of its fingerprint)."""
BUDGET_SECTION = "## Budgets"
"""The section of docs/protocol.md whose table gives each notebook's wall-time budget."""
KERNEL_NAME, KERNEL_ARGUMENTS = kernels.KERNEL_NAME, kernels.KERNEL_ARGUMENTS
STATE = "runner_state.json"

Executor = Callable[..., Any]


# ---------------------------------------------------------------------------- helpers
def notebook_path(name: str) -> Path:
    return paths.notebooks_dir() / f"{name}.ipynb"


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
    return nbfiles.code_cells(nbfiles.read(nb_path))


def committed_inputs_hash(name: str) -> str:
    """The committed results files notebook ``name`` reads (``COMMITTED_INPUTS``), hashed;
    a missing file counts as its absence, so committing a study re-runs its readers."""
    h = hashlib.sha256()
    for file in COMMITTED_INPUTS.get(name, []):
        path = paths.results_dir() / file
        h.update(file.encode() + (path.read_bytes() if path.is_file() else b"<absent>"))
    return h.hexdigest()


def fingerprint(nb_path: Path, parameters: Mapping[str, Any]) -> str:
    """What a notebook's result depends on: code cells, parameters, lib/, requirements and the
    committed results files it reads."""
    blob = json.dumps({"code": code_cells(nb_path), "parameters": dict(parameters),
                       "lib": lib_hash(), "requirements": requirements_hash(),
                       "committed": committed_inputs_hash(nb_path.stem)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


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


def import_papermill():
    """papermill, loaded without jsonschema's optional IRI-format checker: importing
    ``rfc3987_syntax`` builds an Earley parser (1 s of the runner's start on 2 cores) for a
    string format that no notebook's schema uses; jsonschema skips that checker when the
    module cannot be imported. A process that already loaded it keeps it."""
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill
    return papermill


def papermill_executor(input_path: Path, output_path: Path, parameters: dict | None,
                       cwd: Path, timeout: int | None,
                       kernel: kernels.AsyncKernelManager | None = None) -> None:
    """Execute one notebook with papermill (the default executor); ``timeout`` per cell in
    seconds, None for none. ``kernel``: a started kernel's manager to run it on
    (``kernels.KernelQueue``); None: papermill starts one. Either way the kernel is stopped
    at the end without waiting for its orderly exit (every file the notebook writes is
    written by then)."""
    pm = import_papermill()  # only the runner executes notebooks

    adopted = {} if kernel is None else {"kernel_manager_class": kernels.adopting(kernel)}
    pm.execute_notebook(str(input_path), str(output_path), parameters=parameters or None,
                        kernel_name=KERNEL_NAME, cwd=str(cwd), progress_bar=False,
                        log_output=False, execution_timeout=timeout,
                        extra_arguments=KERNEL_ARGUMENTS, shutdown_kernel="immediate",
                        **adopted)


def clean_golden(nb_path: Path, name: str, commit: str) -> None:
    """Make an executed smoke notebook a golden: papermill metadata and timings stripped,
    outputs kept, the smoke banner first, the commit of the code that ran recorded."""
    nb = nbfiles.strip_execution_metadata(nbfiles.read(nb_path))
    nb = nbfiles.strip_machine_paths(nb, {str(paths.repo_root()) + "/": ""})
    nb = nbfiles.set_banner(nb, nbfiles.smoke_banner(name))
    artifacts.atomic_write_bytes(nb_path, nbfiles.dumps(nbfiles.record_golden_commit(nb, commit)))


def budgets(protocol: Path | None = None) -> dict[str, dict[str, float]]:
    """Each notebook's wall-time budget in seconds per profile, from the table of
    docs/protocol.md's "Budgets" section (``| `name` | smoke | cpu |``): the protocol is where
    they are fixed, and the runner's log prints every notebook's time against them. Empty
    when the file or the section is absent."""
    path = protocol or paths.repo_root() / "docs" / "protocol.md"
    if not path.is_file() or BUDGET_SECTION not in path.read_text():
        return {}
    section = path.read_text().split(BUDGET_SECTION, 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, float]] = {"smoke": {}, "cpu": {}}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            name = cells[0].strip("`")
            for profile, cell in zip(("smoke", "cpu"), cells[1:3]):
                try:
                    out[profile][name] = float(cell)
                except ValueError:
                    continue
    return out


def budget_note(profile: str, name: str, seconds: float,
                table: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """`` (budget 300 s)`` or `` (OVER its budget of 300 s: 1.25×)`` for the runner's log; ""
    when the profile has no budget for ``name`` (the paper profile has none)."""
    budget = (budgets() if table is None else table).get(profile, {}).get(name)
    if budget is None:
        return ""
    if seconds <= budget:
        return f" (budget {budget:g} s)"
    return f" (OVER its budget of {budget:g} s: {seconds / budget:.2f}×)"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"
    return text.strip().splitlines()[0][:500] if text.strip() else type(err).__name__


# ---------------------------------------------------------------------------- main entry
def resume_settings(run_dir: str | Path) -> dict:
    """The profile, overrides, seed and device a run folder was started with (its state file)."""
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise RunnerError(f"{run_dir} is not a run folder of this runner (no {STATE})")
    return json.loads(path.read_text())


RUN_FILES = (STATE, artifacts.MANIFEST, "env.json", "summary.json", "summary.md", "set-aside")
"""What the runner keeps in a run folder besides the registered artefacts."""


def check_resume(state: Mapping[str, Any], profile: str, overrides: Mapping[str, Any],
                 seed: int, device: str) -> None:
    """Raise unless a resume asks for what the run was started with: profile, overrides
    (less ``config.RUNNER_KEYS``), seed and device. A new commit is allowed (each notebook's
    execution records its own)."""
    saved_overrides = {k: v for k, v in dict(state.get("overrides") or {}).items()
                       if k not in config.RUNNER_KEYS}
    saved = {"profile": state.get("profile"), "overrides": saved_overrides,
             "seed": state.get("seed", 0), "device": state.get("device", "auto")}
    wanted = {"profile": profile, "overrides": dict(overrides), "seed": seed, "device": device}
    differ = [f"{k} {saved[k]!r} (asked: {wanted[k]!r})" for k in saved if saved[k] != wanted[k]]
    if differ:
        raise RunnerError(f"the run was started with {'; '.join(differ)}; resume it with the same "
                          "(leave --profile, --seed and --device out to use the run's own), or "
                          "start a new run")


def prepare_resume(run_dir: Path, log: Callable[[str], None]) -> list[str]:
    """Before a resume: verify the sha256 of every registered artefact (the first mismatch
    stops it, nothing overwritten); move files that are not registered (parts cut in flight)
    into ``set-aside/<UTC>/``. Returns the notebooks that must run again because a file they
    registered is missing."""
    missing = artifacts.verify_all(run_dir)
    loose = artifacts.unregistered_files(run_dir, keep=RUN_FILES)
    if loose:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = run_dir / "set-aside" / stamp
        for rel in loose:
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(run_dir / rel, aside / rel)
        log(f"set aside {len(loose)} file(s) not in the manifest (cut in flight) → "
            f"set-aside/{stamp}/: {', '.join(loose[:5])}" + (" ..." if len(loose) > 5 else ""))
    manifest = artifacts.read_manifest(run_dir)
    rerun = set()
    for rel in missing:
        producer = manifest[rel].get("producer")
        if producer == "runner" and rel.startswith("notebooks/"):
            producer = Path(rel).stem
        if producer in NOTEBOOKS:
            rerun.add(producer)
    if missing:
        log(f"{len(missing)} registered file(s) missing, rebuilt by re-running "
            f"{', '.join(sorted(rerun)) or 'nothing here (written by a study)'}: "
            f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    return [n for n in NOTEBOOKS if n in rerun]


def run(profile: str = "cpu", overrides: Mapping[str, Any] | None = None, seed: int = 0,
        device: str = "auto", resume: str | Path | None = None,
        notebooks: list[str] | None = None, executor: Executor | None = None,
        kernel_check: bool = True, timeout: int | None = None,
        log: Callable[[str], None] = print,
        started_kernels: Sequence[kernels.AsyncKernelManager] = ()) -> tuple[int, Path]:
    """Execute ``notebooks`` (default: all, in order) under ``profile``; (exit code, run dir).

    Everything is checked before a run folder is made: the profile, every override's type
    and domain, the device, the notebooks' names, the data and weights. ``timeout`` (or the
    ``cell_timeout_s`` override) limits each cell; 0 or None: no limit. ``started_kernels``:
    the first notebooks' kernels, started before this was called (``kernels.start``); the
    caller stops them if the run fails before handing them out (``main`` does)."""
    overrides = dict(overrides or {})
    cfg = config.resolve(profile, overrides)            # profile, keys, types, domains
    config.check_device(device, cfg)
    dataset.check_inputs(cfg)                           # split constraints; paper: data, weights
    selected = list(notebooks or NOTEBOOKS)
    unknown = [n for n in selected if n not in NOTEBOOKS]
    if unknown:
        raise RunnerError(f"unknown notebook(s) {unknown}; valid: {', '.join(NOTEBOOKS)}")
    selected = [n for n in NOTEBOOKS if n in selected]   # always in pipeline order
    settings = {k: overrides.pop(k) for k in config.RUNNER_KEYS if k in overrides}
    queue_kernels = executor is None          # papermill's kernels, the next one started early
    executor = executor or papermill_executor
    if kernel_check:
        check_kernel()
    paths.set_kernel_environment()          # inherited by the kernels papermill starts
    rerun: list[str] = []
    if resume:
        run_dir = Path(resume).resolve()
        state_all = resume_settings(run_dir)
        check_resume(state_all, profile, overrides, seed, device)
        rerun = prepare_resume(run_dir, log)
    else:
        run_dir = new_run_dir(profile)
        state_all = {"profile": profile, "overrides": overrides, "seed": seed, "device": device,
                     "notebooks": {}}
    # the run started when its folder did: a resume keeps that start (a state file written
    # before starts were kept gets this resume's)
    started = state_all.setdefault("started", _now())
    state_all["settings"] = settings
    commit = git_commit(short=False)
    artifacts.atomic_write_json(run_dir / STATE, state_all)    # resumable from its first notebook
    artifacts.atomic_write_json(run_dir / "env.json", environment_info(device))
    (run_dir / "notebooks").mkdir(exist_ok=True)
    limit = timeout if timeout is not None else cfg["cell_timeout_s"]
    log(f"run folder: {run_dir}")
    state = state_all["notebooks"]
    for name in rerun:
        if name not in selected:
            log(f"{name} must run again to rebuild its missing files: add it to --only")
    params = {"PROFILE": profile, "RUN_DIR": str(run_dir), "SEED": seed,
              "DEVICE": device, "OVERRIDES": overrides}
    plan = []                                 # (name, fingerprint, previous entry, skip)
    for name in selected:
        fp = fingerprint(notebook_path(name), params)
        prev = state.get(name, {})
        plan.append((name, fp, prev, bool(resume and name not in rerun
                                          and prev.get("status") == "ok"
                                          and prev.get("fingerprint") == fp)))
    to_execute = sum(not skip for *_, skip in plan) if queue_kernels else 0
    with kernels.KernelQueue(to_execute, KERNEL_NAME, paths.notebooks_dir(), KERNEL_ARGUMENTS,
                             started=started_kernels) as queue:
        if queue_kernels:
            import_papermill()                    # loaded while the first kernel starts
        for i, (name, fp, prev, skip) in enumerate(plan, 1):
            if skip:
                log(f"[{i}/{len(plan)}] {name}: unchanged since it succeeded here, skipped")
                continue
            log(f"[{i}/{len(plan)}] {name}: running ...")
            out = run_dir / "notebooks" / f"{name}.ipynb"
            execution_started, t0 = _now(), time.monotonic()
            try:
                kernel = queue.take()             # None for an injected executor
                try:
                    executor(notebook_path(name), out, params, notebook_path(name).parent,
                             limit or None, **({"kernel": kernel} if kernel is not None else {}))
                finally:
                    kernels.stop(kernel)
                entry = {"status": "ok", "error": None}
                nb = nbfiles.set_banner(nbfiles.read(out),
                                        nbfiles.run_banner(profile, run_dir.name))
                artifacts.atomic_write_bytes(out, nbfiles.dumps(nb))
            except Exception as err:  # keep going; the failure is reported and sets the exit code
                entry = {"status": "failed", "error": _error_text(err)}
            entry.update(seconds=round(time.monotonic() - t0, 2), commit=commit,
                         started=execution_started)
            state[name] = entry = record_execution(prev, entry, fp)
            if out.is_file():
                artifacts.register(run_dir, out, producer="runner", kind="executed-notebook")
            artifacts.atomic_write_json(run_dir / STATE, state_all)
            log(f"[{i}/{len(plan)}] {name}: {entry['status']} in {entry['seconds']:.1f} s"
                + budget_note(profile, name, entry["seconds"])
                + (f" — {entry['error']}" if entry["error"] else ""))
    ordered = {n: state[n] for n in NOTEBOOKS if n in state}
    write_summary(run_dir, profile, overrides, seed, ordered, started)
    failed = [n for n, e in ordered.items() if e["status"] != "ok"]
    log(f"summary: {run_dir / 'summary.md'}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "; all notebooks ok"))
    return (1 if failed else 0), run_dir


PUBLISHED = ("summary.json", "summary.md", "figures/99_headline.png")


def publish(run_dir: str | Path, dest: Path | None = None, log: Callable[[str], None] = print,
            executor: Executor | None = None, kernel_check: bool = True) -> Path:
    """Copy a finished run into ``results/`` (committed): its summary and headline figure,
    every executed notebook (figures embedded, machine paths removed, a banner naming the run)
    into ``results/notebooks/`` and the per-sample audit tables into ``results/audit/``.
    Checks the summary's schema and that every notebook succeeded; files of an earlier
    publication that this run does not have are removed from those two folders.

    Notebook 00 prints the findings of ``results/``: once this run's summary is there, 00 is
    re-executed in the run folder (a resume, recorded as a re-execution) and the run is
    published again, so that the published 00 shows this run's findings, not the last
    publication's."""
    run_dir = Path(run_dir).resolve()
    dest = (Path(dest) if dest is not None
            else publish_dest(json.loads((run_dir / "summary.json").read_text())))
    _publish_once(run_dir, dest, log)
    if dest.resolve() == paths.results_dir().resolve():
        summary = json.loads((run_dir / "summary.json").read_text())
        code, _ = run(profile=summary["profile"], overrides=summary["overrides"],
                      seed=summary["seed"], device=resume_settings(run_dir).get("device", "auto"),
                      resume=run_dir, notebooks=[NOTEBOOKS[0]],
                      executor=executor, kernel_check=kernel_check, log=log)
        if code:
            raise RunnerError(f"re-executing {NOTEBOOKS[0]} on the published summary failed; "
                              f"see {run_dir / 'notebooks' / (NOTEBOOKS[0] + '.ipynb')}")
        _publish_once(run_dir, dest, log)
    return dest


def contrast_run_overrides() -> dict[str, Any]:
    """``config.contrast_overrides`` of the contrast's committed sweep (a clear error when it
    has not been run)."""
    path = sweep_file(config.CONTRAST_SPLIT)
    sweep = load_sweep(path)
    if sweep is None:
        raise RunnerError(f"{path} is missing: run `make sweep-contrast` first (the "
                          f"{config.CONTRAST_SPLIT} contrast's own entropy-weight sweep)")
    return config.contrast_overrides(sweep)


def publish_dest(summary: Mapping[str, Any]) -> Path:
    """Where a run is published: ``results/`` for a run of its profile's split, else
    ``results/<split>/`` (the contrast's folder is named after its split)."""
    split = summary.get("overrides", {}).get("split")
    default = config.PROFILES.get(summary["profile"], {}).get("split")
    return paths.results_dir() if split in (None, default) else paths.results_dir() / split


def _publish_once(run_dir: Path, dest: Path, log: Callable[[str], None]) -> None:
    """One copy of a run into ``dest`` (``publish``)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    validate_summary(summary)
    failed = [n["name"] for n in summary["notebooks"] if n["status"] != "ok"]
    if failed or [n["name"] for n in summary["notebooks"]] != NOTEBOOKS:
        raise RunnerError(f"{run_dir.name} is not a complete, successful run (failed: {failed}; "
                          f"ran {[n['name'] for n in summary['notebooks']]}); publish a full run")
    missing = artifacts.verify_all(run_dir)      # every registered artefact: sha256 first
    if missing:
        raise RunnerError(f"{run_dir.name} lacks {len(missing)} registered file(s) "
                          f"({', '.join(missing[:5])}); resume the run to rebuild them, then "
                          "publish")
    for rel in ["figures/99_headline.png", *(f"notebooks/{n}.ipynb" for n in NOTEBOOKS)]:
        artifacts.verify(run_dir, run_dir / rel)          # present and registered
    dest.mkdir(parents=True, exist_ok=True)
    for rel in PUBLISHED:
        shutil.copyfile(run_dir / rel, dest / Path(rel).name)
        log(f"published {rel} → {dest.name}/{Path(rel).name}")
    machine = {str(run_dir) + "/": f"runs/{run_dir.name}/", str(run_dir): f"runs/{run_dir.name}",
               str(paths.repo_root()) + "/": ""}
    _replace_folder(dest / "notebooks", {
        f"{name}.ipynb": nbfiles.dumps(nbfiles.set_banner(nbfiles.strip_machine_paths(
            nbfiles.strip_execution_metadata(nbfiles.read(run_dir / "notebooks" / f"{name}.ipynb")),
            machine), nbfiles.published_banner(summary, name))) for name in NOTEBOOKS})
    tables = sorted((run_dir / "audit").glob("*.csv"))
    for path in tables:
        artifacts.verify(run_dir, path)
    manifest = artifacts.read_manifest(run_dir)
    producers = {p.name: manifest.get(f"audit/{p.name}", {}).get("producer") or "?" for p in tables}
    _replace_folder(dest / "audit", {"README.md": audit_index(summary, tables, producers).encode(),
                                     **{p.name: p.read_bytes() for p in tables}})
    log(f"published {len(NOTEBOOKS)} notebooks → {dest.name}/notebooks, "
        f"{len(tables)} audit tables → {dest.name}/audit")


def audit_index(summary: Mapping[str, Any], tables: list[Path],
                producers: Mapping[str, str] | None = None) -> str:
    """The README of ``results/audit/``: where the tables come from (each one's writer, from
    the run's manifest) and what each column says."""
    producers = producers or {}
    rows = "\n".join(f"| `{p.name}` | {p.stem.rsplit('_seed', 1)[0]} | {p.stem.rsplit('_seed', 1)[1]} "
                     f"| {producers.get(p.name, '?')} |" for p in tables)
    return f"""# Per-sample audit tables

Which private training images (the set D of the target) each attack exposes, from the
`{summary['profile']}` run `{summary['run']}` (commit `{summary['git_commit']}`), each written by
the notebook or committed study named in its row (the run's manifest records it). One row per
training image of D; one table per attack × mode (or control) × seed.

| column | meaning |
| --- | --- |
| `dataset_index` | the image's index in the Fashion-MNIST train split (torchvision order) |
| `class`, `class_name` | its class |
| `ddcs_best_<d>` | 1 / distance to the nearest reconstruction assigned to it (0 when none is) |
| `ddcs_avg_<d>` | 1 / mean distance of the reconstructions assigned to it (0 when none is) |
| `n_assigned_<d>` | how many reconstructions of its class have it as their nearest training image |
| `nearest_recon_<d>`, `nearest_distance_<d>` | its nearest reconstruction of the same class (index in the attack run; −1 when there is none) and the distance |
| `nonmember_quantile_<d>` | the mid-rank of its best score among the scores of its class's non-members (R) under the same reconstructions: near 1 = exposed more than non-members are |

`<d>` is the distance: `d_P` (the attacker's perceptual distance) or `d_E` (the evaluator's
features). `docs/method.md` explains how to read a DDCS value.

| table | attack / mode or control | seed | written by |
| --- | --- | --- | --- |
{rows}
"""


def _replace_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``folder`` (each atomically), then remove the files it held that
    are not among them, so the folder shows exactly one run."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        artifacts.atomic_write_bytes(folder / name, payload)
    for old in folder.iterdir():
        if old.is_file() and old.name not in files:
            old.unlink()


def golden(notebooks: list[str] | None = None, executor: Executor | None = None,
           kernel_check: bool = True, log: Callable[[str], None] = print) -> int:
    """Re-execute the committed notebooks in place under smoke defaults (no injected cell).

    The shared smoke folder ``runs/interactive/smoke`` is moved aside first (kept), so the
    golden outputs come from a clean rebuild, as in CI; the shared folders' lock
    (``interactive_lock``) is held throughout.
    """
    executor = executor or papermill_executor
    dirty = git_dirty_files()
    if dirty:
        raise RunnerError("make golden records the commit whose code made the outputs, so it "
                          f"needs a clean tree; commit or stash first: {', '.join(dirty[:8])}"
                          + (" ..." if len(dirty) > 8 else ""))
    commit = git_commit(short=False)
    if kernel_check:
        check_kernel()
    with interactive_lock("make golden"):
        paths.set_kernel_environment()
        shared = paths.runs_dir() / "interactive" / "smoke"
        if shared.exists():
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            shared.rename(shared.with_name(f"smoke.replaced-{stamp}"))
        # Executed into a staging folder and written into notebooks/ only at the end, so that
        # every notebook's provenance sees the clean tree of ``commit``, not the goldens
        # written before it.
        failed, staged = [], []
        with tempfile.TemporaryDirectory(prefix="golden-") as staging:
            jobs = [(notebook_path(name), name) for name in notebooks or NOTEBOOKS]
            if notebooks is None:             # the tools notebooks (not pipeline stages)
                jobs += [(paths.repo_root() / rel, rel) for rel in TOOL_NOTEBOOKS]
            for path, label in jobs:
                out = Path(staging) / f"{len(staged) + len(failed)}_{path.name}"
                if label in TOOL_NOTEBOOKS:
                    # the tools notebook rebuilds its example
                    shutil.rmtree(audit_example.example_dir(), ignore_errors=True)
                t0 = time.monotonic()
                try:
                    executor(path, out, None, path.parent,
                             config.PROFILES["smoke"]["cell_timeout_s"] or None)
                    if label in TOOL_NOTEBOOKS:
                        nb = nbfiles.strip_machine_paths(nbfiles.strip_execution_metadata(
                            nbfiles.read(out)), {str(paths.repo_root()) + "/": ""})
                        out.write_bytes(nbfiles.dumps(nbfiles.record_golden_commit(nb, commit)))
                    else:
                        clean_golden(out, label, commit)
                    staged.append((path, out))
                    log(f"{label}: golden outputs executed ({time.monotonic() - t0:.1f} s)")
                except Exception as err:  # keep going; the committed notebook stays as it was
                    failed.append(label)
                    log(f"{label}: FAILED ({_error_text(err)}); the committed notebook is "
                        "unchanged")
            for path, out in staged:
                artifacts.atomic_write_bytes(path, out.read_bytes())
            log(f"golden outputs written: {len(staged)} notebooks")
        return 1 if failed else 0


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``-o`` with a JSON value (a plain string when it is not JSON)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"override {text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None,
         started_kernels: Sequence[kernels.AsyncKernelManager] = ()) -> int:
    """The command line; ``started_kernels``: the first notebooks' kernels, started by
    ``run_all.py`` while this module loaded (stopped here when nothing runs on them)."""
    try:
        return _main(argv, started_kernels)
    finally:
        for kernel in started_kernels:
            kernels.stop(kernel)


def _main(argv: list[str] | None,
          started_kernels: Sequence[kernels.AsyncKernelManager]) -> int:
    parser = argparse.ArgumentParser(prog="run_all.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None,
                        help=f"one of {', '.join(config.PROFILES)} (default: cpu; with "
                             "--resume: the run's own)")
    parser.add_argument("--seed", type=int, default=None,
                        help="master seed (default: 0; with --resume: the run's own)")
    parser.add_argument("--device", default=None,
                        help="auto | cpu | cuda (default: auto; with --resume: the run's own)")
    parser.add_argument("--override", "-o", action="append", default=[], type=parse_override,
                        metavar="KEY=VALUE", help="override a profile key (JSON value)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run these notebooks")
    parser.add_argument("--golden", action="store_true",
                        help="regenerate the committed smoke notebooks in place")
    parser.add_argument("--list", action="store_true", help="list the notebooks in order")
    parser.add_argument("--publish", metavar="RUN_DIR",
                        help="copy a finished run's summary and headline figure into results/ "
                             "(a run of another split than its profile's: results/<split>/)")
    parser.add_argument("--contrast", action="store_true",
                        help=f"the {config.CONTRAST_SPLIT} contrast: the cpu profile on that split "
                             "with the λ_H of its own committed sweep (make contrast)")
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
        profile, overrides = args.profile or "cpu", dict(args.override)
        seed, device = (0 if args.seed is None else args.seed), args.device or "auto"
        if args.contrast:
            overrides = {**contrast_run_overrides(), **overrides}
        if args.resume:                 # continue a run as it was started (run() compares)
            saved = resume_settings(args.resume)
            if args.profile is None:
                profile, overrides = saved["profile"], {**saved["overrides"], **overrides}
            seed = saved.get("seed", 0) if args.seed is None else args.seed
            device = saved.get("device", "auto") if args.device is None else args.device
        code, _ = run(profile, overrides, seed, device, args.resume, args.only,
                      started_kernels=started_kernels)
        return code
    except (DdcsMiError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
