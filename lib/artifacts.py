"""Files written safely: the one atomic writer, a sha256 manifest per run, safetensors.

Every file is written through ``atomic_path`` (a temporary file in the same folder, fsync,
rename), so an interrupted run never leaves a half-written file. Every file a notebook writes
is registered in ``<run>/manifest.json`` with its sha256; loading verifies it, so a modified
file is an ``ArtifactError`` naming the file and the fix. Nothing here unpickles: tensors and
checkpoints are safetensors with JSON metadata, in one format (``module_tensors``: the named
modules' state dicts as ``<name>.<key>``). ``PartialState`` keeps a long stage resumable.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from . import distributed, seeding
from .errors import ArtifactError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on leaving the block it is flushed to
    disk and renamed onto ``path`` (never half-written), or removed if the block raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artefacts are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


# ---------------------------------------------------------------------------- manifest
def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); restore it or start a new run")


def register(run_dir: Path, path: Path, producer: str = "", **info: Any) -> dict:
    """Record ``path`` (inside ``run_dir``) with its sha256 in the run's manifest."""
    run_dir, path = Path(run_dir), Path(path)
    rel = path.resolve().relative_to(run_dir.resolve()).as_posix()
    entry = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "producer": producer,
             "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **info}
    manifest = read_manifest(run_dir)
    manifest[rel] = entry
    atomic_write_json(run_dir / MANIFEST, manifest)
    return entry


def verify(run_dir: Path, path: Path) -> None:
    """Raise ``ArtifactError`` unless ``path`` is registered and its sha256 matches."""
    run_dir, path = Path(run_dir), Path(path)
    rel = path.resolve().relative_to(run_dir.resolve()).as_posix()
    entry = read_manifest(run_dir).get(rel)
    if not path.is_file():
        raise ArtifactError(f"artefact {rel} is missing from {run_dir}")
    if entry is None:
        raise ArtifactError(f"artefact {rel} is not registered in {run_dir / MANIFEST}; it was "
                            "not written by this pipeline. Remove it and re-run the notebook "
                            "that makes it")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"artefact {rel} was modified after it was written (sha256 {digest[:12]}…, "
            f"manifest {entry['sha256'][:12]}…). Nothing was overwritten. Delete the file to "
            "rebuild it, or start a new run folder")


PARTIAL_SUFFIX = ".partial.safetensors"
"""The files of ``PartialState``: not registered (they change while a stage runs), tied to
their config when read, removed when the stage finishes."""


def verify_all(run_dir: Path) -> list[str]:
    """Check the sha256 of every artefact registered in the run's manifest, in order; raise
    ``ArtifactError`` at the first that differs (nothing is changed). Returns the registered
    paths whose files are missing (deleted to be rebuilt)."""
    run_dir = Path(run_dir)
    missing = []
    for rel, entry in sorted(read_manifest(run_dir).items()):
        path = run_dir / rel
        if not path.is_file():
            missing.append(rel)
            continue
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise ArtifactError(
                f"artefact {rel} of {run_dir.name} was modified after it was written (sha256 "
                f"{digest[:12]}…, manifest {str(entry.get('sha256'))[:12]}…). Nothing was "
                "overwritten. Delete the file to rebuild it, or start a new run folder")
    return missing


def unregistered_files(run_dir: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Files under ``run_dir`` that the manifest does not list (parts cut in flight), less
    ``keep`` (top-level files or folders, by name) and partial states."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    out = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if (path.is_file() and rel not in manifest and rel.split("/")[0] not in keep
                and not path.name.endswith(PARTIAL_SUFFIX)):
            out.append(rel)
    return out


def exists(run_dir: Path, rel: str) -> bool:
    return (Path(run_dir) / rel).is_file()


# ---------------------------------------------------------------------------- tensors
_PICKLE_MAGIC = b"\x80"             # pickle protocol 2+ opcode PROTO
_ZIP_MAGIC = b"PK\x03\x04"          # torch.save's zip container (holds a pickle)


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header '{...'."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _refuse_pickles(path: Path) -> None:
    if _looks_like_safetensors(path):
        return
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(_ZIP_MAGIC) or head[:1] == _PICKLE_MAGIC or zipfile.is_zipfile(path):
        raise ArtifactError(
            f"{path} is a pickle / torch.save file; refusing to unpickle it (it could run "
            "arbitrary code). Checkpoints here are safetensors: convert it with "
            "torch.load(..., weights_only=True) and safetensors.torch.save_file, or rebuild it")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None,
                 run_dir: Path | None = None, producer: str = "") -> Path:
    """Save tensors as safetensors (atomic), JSON ``metadata``; register when ``run_dir``."""
    meta = {"json": json.dumps(metadata or {}, sort_keys=True)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    if run_dir is not None:
        register(run_dir, path, producer=producer, kind="safetensors")
    return path


def load_tensors(path: Path, run_dir: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Load safetensors (verified against the manifest when ``run_dir``) → (tensors, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist")
    if run_dir is not None:
        verify(run_dir, path)
    _refuse_pickles(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{path} is not a readable safetensors file ({err}); delete it "
                            "and rebuild it") from err
    return {k: aligned(v) for k, v in tensors.items()}, json.loads(meta.get("json", "{}"))


ALIGNMENT = 64
"""Bytes: torch's CPU allocator aligns every buffer to 64."""


def aligned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in a buffer aligned as torch's allocator aligns a new one (a copy when it is
    not). safetensors hands back tensors at the file's data offsets (32 bytes off one here),
    and some CPU kernels sum in another order for a misaligned input (seen on an AMD EPYC;
    which kernel was not identified): a resumed state (a projection's codes) would then end
    in other last bits than an uncut run. Networks are not affected (``load_state_dict``
    copies into their own parameters)."""
    return tensor if tensor.data_ptr() % ALIGNMENT == 0 else tensor.clone()


def module_tensors(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The one checkpoint format: the state dicts of named modules as one flat tensor dict
    ``{"<name>.<key>": tensor}`` (a classifier is ``{"model": model}``)."""
    return {f"{name}.{k}": v.detach().cpu().contiguous()
            for name, module in modules.items() for k, v in module.state_dict().items()}


def load_module_tensors(tensors: dict[str, torch.Tensor], modules: dict[str, nn.Module]) -> None:
    """Load ``module_tensors``' output back into ``modules`` (strict: every key must match;
    other tensors in ``tensors`` are ignored)."""
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                if k.startswith(prefix)})


def save_json(path: Path, obj: Any, run_dir: Path | None = None, producer: str = "") -> Path:
    atomic_write_json(Path(path), obj)
    if run_dir is not None:
        register(run_dir, path, producer=producer, kind="json")
    return Path(path)


def read_json_if_present(path: Path) -> Any | None:
    """The content of a JSON file (e.g. a committed study's results), None when it is absent."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def load_json(path: Path, run_dir: Path | None = None) -> Any:
    if run_dir is not None:
        verify(run_dir, path)
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------------- resumable stages
def _pack(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """A JSON-ready copy of nested dicts/lists with every tensor moved into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__items__": [[k, _pack(v, tensors, f"{key}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, tensors, f"{key}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a {type(obj).__name__} at {key!r} in a stage's partial state")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict):
        return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


class PartialState:
    """The in-progress state of one expensive stage (training T or E, the GAN, a transfer
    mode), saved every ``every_s`` seconds so that a stage cut short (a GPU lease ending)
    continues where it stopped. Stored as safetensors (nested dicts of tensors and plain
    values: model and optimiser state, RNG states, step, history), never pickled; tied to
    ``config``: a partial state made under another config is an error, not reused.
    ``every_s`` ≤ 0 turns it off (nothing is written or read)."""

    def __init__(self, path: str | Path, config: Any, every_s: float) -> None:
        self.path, self.config, self.every_s = Path(path), config, float(every_s)
        self._last = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.every_s > 0

    def load(self) -> dict | None:
        """The saved state (CPU tensors), or None when there is none (or it is off)."""
        if not self.enabled or not self.path.is_file():
            return None
        tensors, meta = load_tensors(self.path)
        if meta.get("config") != json.loads(json.dumps(self.config)):
            raise ArtifactError(f"{self.path} is the partial state of a run under another "
                                "config; delete it to start this stage afresh")
        return _unpack(meta["state"], tensors)

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.every_s

    def save(self, state: dict) -> None:
        tensors: dict[str, torch.Tensor] = {}
        packed = _pack(state, tensors, "s")
        save_tensors(self.path, tensors, {"config": self.config, "state": packed})
        self._last = time.monotonic()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(device: str = "cpu") -> dict:
    """The global torch RNG states (CPU, and CUDA's when ``device`` is a GPU)."""
    state = {"cpu": torch.get_rng_state()}
    if str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state: dict, device: str = "cpu") -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and str(device).startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


class Resumable:
    """The resumable state of one training loop, saved through a ``PartialState``: named
    objects with ``state_dict`` (modules, optimisers, schedulers) or ``get_state``
    (``torch.Generator``), torch's global RNG, the loop position and plain values (history).

    ``restore()`` loads a saved state into the objects and returns its values (None when
    there is none); ``checkpoint(position, total, **values)`` saves one when it is due and
    the loop is not finished; ``finish()`` deletes it. ``partial=None`` turns it all off.

    Several processes (``world``, a ``lib.distributed.World``): rank 0 decides when a
    checkpoint is due and writes it, with every rank's random streams (its ``torch.Generator``
    objects and global RNG). Resumed under as many processes, each rank gets its own streams
    back (the run ends as an uncut one would); under another number (or from a one-process
    state), the models, optimisers, schedules and values are restored and each rank's streams
    start afresh from ``reseed`` (``streams_restored`` is then False)."""

    def __init__(self, partial: PartialState | None, device: str = "cpu",
                 world: distributed.World = distributed.SINGLE, reseed: int = 0,
                 **objects: Any) -> None:
        self.partial, self.device, self.objects = partial, device, objects
        self.world, self.reseed = world, reseed
        self.streams_restored = True

    def _generators(self) -> dict[str, torch.Generator]:
        return {k: v for k, v in self.objects.items() if isinstance(v, torch.Generator)}

    def restore(self) -> dict | None:
        saved = self.partial.load() if self.partial is not None else None
        if saved is None:
            return None
        for name, obj in self.objects.items():
            if not isinstance(obj, torch.Generator):
                obj.load_state_dict(saved["objects"][name])
        if not self.world.distributed and "ranks" not in saved:
            for name, obj in self._generators().items():
                obj.set_state(saved["objects"][name])
            set_rng_state(saved["rng"], self.device)
        elif saved.get("world_size") == self.world.size:
            own = saved["ranks"][self.world.rank]
            for name, obj in self._generators().items():
                obj.set_state(own["objects"][name])
            set_rng_state(own["rng"], self.device)
        else:                               # another number of processes: fresh streams
            self.streams_restored = False
            fresh = f"resume/{saved['values']['position']}/{self.world.rank}/{self.world.size}"
            for name, obj in self._generators().items():
                obj.set_state(torch.Generator().manual_seed(
                    seeding.derive_seed(self.reseed, f"{fresh}/{name}")).get_state())
            torch.set_rng_state(torch.Generator().manual_seed(
                seeding.derive_seed(self.reseed, fresh)).get_state())
        return saved["values"]

    def _due(self) -> bool:
        return distributed.broadcast_flag(self.partial.due(), self.world)

    def checkpoint(self, position: int, total: int, **values: Any) -> None:
        if self.partial is None or position >= total or not self._due():
            return
        objects = {name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
                   for name, obj in self.objects.items()}
        state = {"objects": objects, "rng": rng_state(self.device),
                 "values": {"position": position, **values}}
        if self.world.distributed:
            state["world_size"] = self.world.size
            state["ranks"] = [{"objects": {}, "rng": {}} for _ in range(self.world.size)]
            own = {**{f"objects/{k}": v for k, v in self._generators().items()},
                   **{f"rng/{k}": v for k, v in rng_state(self.device).items()}}
            for key in sorted(own):
                value = own[key].get_state() if isinstance(own[key], torch.Generator) else own[key]
                for rank, tensor in enumerate(distributed.all_gather_tensor(value, self.world)):
                    group, name = key.split("/", 1)
                    state["ranks"][rank][group][name] = tensor
        if self.world.main:
            self.partial.save(state)

    def finish(self) -> None:
        if self.partial is not None and self.world.main:
            self.partial.clear()
