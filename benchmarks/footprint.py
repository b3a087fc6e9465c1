"""What a benchmark stage holds and writes: peak host memory (Linux's VmHWM, reset before the
stage), peak GPU memory (torch's allocator) and the bytes a folder gained."""
from __future__ import annotations

from pathlib import Path

import torch


def rss_mb(field: str = "VmRSS") -> float:
    """VmRSS or VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} is not in /proc/self/status (Linux only)")


def reset_peak() -> None:
    """Reset VmHWM to the current resident memory (Linux ≥ 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def folder_mb(folder: Path) -> float:
    """The size of every file under ``folder`` in MB (0 when it does not exist)."""
    folder = Path(folder)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6 if folder.exists() else 0.0


class Footprint:
    """``with Footprint(device, folder) as f: ...``; then ``f.figures()``: the host memory the
    block added at its peak, the GPU's peak allocation (None off CUDA) and what ``folder``
    gained on disk, in MB."""

    def __init__(self, device: str, folder: Path | None = None) -> None:
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.folder = folder

    def __enter__(self) -> "Footprint":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.disk_before = folder_mb(self.folder) if self.folder else 0.0
        reset_peak()                     # VmHWM := the resident memory now, then only grows
        self.rss_before = rss_mb("VmHWM")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.host = rss_mb("VmHWM") - self.rss_before
        self.gpu = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None
        self.disk = (folder_mb(self.folder) - self.disk_before) if self.folder else 0.0

    def figures(self) -> dict:
        return {"host_peak_mb": round(self.host, 1),
                "gpu_peak_mb": None if self.gpu is None else round(self.gpu, 1),
                "disk_mb": round(self.disk, 2)}
