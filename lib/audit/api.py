"""The audit's API: ``audit(...)`` and its result (see the package's docstring)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import matplotlib.figure
import numpy as np
import pandas as pd

from .. import paths
from ..errors import InputError
from . import distances, report
from .distances import Distance
from .arguments import DEFAULT_MAX_PIXELS, check_limits
from .images import (MODES, ImageSet, SizeCheck, Survey, as_signed, available_bytes,
                     estimate_bytes, from_tensors, read_survey, survey, to_channels,
                     unusable_message)
from .scoring import Scores, Timings, score

__all__ = ["AuditResult", "Distance", "ImageSet", "audit", "load_sets"]

Source = Union[str, Path, ImageSet, tuple]
"""A folder, a ready ``ImageSet``, or ``(images, labels)``."""


@dataclass
class AuditResult:
    """The audit: ``table`` (one row per member, most exposed first), ``summary`` (the
    numbers of ``summary.json``), the image sets and the per-sample scores."""
    table: pd.DataFrame
    summary: dict[str, Any]
    members: ImageSet
    reconstructions: ImageSet
    nonmembers: ImageSet | None
    scores: Scores

    @property
    def timings(self) -> dict[str, float]:
        """Wall seconds per phase: reading, embedding, distances, (membership test), report."""
        return dict(self.scores.timings)

    def gallery(self, k: int = 8) -> matplotlib.figure.Figure:
        """The ``k`` most exposed members above their nearest reconstructions."""
        return report.gallery_figure(self.members, self.reconstructions, self.table,
                                     self.scores, k)

    def score_figure(self) -> matplotlib.figure.Figure:
        return report.score_figure(self.scores)

    def class_figure(self) -> matplotlib.figure.Figure:
        return report.class_figure(self.summary)

    def membership_figure(self) -> matplotlib.figure.Figure:
        return report.membership_figure(self.scores)

    def report(self) -> str:
        """The text of ``report.md``."""
        return report.report_markdown(self.summary, self.table)

    def save(self, folder: str | Path) -> Path:
        """Write audit.csv, summary.json, most_exposed.png and report.md into ``folder``
        (refused when it exists and is not empty; all files or none)."""
        import matplotlib.pyplot as plt

        with self.scores.timings("report"):
            fig = self.gallery()
            try:
                return report.save_outputs(folder, self.table, self.summary, fig)
            finally:
                plt.close(fig)


def _load(source: Source, role: str, classes: list[str] | None, mode: str | None,
          size: int | None, sizes: SizeCheck, progress: bool, found: Survey | None = None,
          skip_unusable: bool = False) -> ImageSet:
    """One set from a folder (its ``survey``), an ``ImageSet`` or ``(images, labels)``, in
    ``mode``."""
    if found is not None:
        return read_survey(found, mode, size, sizes, progress, skip_unusable)
    if isinstance(source, ImageSet):
        images, labels = source.images, np.asarray(source.classes)[source.labels]
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        images, labels = source
    else:
        raise InputError(f"{role}: pass a folder, an ImageSet or (images, labels); got "
                         f"{type(source).__name__}")
    out = from_tensors(images, labels, role, classes, size)
    if isinstance(source, ImageSet):                  # keep where its images came from
        out = dataclasses.replace(source, images=out.images, labels=out.labels,
                                  classes=out.classes)
    if mode is not None and out.mode != mode:
        out = dataclasses.replace(out, images=to_channels(as_signed(out.images), MODES[mode]))
    return out


def _survey(source: Source | None, role: str, classes: list[str] | None,
            max_pixels: int) -> Survey | None:
    if isinstance(source, (str, Path)):
        return survey(source, role, classes, max_pixels)
    return None


def load_sets(members: Source, reconstructions: Source, nonmembers: Source | None = None,
              channels: int | None = None, size: int | None = None, progress: bool = False,
              skip_unusable: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
              memory_mb: int = 1024) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """The three sets with the members' classes, in one mode (``channels``, else the
    members'), of one size (``size`` × ``size`` when given), checked: every member class has
    reconstructions.

    Folders are surveyed first (headers only): their unusable entries are refused, listed
    by reason, unless ``skip_unusable`` (then each set's ``unusable`` lists them), and the
    reading's memory, estimated from the headers, must fit in the memory available."""
    mode = {1: "L", 3: "RGB"}.get(channels) if channels else None
    sizes = SizeCheck()
    fm = _survey(members, "members", None, max_pixels)
    m = None if fm is not None else _load(members, "members", None, mode, size, sizes, progress)
    classes = fm.classes if fm is not None else m.classes
    fr = _survey(reconstructions, "reconstructions", classes, max_pixels)
    fn = _survey(nonmembers, "nonmembers", classes, max_pixels) if nonmembers is not None else None
    folders = [f for f in (fm, fr, fn) if f is not None]
    unusable = [u for f in folders for u in f.unusable]
    if unusable and not skip_unusable:
        raise InputError(unusable_message(unusable))
    need, have = estimate_bytes(folders, size, channels or 3, memory_mb), available_bytes()
    if have is not None and need > have:
        raise InputError(f"reading these images would need about {need / 2**30:.1f} GiB (their "
                         f"headers: {sum(len(f.files) for f in folders):,} images) but "
                         f"{have / 2**30:.1f} GiB is available; pass a smaller --size, a lower "
                         "--max-pixels, or fewer images")
    if m is None:
        m = _load(members, "members", None, mode, size, sizes, progress, fm, skip_unusable)
    r = _load(reconstructions, "reconstructions", m.classes, m.mode, size, sizes, progress, fr,
              skip_unusable)
    n = (_load(nonmembers, "nonmembers", m.classes, m.mode, size, sizes, progress, fn,
               skip_unusable) if nonmembers is not None else None)
    for role, x in (("reconstructions", r), ("nonmembers", n)):
        if x is not None and x.size != m.size:
            raise InputError(f"the {role} are {x.size[1]}×{x.size[0]} but the members are "
                             f"{m.size[1]}×{m.size[0]}; pass size=N (--size N) to resize all "
                             "to N×N")
    missing = [name for name, count in zip(m.classes, r.counts()) if count == 0]
    if missing:
        where = f" (no folder {r.root / missing[0]})" if r.root is not None else ""
        raise InputError(f"the member class {missing[0]!r} has no reconstructions{where}; every "
                         "member class needs reconstructions: add them, or leave the class's "
                         "members out")
    return m, r, n


def audit(members: Source, reconstructions: Source, nonmembers: Source | None = None,
          distance: str | Distance = "lpips-vgg", size: int | None = None, *,
          n_permutations: int = 1000, seed: int = 0, batch_size: int = 256,
          memory_mb: int = 1024, progress: bool | None = None, skip_unusable: bool = False,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> AuditResult:
    """DDCS of ``reconstructions`` against ``members`` under ``distance``, per member and
    per class, and the membership test against ``nonmembers`` when given.

    ``distance``: "lpips-vgg", "pixel", "perceptual:<checkpoint>" or a ``Distance``.
    ``size``: resize every image to size × size first (bilinear, antialiased); without it all
    images must have one size. ``memory_mb``: the bound on the embeddings held at once.
    ``seed``: the membership test's permutations and equal-size subsample.
    ``skip_unusable``: audit the usable images of folders holding unusable entries
    (unreadable, not an image, broken or outside links, above ``max_pixels``), listed in
    the summary; without it they are refused. Limits: ``lib.audit.arguments``.
    """
    check_limits(size, n_permutations, max_pixels, memory_mb, batch_size)
    progress = paths.progress_enabled(progress)
    timings = Timings()
    dist = distances.resolve(distance, batch_size)
    with timings("reading"):
        m, r, n = load_sets(members, reconstructions, nonmembers, dist.channels, size, progress,
                            skip_unusable, max_pixels, memory_mb)
    scores = score(m, r, n, dist, memory_mb << 20, n_permutations, seed, progress, timings)
    with timings("report"):
        frame = report.table(m, r, scores)
        summary = report.summary(m, r, n, scores, dist.name, dist.note,
                                 dist.preprocessing(m.images.shape[1], m.size))
    return AuditResult(frame, summary, m, r, n, scores)
