"""Figures: one theme, one save helper with stable ids, image grids."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .artifacts import atomic_path


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 120, "image.cmap": "gray"})


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""Jupyter's inline backend: a figure shown there is a PNG in the notebook's output."""


def png_width(png: bytes) -> int:
    """The pixel width of a PNG (its IHDR chunk, bytes 16–19)."""
    return int.from_bytes(png[16:20], "big")


def saved_image(fig: matplotlib.figure.Figure, path: Path):
    """The PNG saved from ``fig`` at ``path``, as an IPython image shown at the size the figure
    has on screen (``figure.dpi``, where the file has ``savefig.dpi``)."""
    from IPython.display import Image

    png = Path(path).read_bytes()
    saved_dpi = plt.rcParams["savefig.dpi"]
    scale = 1.0 if saved_dpi == "figure" else fig.dpi / float(saved_dpi)
    return Image(data=png, format="png", width=round(png_width(png) * scale))


def show_saved(fig: matplotlib.figure.Figure, path: Path) -> None:
    """Show ``fig``. Under Jupyter's inline backend the notebook shows the PNG just saved at
    ``path`` (``saved_image``) and closes the figure, rather than drawing it a second time;
    anywhere else ``plt.show()``."""
    if matplotlib.get_backend() != INLINE_BACKEND:
        plt.show()
        return
    from IPython.display import display

    display(saved_image(fig, path))
    plt.close(fig)


def savefig(fig: matplotlib.figure.Figure, figures_dir: Path, fig_id: str,
            show: bool = True) -> Path:
    """Save ``fig`` as ``<figures_dir>/<fig_id>.png`` (stable name, atomically), then show it
    (``show_saved``) or only close it."""
    path = Path(figures_dir) / f"{fig_id}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    if show:
        show_saved(fig, path)
    else:
        plt.close(fig)
    return path


def to_display(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → for imshow in [0, 1]: (N, H, W) for grey images (C = 1),
    (N, H, W, 3) for colour ones."""
    x = images.detach().cpu().clamp(-1, 1).add(1).div(2)
    return x[:, 0].numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).numpy()


def tile_row(pics: np.ndarray, n_cols: int, gap: int = 3) -> np.ndarray:
    """Images (``to_display``'s output) side by side, ``gap`` white pixels apart, padded with
    white to ``n_cols`` images: one picture per row, so a grid needs one axes per row."""
    height, width = pics.shape[1:3]
    tiled = np.ones((height, n_cols * (width + gap) - gap) + pics.shape[3:], dtype=pics.dtype)
    for j, pic in enumerate(pics):
        tiled[:, j * (width + gap): j * (width + gap) + width] = pic
    return tiled


def image_grid(rows: list[torch.Tensor], row_labels: list[str] | None = None,
               title: str | None = None, scale: float = 0.9) -> matplotlib.figure.Figure:
    """A figure with one row of images per tensor in ``rows`` (each (N, C, H, W), [-1, 1];
    grey or colour)."""
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(scale * n_cols, scale * len(rows) + 0.4),
                             squeeze=False)
    for i, row in enumerate(rows):
        ax = axes[i, 0]
        ax.imshow(tile_row(to_display(row), n_cols), vmin=0, vmax=1, cmap="gray")
        ax.set_xticks([]); ax.set_yticks([]); ax.grid(False)
        for side in ax.spines.values():
            side.set_visible(False)
        if row_labels:
            ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gap_figure(attacks: list[dict], controls: list[dict], title: str = "",
               label: str = "DDCS_best(D) − DDCS_best(R), d_P") -> matplotlib.figure.Figure:
    """The headline figure: per attack × mode the mean D − R gap over seeds with its 95%
    interval (one seed: a dot without one) and the seeds as dots; the controls beside it on
    their own axis, so that neither sets the other's scale. Each row is a dict with
    ``source``, ``values``, ``mean``, ``low``, ``high`` (``lib.run.summary.source_intervals``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": [max(len(attacks), 1),
                                                           max(len(controls), 1)]})
    for ax, part, what in ((axes[0, 0], attacks, "attack / generator mode"),
                           (axes[0, 1], controls, "controls (no attack)")):
        for x, row in enumerate(part):
            mean, low, high = row["mean"], row["low"], row["high"]
            if not (np.isnan(low) or np.isnan(high)):
                ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="C0",
                            capsize=4, lw=1.5)
            else:
                ax.plot(x, mean, "o", color="C0")
            ax.plot([x] * len(row["values"]), row["values"], ".", color="k", alpha=0.5, ms=5)
        ax.axhline(0, color="k", lw=1, ls="--")
        ax.set_xticks(range(len(part)), [row["source"] for row in part], rotation=30, ha="right")
        ax.set(xlabel=what, ylabel=label if ax is axes[0, 0] else "",
               xlim=(-0.6, max(len(part), 1) - 0.4))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def paired_differences_figure(rows, title: str = "") -> matplotlib.figure.Figure:
    """One panel per metric: each comparison's per-seed paired differences (dots) and their
    mean with its 95% paired t interval (the claims' interval; one seed: none); dashed: 0.
    ``rows``: ``lib.claims.per_seed_differences``."""
    metrics = list(dict.fromkeys(rows["metric"]))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(4.2 * max(len(metrics), 1), 3.8),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = rows[rows["metric"] == metric]
        comparisons = list(dict.fromkeys(part["comparison"]))
        for x, comparison in enumerate(comparisons):
            one = part[part["comparison"] == comparison]
            mean, low, high = one["mean"].iloc[0], one["low"].iloc[0], one["high"].iloc[0]
            ax.plot([x] * len(one), one["difference"], ".", color="k", alpha=0.6, ms=6)
            if not (np.isnan(low) or np.isnan(high)):
                ax.errorbar(x + 0.15, mean, yerr=[[mean - low], [high - mean]], fmt="o",
                            color="C0", capsize=4, lw=1.5)
        ax.axhline(0, color="k", lw=1, ls="--")
        ax.set_xticks(range(len(comparisons)), comparisons, rotation=30, ha="right", fontsize=8)
        ax.set(title=metric, xlim=(-0.6, len(comparisons) - 0.4))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


SWEEP_METRIC_LABELS = {"ddcs_best_d_P": "DDCS_best (d_P), higher: more of D",
                       "coverage": "coverage (E), higher: more of D",
                       "fid_e": "FID-E to D, lower: closer"}


def sweep_attack_figure(table, title: str = "") -> matplotlib.figure.Figure:
    """One panel per C2 metric: its value for the attack on each mode's generator against λ_H
    (log scale), crosses where the run collapsed, a ring at the chosen λ_H, dashed: the attack
    on `vanilla`. ``table``: ``lib.stages.transfer.sweep_attack_table``."""
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(4.4 * max(len(metrics), 1), 3.6),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = table[table["metric"] == metric]
        for i, (mode, rows) in enumerate(part.groupby("mode", sort=False)):
            ax.plot(rows.weight, rows.value, marker="o", color=f"C{i + 1}", label=mode)
            bad, chosen = rows[rows.collapsed], rows[rows.chosen]
            ax.scatter(bad.weight, bad.value, marker="x", s=70, color="k", zorder=3)
            ax.scatter(chosen.weight, chosen.value, s=160, facecolors="none",
                       edgecolors=f"C{i + 1}", zorder=3)
        vanilla = part["vanilla"].dropna()
        if len(vanilla):
            ax.axhline(float(vanilla.iloc[0]), color="C0", ls="--", lw=1, label="vanilla")
        ax.set(xscale="log", xlabel="λ_H (authors' units)",
               ylabel=SWEEP_METRIC_LABELS.get(metric, metric))
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
