"""The runner's kernel queue: a notebook runs on a kernel started (and warmed up) in advance
exactly as on one started for it, and no kernel outlives the queue."""
from __future__ import annotations

import json

import nbformat
import pytest
from jupyter_core.utils import run_sync

from lib import paths
from lib.run import kernels, runner


def _notebook(path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": runner.KERNEL_NAME, "language": "python",
                                 "display_name": runner.KERNEL_NAME}
    nb.cells = [nbformat.v4.new_code_cell("X = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, str(path))


PROBE = ("import sys, json\n"
         "print(json.dumps({'names': sorted(k for k in globals() if not k.startswith('_')),\n"
         "                  'count': get_ipython().execution_count,\n"
         "                  'torch': 'torch' in sys.modules, 'x': X}))")


def _probe(out) -> dict:
    nb = nbformat.read(str(out), as_version=4)
    return json.loads(nb.cells[-1].outputs[0]["text"])


def test_a_queued_kernel_runs_a_notebook_as_a_fresh_one(tmp_path):
    paths.set_kernel_environment()
    source = tmp_path / "probe.ipynb"
    _notebook(source, PROBE)
    runner.papermill_executor(source, tmp_path / "fresh.ipynb", {"X": 1}, tmp_path, 60)
    with kernels.KernelQueue(2, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS) as queue:
        first = queue.take()
        assert len(queue.waiting) == 1                # the next one starts meanwhile
        runner.papermill_executor(source, tmp_path / "queued.ipynb", {"X": 1}, tmp_path, 60,
                                  kernel=first)
        assert not run_sync(first.is_alive)()         # stopped by papermill at the end
        second = queue.take()
        assert queue.take() is None and not queue.waiting       # two kernels, no more
        run_sync(second.shutdown_kernel)(now=True)
    fresh, queued = _probe(tmp_path / "fresh.ipynb"), _probe(tmp_path / "queued.ipynb")
    assert queued["torch"] and not fresh["torch"]     # the warm-up imported the pipeline ...
    assert queued["names"] == fresh["names"]          # ... and bound no name in the notebook
    assert queued["count"] == fresh["count"] and queued["x"] == fresh["x"] == 1


def test_close_stops_the_waiting_kernels(tmp_path):
    paths.set_kernel_environment()
    queue = kernels.KernelQueue(3, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS)
    waiting = list(queue.waiting)
    assert len(waiting) == 1 and all(run_sync(k.is_alive)() for k in waiting)
    queue.close()
    assert not any(run_sync(k.is_alive)() for k in waiting) and queue.take() is None


def test_stop_ends_a_kernel_whose_notebook_never_started(tmp_path):
    paths.set_kernel_environment()
    with kernels.KernelQueue(1, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS) as queue:
        kernel = queue.take()
        with pytest.raises(Exception):
            runner.papermill_executor(tmp_path / "missing.ipynb", tmp_path / "out.ipynb", None,
                                      tmp_path, 60, kernel=kernel)
        assert run_sync(kernel.is_alive)()            # papermill failed before using it
        kernels.stop(kernel)                          # what the runner does after every notebook
        assert not run_sync(kernel.is_alive)()
        kernels.stop(kernel)                          # and again: nothing left to stop


def test_kernels_started_before_the_runner_are_used_first_in_order_or_stopped(tmp_path):
    paths.set_kernel_environment()
    early = [kernels.start(tmp_path), kernels.start(tmp_path)]
    with kernels.KernelQueue(4, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS,
                             started=early) as queue:
        assert list(queue.waiting) == early           # nothing more started meanwhile
        assert queue.take() is early[0]               # in order; one still waits: no third
        assert list(queue.waiting) == [early[1]]
        assert queue.take() is early[1]               # now the third starts
        kernels.stop(early[0]), kernels.stop(early[1])
        later = list(queue.waiting)
    assert len(later) == 1 and not any(run_sync(k.is_alive)() for k in later)  # closed
    unused = [kernels.start(tmp_path), kernels.start(tmp_path)]
    with kernels.KernelQueue(1, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS,
                             started=unused) as queue:
        assert not run_sync(unused[1].is_alive)()     # one notebook to run: the second stops
        assert list(queue.waiting) == [unused[0]]
    assert not run_sync(unused[0].is_alive)()
    idle = [kernels.start(tmp_path)]
    kernels.KernelQueue(0, runner.KERNEL_NAME, tmp_path, runner.KERNEL_ARGUMENTS, started=idle)
    assert not run_sync(idle[0].is_alive)()           # a queue with nothing to run stops it
    listing = [kernels.start(tmp_path), kernels.start(tmp_path)]
    assert runner.main(["--list"], started_kernels=listing) == 0
    assert not any(run_sync(k.is_alive)() for k in listing)   # a command that runs nothing


def test_run_all_starts_no_kernel_for_commands_that_run_no_notebook():
    import run_all

    for argv in (["--list"], ["--help"], ["--golden"], ["--publish", "runs/x"]):
        assert run_all.start_early_kernels(argv) == []
