"""Where things live: the repository root (found from this file, never from the cwd)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT_MARKER = "run_all.py"


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


def runs_dir() -> Path:
    """Where run folders go; ``DDCS_MI_RUNS`` overrides it (tests use a temporary folder)."""
    env = os.environ.get("DDCS_MI_RUNS")
    return Path(env).resolve() if env else repo_root() / "runs"
