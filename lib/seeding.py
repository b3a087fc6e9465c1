"""One master seed; named sub-seeds derived by hashing (seed, name).

Library functions never leave torch's global RNG reseeded: code that needs it (weight
initialisation, kornia's random augmentations) runs inside ``global_seed`` or ``seeded_rng``,
which fork the global CPU RNG and restore it afterwards. Everything else draws from explicit
``torch.Generator`` / ``numpy.random.Generator`` objects. Only ``seed_everything`` (the
notebooks' setup) seeds the global RNGs for the notebook's own cells.
"""
from __future__ import annotations

import hashlib
import random
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from . import paths


def derive_seed(seed: int, name: str) -> int:
    """A stable 31-bit seed for the stream ``name`` under master ``seed``."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; deterministic algorithms where torch has them (the
    notebooks' setup calls it; library functions never do)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    paths.set_deterministic_cublas()
    use_deterministic_algorithms(deterministic)


def use_deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)`` without loading torch's
    compiler: torch's function imports ``torch._inductor`` (2 s, in every notebook) only to copy
    the flag into the compiler's config. The flag the eager kernels read is set the same way;
    the compiler's copy too when it is already loaded (nothing in this repository compiles)."""
    compiler = sys.modules.get("torch._inductor.config")
    if compiler is not None:
        compiler.deterministic = mode
    torch._C._set_deterministic_algorithms(mode, warn_only=True)


def flush_denormals() -> None:
    """Treat subnormal floats (below about 1.2e-38 in float32) as zero on the CPU (FTZ/DAZ).

    Speed only: x86 CPUs compute on subnormals many times slower, and fine-tuned generators
    make them (the GMI-style attack on an `entropy` generator took 114 s with them and 93 s
    without, the same latents bit for bit). The cpu run's results are byte-identical with and
    without it (docs/benchmarks.md). Threads inherit the setting from the thread that creates
    them, so it reaches torch's worker threads only when called before torch's first parallel
    operation in the process: the notebooks' setup calls it first."""
    torch.set_flush_denormal(True)


@contextmanager
def global_seed(seed: int) -> Iterator[None]:
    """Torch's CPU global RNG forked and seeded with ``seed`` inside the block (for weight
    initialisation and kornia's draws); the caller's own stream is restored on exit."""
    with torch.random.fork_rng(devices=[]):
        seed_torch(seed)
        yield


def seed_torch(seed: int) -> None:
    """``torch.manual_seed(seed)`` without its cost where no accelerator is in use: with CUDA
    not initialised it queues a seeding of every device type (cuda, mtia, xpu), each with a
    formatted stack trace (about 1 ms per call, paid at every seeded view of an attack); only
    the CPU generator is seeded then, which gives the same CPU stream. Once CUDA is
    initialised it is ``torch.manual_seed`` itself."""
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(int(seed))


@contextmanager
def seeded_rng(seed: int, name: str) -> Iterator[None]:
    """``global_seed(derive_seed(seed, name))``: a named stream of the master ``seed``."""
    with global_seed(derive_seed(seed, name)):
        yield


def class_seed(seed: int, label: int) -> int:
    """The seed of class ``label``'s own stream under ``seed``: an attack draws each class's
    codes and views from it, so attacking a subset of the classes (one process's share)
    gives each class the draws it gets in the whole attack."""
    return derive_seed(seed, f"class{label}")


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The seed of process ``rank`` of ``world_size`` in a data-parallel stage: ``seed``
    itself in one process (so a one-process run is unchanged), else a stream of its own."""
    return seed if world_size == 1 else derive_seed(seed, f"rank{rank}/{world_size}")
