"""Image grids: one picture per row, every image in its place, white between and after."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from lib import plotting


def test_tile_row_places_every_image_with_white_gaps_and_padding():
    pics = np.stack([np.full((4, 5), v, dtype=np.float32) for v in (0.1, 0.2)])
    row = plotting.tile_row(pics, n_cols=3, gap=2)
    assert row.shape == (4, 3 * 5 + 2 * 2)
    assert np.all(row[:, 0:5] == np.float32(0.1)) and np.all(row[:, 7:12] == np.float32(0.2))
    assert np.all(row[:, 5:7] == 1) and np.all(row[:, 12:] == 1)    # gaps and the empty slot


def test_tile_row_keeps_colour_channels():
    pics = np.zeros((2, 3, 3, 3), dtype=np.float32)
    assert plotting.tile_row(pics, n_cols=2, gap=1).shape == (3, 7, 3)


def test_image_grid_draws_one_row_per_tensor_with_its_label():
    rows = [torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(2, 1, 8, 8) * 2 - 1]
    fig = plotting.image_grid(rows, ["first", "second"], title="t")
    axes = fig.get_axes()
    assert len(axes) == 2 and [ax.get_ylabel() for ax in axes] == ["first", "second"]
    shown = axes[1].images[0].get_array()
    assert shown.shape == (8, 4 * 8 + 3 * 3)                        # padded to the widest row
    expected = rows[1][1, 0].add(1).div(2).numpy()
    assert np.allclose(shown[:, 11:19], expected)
    plt.close(fig)


def _line_figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4, 2), dpi=90)
    ax.plot([0, 1, 2], [1, 0, 1])
    return fig


def test_savefig_under_the_inline_backend_shows_the_saved_png_at_screen_size(tmp_path,
                                                                             monkeypatch):
    shown = []
    monkeypatch.setattr(plotting.matplotlib, "get_backend", lambda: plotting.INLINE_BACKEND)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setitem(plt.rcParams, "savefig.dpi", 120)
    fig = _line_figure()
    path = plotting.savefig(fig, tmp_path, "line")
    png = path.read_bytes()
    assert len(shown) == 1 and shown[0].data == png                  # the file, not a redraw
    assert shown[0].width == round(plotting.png_width(png) * 90 / 120)
    assert not plt.fignum_exists(fig.number)                         # closed: not shown twice


def test_savefig_elsewhere_shows_with_matplotlib_and_saves_the_same_bytes(tmp_path,
                                                                          monkeypatch):
    calls = []
    monkeypatch.setattr(plotting.plt, "show", lambda: calls.append("show"))
    monkeypatch.setitem(plt.rcParams, "savefig.dpi", 120)
    fig = _line_figure()
    path = plotting.savefig(fig, tmp_path, "line")
    assert calls == ["show"] and plt.fignum_exists(fig.number)
    again = plotting.savefig(fig, tmp_path / "again", "line", show=False)
    assert again.read_bytes() == path.read_bytes() and not plt.fignum_exists(fig.number)


def test_png_width_reads_the_header():
    png = bytes(16) + (640).to_bytes(4, "big") + (480).to_bytes(4, "big")
    assert plotting.png_width(png) == 640
