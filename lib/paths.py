"""Every location, and every ``DDCS_MI_*`` environment variable, in one place.

The repository root is found from this file (never from the cwd). The environment variables
this package reads — and nothing else reads them:

- ``DDCS_MI_RUNS``: where run folders go (default ``runs/``; the tests use a temporary folder);
- ``DDCS_MI_HEADLESS``: set (by the runner and the tests) to turn progress bars off;
- ``DDCS_MI_FASHION_MNIST``: a folder holding the four Fashion-MNIST IDX files;
- ``DDCS_MI_FACE_SPLIT``: the face split file of the ``paper`` profile;
- ``DDCS_MI_FACES_PRIVATE`` / ``DDCS_MI_FACES_PUBLIC``: where the face folders are now, when they
  moved since the split file was written;
- ``DDCS_MI_WEIGHTS``: the folder of pretrained weights (default ``weights/``);
- ``DDCS_MI_CPROFILE``: a folder where each notebook kernel writes its cProfile statistics
  (``benchmarks/profile_run.py``; off when unset).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT_MARKER = "run_all.py"
ENV_RUNS = "DDCS_MI_RUNS"
ENV_HEADLESS = "DDCS_MI_HEADLESS"
ENV_FASHION_MNIST = "DDCS_MI_FASHION_MNIST"
ENV_FACE_SPLIT = "DDCS_MI_FACE_SPLIT"
ENV_FACES = {"private": "DDCS_MI_FACES_PRIVATE", "public": "DDCS_MI_FACES_PUBLIC"}
ENV_WEIGHTS = "DDCS_MI_WEIGHTS"
ENV_CPROFILE = "DDCS_MI_CPROFILE"


def _env(name: str) -> str | None:
    """The value of an environment variable, None when unset or empty."""
    return os.environ.get(name) or None


def repo_root() -> Path:
    """The repository root: the first parent of this package that holds ``run_all.py``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / ROOT_MARKER).is_file() and (parent / "lib").is_dir():
            return parent
    raise RuntimeError(
        f"could not find the repository root above {here} (looked for {ROOT_MARKER}); "
        "install the package editable from a checkout: pip install -e ."
    )


def data_dir() -> Path:
    """The committed ``data/`` folder (split index files, provenance)."""
    return repo_root() / "data"


def splits_dir() -> Path:
    """The committed split index files."""
    return data_dir() / "splits"


def cache_dir() -> Path:
    """Decoded image caches (git-ignored)."""
    return data_dir() / "cache"


def results_dir() -> Path:
    """The committed results of the latest full run and of the committed studies."""
    return repo_root() / "results"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def runs_dir() -> Path:
    """Where run folders go; ``DDCS_MI_RUNS`` overrides it (tests use a temporary folder)."""
    env = _env(ENV_RUNS)
    return Path(env).resolve() if env else repo_root() / "runs"


def headless() -> bool:
    """Progress bars off (``DDCS_MI_HEADLESS`` set by the runner and the tests)."""
    return _env(ENV_HEADLESS) is not None


def progress_enabled(progress: bool | None = None) -> bool:
    """Progress bars on unless headless (``DDCS_MI_HEADLESS``), or standard error is neither a
    terminal nor a Jupyter kernel's (a redirected log gets no carriage-return flood), or
    ``progress`` says otherwise."""
    if progress is not None:
        return progress
    interactive = sys.stderr is not None and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return interactive and not headless()


def fashion_mnist_dir() -> Path | None:
    """The folder named by ``DDCS_MI_FASHION_MNIST``, if any."""
    env = _env(ENV_FASHION_MNIST)
    return Path(env) if env else None


def face_split_override() -> Path | None:
    """The face split file named by ``DDCS_MI_FACE_SPLIT``, if any."""
    env = _env(ENV_FACE_SPLIT)
    return Path(env) if env else None


def face_folder_override(role: str) -> Path | None:
    """Where the ``private`` or ``public`` face folder is now, if its variable is set."""
    env = _env(ENV_FACES[role])
    return Path(env) if env else None


def profile_dir() -> Path | None:
    """The folder named by ``DDCS_MI_CPROFILE`` (per-notebook cProfile statistics), if any."""
    env = _env(ENV_CPROFILE)
    return Path(env).resolve() if env else None


def weights_dir() -> Path:
    """``DDCS_MI_WEIGHTS`` if set, else ``weights/`` in the repository (git-ignored)."""
    env = _env(ENV_WEIGHTS)
    return Path(env) if env else repo_root() / "weights"


CPU_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
               "OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""The CPU kernels torch and numpy/scipy may use, pinned so that CPU runs on different x86-64
machines with AVX2 give the same numbers where the pins reach (not everywhere: on an AMD EPYC
with AVX-512 the smoke run's classifiers tested as in the goldens of another machine, but its
prior and every number after it differed; docs/protocol.md). Otherwise each picks its kernels
by CPU type at run time: torch's AVX-512 kernels (oneDNN's convolutions, ATen's vectorised
loops) sum in another order than its AVX2 ones, MKL's (torch's BLAS: linear layers, matrix
products) pick AVX-512 paths on CPUs that have them (on one such machine E's smoke test
accuracy moved 0.83 → 0.82 without this pin), and OpenBLAS's kernel families (Haswell, Zen,
SkylakeX, ...) give eigenpairs of the natural-gradient metric (scipy's Lanczos) that differ in
the last bits; training amplifies both into different rounded results. A value already set is
kept."""


def unpinned_kernels() -> dict[str, str | None]:
    """The CPU kernel settings of this process that are not ``CPU_KERNELS``' (``None``: unset),
    e.g. in a kernel JupyterLab started: empty under the runner and the notebook tests."""
    return {name: os.environ.get(name) for name, value in CPU_KERNELS.items()
            if os.environ.get(name) != value}


def set_kernel_environment() -> None:
    """What the runner and the notebook tests set before notebook kernels start (they inherit
    it, and it must precede torch's import): a fixed ``PYTHONHASHSEED``, ``DDCS_MI_HEADLESS``
    (no progress bars in executed notebooks) and the pinned CPU kernels (``CPU_KERNELS``)."""
    os.environ["PYTHONHASHSEED"] = "0"
    os.environ[ENV_HEADLESS] = "1"
    pin_cpu_kernels()


def pin_cpu_kernels() -> None:
    """``CPU_KERNELS`` into this process's environment (a value already set is kept); what
    ``make lab`` does before JupyterLab starts, so its kernels compute as a run's."""
    for name, value in CPU_KERNELS.items():
        os.environ.setdefault(name, value)


def set_deterministic_cublas() -> None:
    """cuBLAS's workspace setting that deterministic algorithms need on a GPU (kept if set)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
