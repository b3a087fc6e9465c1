"""A notebook figure: saved and shown by drawing it twice, against shown from the saved PNG.

Every figure of a run is saved as a PNG (``lib.plotting.savefig``, 120 dpi) and shown in its
notebook. Jupyter's inline backend shows a figure by drawing it again into a PNG at the screen
resolution (IPython's ``print_figure``, 90 dpi, tight bounding box); ``lib.plotting.show_saved``
shows the saved file instead. This times both on the figure types the notebooks draw (a
six-panel line figure, an image grid of 8 rows × 20 images) and prints seconds per figure and
the ratio. The saved file is the same either way. Run: .venv/bin/python benchmarks/figure_display.py
"""
from __future__ import annotations

import statistics
import tempfile
import time
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib import plotting  # noqa: E402

REPEATS = 5


def line_figure() -> plt.Figure:
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    rng = np.random.default_rng(0)
    for i, ax in enumerate(axes.flat):
        for j in range(3):
            ax.plot(rng.standard_normal(300).cumsum(), label=f"series {j}")
        ax.set_title(f"panel {i}"), ax.set_xlabel("step"), ax.legend()
    return fig


def grid_figure() -> plt.Figure:
    gen = torch.Generator().manual_seed(0)
    return plotting.image_grid([torch.rand(20, 1, 32, 32, generator=gen) * 2 - 1
                                for _ in range(8)], [f"row {i}" for i in range(8)], title="grid")


def redraw(fig: plt.Figure) -> None:
    """The inline backend's way: the figure drawn again for the notebook."""
    fig.canvas.print_figure(BytesIO(), format="png", bbox_inches="tight", dpi=fig.dpi)


def main() -> None:
    plotting.set_theme()
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("six-panel line figure", line_figure),
                           ("image grid 8 × 20", grid_figure)):
            fig = make()
            path = Path(tmp) / "figure.png"
            times = {"save": [], "redraw": [], "from file": []}
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                fig.savefig(path, format="png", bbox_inches="tight")
                t1 = time.perf_counter()
                redraw(fig)
                t2 = time.perf_counter()
                plotting.saved_image(fig, path)   # show_saved's way, less the display call
                t3 = time.perf_counter()
                times["save"].append(t1 - t0)
                times["redraw"].append(t2 - t1)
                times["from file"].append(t3 - t2)
            plt.close(fig)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"{name}: save {med['save']:.3f} s; shown by redrawing {med['redraw']:.3f} s, "
                  f"from the saved file {med['from file']:.4f} s (median of {REPEATS}); "
                  f"save + show {med['save'] + med['redraw']:.3f} → "
                  f"{med['save'] + med['from file']:.3f} s, "
                  f"{(med['save'] + med['redraw']) / (med['save'] + med['from file']):.2f}×")


if __name__ == "__main__":
    main()
