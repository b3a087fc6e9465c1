"""The audit's argument checks that need no heavy import: limits, the output folder.

``ddcs-audit`` runs these before importing torch, so a wrong argument is one line within a
second or two; ``lib.audit.api.audit`` runs the same checks for callers of the API.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError

MAX_SIZE = 2048
"""The largest ``--size`` (pixels per side)."""
MAX_PERMUTATIONS = 10 ** 6
"""The most permutations of the membership test."""
DEFAULT_MAX_PIXELS = 64 * 10 ** 6
"""The largest image read, in pixels (``--max-pixels``); a larger one is unusable."""


def check_limits(size: int | None, n_permutations: int, max_pixels: int, memory_mb: int,
                 batch_size: int = 256) -> None:
    """Raise ``InputError`` naming the argument, its value and what is allowed."""
    if size is not None and not 1 <= size <= MAX_SIZE:
        raise InputError(f"--size {size} is outside 1..{MAX_SIZE} pixels per side; pass a "
                         "smaller size (the pipeline's images are 32 or 112)")
    if not 1 <= n_permutations <= MAX_PERMUTATIONS:
        raise InputError(f"--permutations {n_permutations} is outside 1..{MAX_PERMUTATIONS:,}; "
                         "1,000 resolve p-values down to 0.001")
    if max_pixels < 1:
        raise InputError(f"--max-pixels {max_pixels} must be ≥ 1 (default "
                         f"{DEFAULT_MAX_PIXELS:,}, 64 Mpx)")
    if memory_mb < 1 or batch_size < 1:
        raise InputError(f"--memory-mb ({memory_mb}) and the batch size ({batch_size}) must be ≥ 1")


def check_out_folder(folder: str | Path) -> Path:
    """``folder`` as a Path, unless it exists and is a file or a folder that is not empty."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the output folder {folder} is a file; pass a new folder (nothing was "
                         "written)")
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError(f"the output folder {folder} exists and is not empty; pass a new "
                         "folder (nothing was written)")
    return folder


def check_out_apart(out: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """Refuse an output folder equal to, inside or containing an input folder (links
    resolved): the next audit of that folder would score the report's images as inputs."""
    target = Path(os.path.realpath(out))
    for folder in inputs:
        if folder is None:
            continue
        source = Path(os.path.realpath(folder))
        if target == source or source in target.parents or target in source.parents:
            relation = ("is" if target == source else
                        "is inside" if source in target.parents else "contains")
            raise InputError(f"the output folder {out} {relation} the input folder {folder}; "
                             "write the audit outside every input folder (nothing was written)")
