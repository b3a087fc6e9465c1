"""Kernels for the runner: every notebook in a fresh kernel, the next ones started early.

A notebook kernel spends its first seconds starting and importing torch, matplotlib, seaborn
and the pipeline's modules (about 3.5 s on 2 cores, 10 notebooks to a run). ``KernelQueue``
starts the next notebooks' kernels, and has them import those modules, while the current
notebook runs; papermill then executes the notebook on that kernel and stops it at the end. The
warm-up only imports (``import_pipeline``): it binds no name in the notebook's namespace and
counts no execution, so a notebook runs as it would in a kernel started for it (its printed
outputs, figures and files are the same).

This module is light (jupyter_client only): ``run_all.py`` starts the first two notebooks'
kernels with it before it imports the runner, torch and papermill, so they start meanwhile
(the first notebook takes about a second, so the second would otherwise wait for its kernel).
"""
from __future__ import annotations

import importlib
from collections import deque
from pathlib import Path
from typing import Sequence

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

KERNEL_NAME = "ddcs-mi"
"""The Jupyter kernel every notebook runs on (``make install`` registers it for ``.venv``)."""

KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
"""The kernels' own log (not the notebooks' outputs: a failing cell still fails the notebook,
with its error) off: the local kernel's warning about TCP without encryption, and the
KeyboardInterrupt it logs when papermill stops it, would otherwise fill the runner's log."""

PIPELINE_MODULES = ("torch", "numpy", "pandas", "scipy.stats", "matplotlib.pyplot", "seaborn",
                    "lib.run.context", "lib.plotting", "lib.stages.classifiers", "lib.stages.gan",
                    "lib.stages.transfer", "lib.stages.attacks", "lib.stages.evaluation",
                    "lib.stages.defense")
"""What a notebook imports first (directly or through ``lib``): loaded by a waiting kernel."""

WARM_UP = "import lib.run.kernels as _kernels; _kernels.import_pipeline(); del _kernels"
"""The line a queued kernel runs at start (IPython's ``exec_lines``: no history, no count)."""


def import_pipeline() -> None:
    """Import ``PIPELINE_MODULES`` (in a kernel waiting for its notebook)."""
    for name in PIPELINE_MODULES:
        importlib.import_module(name)


def adopting(manager: AsyncKernelManager) -> type:
    """A kernel-manager class for papermill whose "new" instance is ``manager``, a kernel
    already started: papermill runs the notebook on it and stops it as if it had started it."""
    class Adopted(AsyncKernelManager):
        def __new__(cls, *args, **kwargs):
            return manager

    return Adopted


def start(cwd: Path, kernel_name: str = KERNEL_NAME,
          arguments: list[str] = KERNEL_ARGUMENTS) -> AsyncKernelManager:
    """A new kernel in ``cwd`` that imports the pipeline's modules as it starts (``WARM_UP``);
    it inherits this process's environment (``paths.set_kernel_environment`` first)."""
    manager = AsyncKernelManager(kernel_name=kernel_name)
    run_sync(manager.start_kernel)(
        extra_arguments=list(arguments) + [f"--IPKernelApp.exec_lines={WARM_UP}"], cwd=str(cwd))
    return manager


def stop(manager: AsyncKernelManager | None) -> None:
    """Stop ``manager``'s kernel if it still runs (papermill stops the kernels it ran a notebook
    on; this catches one handed out for a notebook that failed before it started)."""
    if manager is not None and run_sync(manager.is_alive)():
        run_sync(manager.shutdown_kernel)(now=True)


AHEAD = 1
"""Kernels the queue keeps started and waiting (besides those started before it): the next
notebook's. With two (the one after it too) two smoke runs were slower, not faster: 122 and
126 s against 118 s, with 9–14 s more system time."""


class KernelQueue:
    """Hands out ``count`` fresh kernels one after another, keeping up to ``AHEAD`` started (and
    warmed up) while the one before them is in use, the first ones when the queue is made.
    ``take()`` returns a started kernel manager or None (no kernel left, or the waiting one
    died: papermill then starts its own). ``close()`` stops the kernels still waiting; use it
    as a context manager. ``started``: kernels started before the queue was made (by
    ``start``, with the same name, folder and arguments), handed out first in their order;
    the queue stops those it does not need."""

    def __init__(self, count: int, kernel_name: str, cwd: Path, arguments: list[str],
                 started: Sequence[AsyncKernelManager] = ()):
        self.remaining, self.kernel_name = max(count, 0), kernel_name
        self.cwd, self.arguments = Path(cwd), list(arguments)
        self.waiting: deque[AsyncKernelManager] = deque(started[:self.remaining])
        for extra in started[self.remaining:]:
            stop(extra)
        self._fill()

    def _fill(self) -> None:
        while len(self.waiting) < min(AHEAD, self.remaining):
            self.waiting.append(start(self.cwd, self.kernel_name, self.arguments))

    def take(self) -> AsyncKernelManager | None:
        """The next kernel; starts the one ``AHEAD`` notebooks later."""
        if self.remaining <= 0:
            return None
        manager = self.waiting.popleft()
        self.remaining -= 1
        self._fill()
        if not run_sync(manager.is_alive)():
            run_sync(manager.cleanup_resources)()
            return None
        return manager

    def close(self) -> None:
        """Stop the kernels still waiting, if any (a run cut short)."""
        while self.waiting:
            stop(self.waiting.popleft())
        self.remaining = 0

    def __enter__(self) -> "KernelQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
