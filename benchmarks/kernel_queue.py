"""A notebook's fixed cost with a fresh kernel against one from the runner's kernel queue.

    .venv/bin/python benchmarks/kernel_queue.py [--notebooks 5] [--work 6]

Executes ``--notebooks`` probe notebooks one after another, as the runner does: a parameters
cell, the pipeline notebooks' first imports (``import lib``, matplotlib, numpy, pandas,
seaborn, torch, ``lib.run.context``), then about ``--work`` seconds of work: either idle
(``time.sleep``) or compute-bound (a fixed number of 2-thread matrix products, as a training
notebook keeps both cores busy; the count is calibrated here first, so a slowdown from a kernel
warming up beside it counts as fixed cost). Once with papermill starting each kernel itself (``papermill_executor`` without a
kernel: start, imports, stop) and once with ``lib.run.kernels.KernelQueue`` (the next kernel
started and its imports loaded while the current notebook works). Prints, per setting, the
median seconds per notebook beyond its work (its fixed cost) and the queue's saving.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

import lib.paths
from lib.run import kernels, runner

IMPORTS = ("import lib\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"
           "import seaborn as sns\nimport torch\nimport lib.run.context")
WORK = {"idle": "import time\ntime.sleep({seconds})",
        "compute": "import torch\na = torch.randn(1024, 1024)\nfor _ in range({products}):\n    a @ a"}


def calibrate(seconds: float) -> tuple[int, float]:
    """How many products take about ``seconds`` here, and how long they take (median of 3)."""
    import torch

    a = torch.randn(1024, 1024)
    t0 = time.perf_counter()
    for _ in range(20):
        a @ a
    products = max(1, round(seconds * 20 / (time.perf_counter() - t0)))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(products):
            a @ a
        times.append(time.perf_counter() - t0)
    return products, statistics.median(times)


def probe(folder: Path, kind: str, seconds: float, products: int) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": runner.KERNEL_NAME, "language": "python",
                                 "display_name": runner.KERNEL_NAME}
    nb.cells = [nbformat.v4.new_code_cell("X = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(IMPORTS),
                nbformat.v4.new_code_cell(WORK[kind].format(seconds=seconds,
                                                                   products=products))]
    path = folder / f"probe_{kind}.ipynb"
    nbformat.write(nb, str(path))
    return path


def fixed_costs(path: Path, count: int, seconds: float, queued: bool) -> list[float]:
    """Seconds per notebook beyond its ``seconds`` of work, ``count`` notebooks in a row."""
    costs = []
    queue = kernels.KernelQueue(count if queued else 0, runner.KERNEL_NAME, path.parent,
                                runner.KERNEL_ARGUMENTS)
    with queue:
        for i in range(count):
            t0 = time.perf_counter()
            kernel = queue.take() if queued else None
            runner.papermill_executor(path, path.with_name(f"out_{i}.ipynb"), {"X": i},
                                      path.parent, None, kernel=kernel)
            costs.append(time.perf_counter() - t0 - seconds)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=int, default=5)
    parser.add_argument("--work", type=float, default=6.0, help="seconds of work per notebook")
    args = parser.parse_args()
    lib.paths.set_kernel_environment()
    import papermill  # noqa: F401  (loaded once, outside the timings)

    products, compute_s = calibrate(args.work)
    print(f"{args.notebooks} notebooks in a row, each with {args.work:.1f} s of sleep or "
          f"{products} matrix products ({compute_s:.1f} s alone); seconds per notebook beyond "
          "its work (median [range])")
    with tempfile.TemporaryDirectory(prefix="kernel-queue-") as tmp:
        for kind in WORK:
            path = probe(Path(tmp), kind, args.work, products)
            work = args.work if kind == "idle" else compute_s
            fresh = fixed_costs(path, args.notebooks, work, queued=False)
            queued = fixed_costs(path, args.notebooks, work, queued=True)
            f, q = statistics.median(fresh), statistics.median(queued)
            print(f"{kind:8} fresh kernels {f:5.2f} [{min(fresh):.2f}–{max(fresh):.2f}]   "
                  f"queued {q:5.2f} [{min(queued):.2f}–{max(queued):.2f}]   "
                  f"saved {f - q:5.2f} s per notebook")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
