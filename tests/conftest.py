"""Shared fixtures: a temporary runs folder, the real data (cached), tiny IDX files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch) -> Path:
    """Point ``lib.paths.runs_dir()`` at a temporary folder."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("DDCS_MI_RUNS", str(runs))
    return runs


@pytest.fixture(scope="session")
def fmnist():
    from lib.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def tiny_idx_dir(tmp_path) -> Path:
    """A folder with four small, valid IDX .gz files (not Fashion-MNIST: wrong sha256)."""
    from lib.data.fashion_mnist import FILES

    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    folder.mkdir()
    arrays = {"train_images": rng.integers(0, 256, (20, 28, 28)),
              "train_labels": rng.integers(0, 10, 20),
              "test_images": rng.integers(0, 256, (10, 28, 28)),
              "test_labels": rng.integers(0, 10, 10)}
    for key, stem in FILES.items():
        with gzip.open(folder / f"{stem}.gz", "wb") as fh:
            fh.write(idx_bytes(arrays[key].astype(np.uint8)))
    return folder
