#!/usr/bin/env python
"""Run the notebooks headlessly: python run_all.py --profile {smoke,cpu,paper} [--resume RUN_DIR].

A thin command line over lib/run/runner.py; `python run_all.py --help` lists the options.
The first notebook's kernel starts before the runner loads (torch, papermill: about 3 s on 2
cores), so the two overlap.
"""
import gc
import sys

from lib import paths
from lib.run import kernels

NO_NOTEBOOKS = {"-h", "--help", "--list", "--golden", "--publish"}
"""Options under which nothing runs in a kernel of this process's starting."""


def start_first_kernel(argv: list[str]) -> kernels.AsyncKernelManager | None:
    """The first notebook's kernel, started now; None when the command runs no notebook or
    the kernel cannot start (the runner then reports why)."""
    if NO_NOTEBOOKS & set(argv):
        return None
    paths.set_kernel_environment()
    try:
        return kernels.start(paths.notebooks_dir())
    except Exception:  # noqa: BLE001  (a missing kernel: the runner's check says what to do)
        return None


if __name__ == "__main__":
    first = start_first_kernel(sys.argv[1:])
    from lib.run.runner import main

    code = main(sys.argv[1:], first_kernel=first)
    gc.freeze()       # the interpreter's exit then skips a last collection (about 0.8 s)
    sys.exit(code)
