"""Optional per-notebook profiles: ``DDCS_MI_CPROFILE=<folder>`` makes every notebook kernel
profile itself with cProfile and write ``<folder>/<notebook>.prof`` after each cell.

Off by default; it changes no result (``benchmarks/profile_run.py`` turns it on and prints
each notebook's top entries).
"""
from __future__ import annotations

import cProfile
from pathlib import Path

from .. import paths

_ACTIVE: dict[str, cProfile.Profile] = {}


def start_if_requested(notebook: str) -> Path | None:
    """Start profiling this kernel when ``DDCS_MI_CPROFILE`` names a folder; the stats are
    dumped after every cell (so a cut notebook keeps what it profiled). Returns the file."""
    folder = paths.profile_dir()
    if folder is None or notebook in _ACTIVE:
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{notebook}.prof"
    profiler = cProfile.Profile()
    _ACTIVE[notebook] = profiler

    def dump(*_args) -> None:
        profiler.disable()
        profiler.dump_stats(str(target))
        profiler.enable()

    shell.events.register("post_run_cell", dump)
    profiler.enable()
    return target
