"""What every notebook calls first: ``ctx = lib.run.context.setup(...)``.

The context carries the resolved config, the run folder, the device and the seeds, and it
is how a notebook records claims and metrics, saves figures and reads/writes artefacts
(verified against the run's manifest).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .. import allocator, artifacts, config, paths, plotting, seeding
from ..data import dataset
from ..errors import ArtifactError, RunnerError
from .profiling import start_if_requested
from .provenance import provenance_text

INTERACTIVE = "interactive"
TIMINGS = "metrics/timings.json"


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when inside it (no absolute paths in outputs)."""
    try:
        return Path(path).resolve().relative_to(paths.repo_root()).as_posix()
    except ValueError:
        return Path(path).name


def resolve_device(requested: str, cfg: Mapping[str, Any]) -> str:
    """``DEVICE`` parameter (auto|cpu|cuda) against the profile; smoke is always the CPU."""
    config.check_device(requested, cfg)      # cfg["device"] itself was checked by resolve
    choice = cfg["device"] if requested == "auto" else requested
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"profile {cfg['profile']!r} asks for a CUDA device and none is "
                           "visible; pass DEVICE='cpu' to run it on the CPU (slowly)")
    return choice


def interactive_run_dir(profile: str, overrides: Mapping[str, Any]) -> Path:
    """``runs/interactive/<profile>/``, or ``<profile>-<hash>`` when there are overrides, and
    ``…-kernels-<hash>`` when the CPU kernels are not the pinned ones (``paths.unpinned_kernels``:
    a kernel JupyterLab started), whose numbers can differ in the last bits: artefacts made
    under other kernels are never reused by the notebook tests, nor theirs by such a kernel."""
    name = profile
    if overrides:
        blob = json.dumps(dict(overrides), sort_keys=True).encode()
        name += "-" + hashlib.sha256(blob).hexdigest()[:8]
    kernels = paths.unpinned_kernels()
    if kernels:
        blob = json.dumps(kernels, sort_keys=True).encode()
        name += "-kernels-" + hashlib.sha256(blob).hexdigest()[:8]
    return paths.runs_dir() / INTERACTIVE / name


@contextlib.contextmanager
def interactive_lock(what: str) -> Iterator[None]:
    """Hold ``runs/interactive/.lock`` while ``what`` (``make golden``, an nbval session)
    rebuilds the shared folders: a second such batch in the same checkout refuses at its
    start, naming the first, instead of the two overwriting each other's artefacts midway."""
    root = paths.runs_dir() / INTERACTIVE
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            inside = root.resolve().is_relative_to(paths.repo_root())
            raise RunnerError(f"{holder} is using {display_path(root) if inside else root} (the "
                              f"notebooks' shared folders); wait for it to finish before "
                              f"starting {what}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})\n")
        handle.flush()
        yield
    finally:
        handle.close()                            # closing releases the lock


def config_difference(saved: Any, wanted: Any, prefix: str = "") -> str:
    """The keys where two configs differ, as 'key: saved → wanted' (nested keys dotted)."""
    if not (isinstance(saved, dict) and isinstance(wanted, dict)):
        return f"{prefix or 'config'}: {saved!r} → {wanted!r}"
    parts = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key, "<absent>"), wanted.get(key, "<absent>")
        if a != b:
            parts.append(config_difference(a, b, f"{prefix}{key}.") if isinstance(a, dict)
                         and isinstance(b, dict) else f"{prefix}{key}: {a!r} → {b!r}")
    return "; ".join(parts)


@dataclass
class Context:
    """Resolved config, run folder, device, seeds, and the recording helpers."""
    cfg: Mapping[str, Any]
    run_dir: Path
    device: str
    seed: int
    notebook: str
    overrides: dict = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return self.cfg["profile"]

    def subseed(self, name: str) -> int:
        return seeding.derive_seed(self.seed, name)

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    # ---------------------------------------------------------------- artefacts
    def save_tensors(self, rel: str, tensors: dict, metadata: dict | None = None) -> Path:
        return artifacts.save_tensors(self.path(rel), tensors, metadata, self.run_dir,
                                      self.notebook)

    def load_tensors(self, rel: str) -> tuple[dict, dict]:
        return artifacts.load_tensors(self.path(rel), self.run_dir)

    def save_json(self, rel: str, obj: Any) -> Path:
        return artifacts.save_json(self.path(rel), obj, self.run_dir, self.notebook)

    def load_json(self, rel: str) -> Any:
        return artifacts.load_json(self.path(rel), self.run_dir)

    def exists(self, rel: str) -> bool:
        return artifacts.exists(self.run_dir, rel)

    def load_current(self, rel: str, config: Any) -> tuple[dict, dict] | None:
        """(tensors, metadata) of ``rel`` if it exists and was made under ``config``; None
        if it does not exist. One made under another config is an ``ArtifactError``: never
        silently replaced, never silently reused."""
        if not self.exists(rel):
            return None
        tensors, meta = self.load_tensors(rel)
        saved = meta.get("config")
        if saved != config:
            raise ArtifactError(
                f"{display_path(self.path(rel))} was made under another config "
                f"({config_difference(saved, config)}). Use a new RUN_DIR, or delete the file to "
                "rebuild it")
        return tensors, meta

    # ---------------------------------------------------------------- records
    def _merge(self, rel: str, key: str, value: Any) -> None:
        current = self.load_json(rel) if self.exists(rel) else {}
        current[key] = value
        self.save_json(rel, current)

    def record(self, key: str, values: Any) -> None:
        """Merge ``{key: values}`` into ``metrics/<notebook>.json``."""
        self._merge(f"metrics/{self.notebook}.json", key, values)

    def record_seconds(self, rel: str, seconds: float) -> None:
        """How long the artefact ``rel`` took to build, in ``metrics/timings.json`` (kept out
        of the artefact itself, so that rebuilding it gives the same bytes)."""
        self._merge(TIMINGS, rel, seconds)

    def seconds_of(self, rel: str) -> float | None:
        """The recorded build time of the artefact ``rel`` (None when not recorded)."""
        return (self.load_json(TIMINGS) if self.exists(TIMINGS) else {}).get(rel)

    def claim(self, claim_id: str, claim: str, criterion: str, measured: Any,
              passed: bool | None, details: str = "", feature_space: str = "",
              status: str = "", precondition: str = "") -> dict:
        """Record a claim (never raise on failure) in ``metrics/claims.json`` and show it;
        ``passed=None`` with a ``status`` saying why records a claim that was not measured;
        ``precondition``: the attack × mode the verdict rests on and that attack's C0b result."""
        rel = "metrics/claims.json"
        claims = self.load_json(rel) if self.exists(rel) else {}
        entry = {"id": claim_id, "claim": claim, "criterion": criterion, "measured": measured,
                 "passed": None if passed is None else bool(passed), "notebook": self.notebook,
                 "profile": self.profile, "feature_space": feature_space, "details": details,
                 "status": status, "precondition": precondition}
        claims[claim_id] = entry
        self.save_json(rel, claims)
        verdict = "NOT RUN" if passed is None else ("PASS" if passed else "FAIL")
        print(f"{claim_id} {verdict}" + (f" [{precondition}]" if precondition else "")
              + f" | {claim} | criterion: {criterion} | measured: {measured}"
              + (f" | {status}" if status else ""))
        return entry

    def savefig(self, fig, fig_id: str) -> None:
        """Save into ``figures/<fig_id>.png`` of the run (registered), then show."""
        path = plotting.savefig(fig, self.run_dir / "figures", fig_id)
        artifacts.register(self.run_dir, path, producer=self.notebook, kind="figure")

    def describe(self) -> str:
        """Run folder and device (unpinned: they differ between machines)."""
        return (f"run folder: {display_path(self.run_dir)}\ndevice: {self.device}\n"
                f"master seed: {self.seed}")


def setup(profile: str = "smoke", run_dir: str = "", seed: int = 0, device: str = "auto",
          overrides: Mapping[str, Any] | None = None, notebook: str = "notebook",
          show_config: bool = True) -> Context:
    """Resolve the profile, seed everything, pick the device and the run folder."""
    overrides = dict(overrides or {})
    seeding.flush_denormals()             # before any parallel torch operation (speed only)
    allocator.reuse_freed_memory()        # freed buffers reused, not paged in again (speed only)
    start_if_requested(notebook)          # only when DDCS_MI_CPROFILE is set
    cfg = config.resolve(profile, overrides)
    dataset.check_inputs(cfg)   # the paper profile's face data and weights, with the fix
    dev = resolve_device(device, cfg)
    folder = Path(run_dir).resolve() if run_dir else interactive_run_dir(profile, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    seeding.seed_everything(seed)
    plotting.set_theme()
    if show_config:
        print(config.echo(cfg, notebook, overrides))
    return Context(cfg=cfg, run_dir=folder, device=dev, seed=seed, notebook=notebook,
                   overrides=overrides)


def provenance(ctx: Context | None = None) -> str:
    """Versions, device and git commit (shown in every notebook's Provenance section)."""
    if ctx is None:
        return provenance_text()
    return provenance_text(ctx.device, display_path(ctx.run_dir))
