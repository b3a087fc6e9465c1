"""The C allocator of a run process: freed memory kept for reuse (speed only).

glibc's ``malloc`` serves large blocks (above a threshold it adapts, 128 KB at start) with
fresh pages from the system and gives them back when freed; it also trims the top of its heap
back to the system once enough of it is free. A training or attack step on the CPU allocates
and frees the same activation buffers every step, so each step touched thousands of new pages
(one GMI-style step on 100 codes: 5,000–8,600 page faults, how many depending on what the
process had done before) and spent a fifth of its time in the kernel zeroing them. With the
thresholds raised, freed buffers stay in the heap and the next step reuses them: no page
faults in the steady state (the same step 60 → 46 ms; docs/benchmarks.md).

Results cannot depend on it: where a buffer lives does not change what is computed in it
(torch aligns every CPU tensor to 64 bytes either way). The cpu run's artefacts are
byte-identical with and without it (docs/benchmarks.md). The cost is memory: up to
``TRIM_BYTES`` of freed heap is kept rather than returned, and blocks below ``MMAP_BYTES`` come
from the heap, so the resident size stays near its peak.
"""
from __future__ import annotations

import ctypes
import sys

MMAP_BYTES = 256 * 2**20
"""Blocks at least this large still get their own pages, given back when freed."""
TRIM_BYTES = 2**30
"""Free memory at the top of the heap kept for reuse before any is given back."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3          # glibc's mallopt parameters (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    """The symbols of this process (its C library's among them) when that library is glibc,
    the only one with these settings."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)                        # the allocator this process runs on
        libc.gnu_get_libc_version                       # glibc only (musl has no mallopt)
        return libc
    except (OSError, AttributeError):
        return None


def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process (``MMAP_BYTES``, ``TRIM_BYTES``),
    as ``mallopt`` does; effective for every allocation after the call, in every thread. True
    when set; False where the C library is not glibc (nothing changes there)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
