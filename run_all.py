#!/usr/bin/env python
"""Run the notebooks headlessly: python run_all.py --profile {smoke,cpu,paper} [--resume RUN_DIR].

A thin command line over lib/run/runner.py; `python run_all.py --help` lists the options.
The first two notebooks' kernels start before the runner loads (torch, papermill: about 3 s
on 2 cores), so the three overlap: the first notebook takes about a second, and the second
would otherwise wait for its kernel.
"""
import gc
import sys

from lib import paths
from lib.run import kernels

NO_NOTEBOOKS = {"-h", "--help", "--list", "--golden", "--publish"}
"""Options under which nothing runs in a kernel of this process's starting."""

EARLY_KERNELS = 2
"""How many kernels start before the runner loads."""


def start_early_kernels(argv: list[str]) -> list[kernels.AsyncKernelManager]:
    """The first ``EARLY_KERNELS`` notebooks' kernels, started now; none when the command runs
    no notebook or a kernel cannot start (the runner then reports why)."""
    if NO_NOTEBOOKS & set(argv):
        return []
    paths.set_kernel_environment()
    started = []
    try:
        for _ in range(EARLY_KERNELS):
            started.append(kernels.start(paths.notebooks_dir()))
    except Exception:  # noqa: BLE001  (a missing kernel: the runner's check says what to do)
        pass
    return started


if __name__ == "__main__":
    early = start_early_kernels(sys.argv[1:])
    from lib.run.runner import main

    code = main(sys.argv[1:], started_kernels=early)
    gc.freeze()       # the interpreter's exit then skips a last collection (about 0.8 s)
    sys.exit(code)
