"""One master seed; named sub-seeds derived by hashing (seed, name)."""
from __future__ import annotations

import hashlib
import os
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def derive_seed(seed: int, name: str) -> int:
    """A stable 31-bit seed for the stream ``name`` under master ``seed``."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; deterministic algorithms where torch has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


@contextmanager
def seeded_rng(seed: int, name: str) -> Iterator[None]:
    """Torch's CPU global RNG forked and seeded with ``derive_seed(seed, name)`` inside the
    block (for kornia's draws), so the caller's own stream is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, name))
        yield
