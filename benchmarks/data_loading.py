"""Data path: our in-memory IDX tensors vs torchvision's per-image PIL dataset.

Times (1) parsing + verifying the four gzip IDX files into tensors and (2) one pass over the
60,000 training images in batches of 128, model-ready (padded to 32×32, in [-1, 1]), against
torchvision.datasets.FashionMNIST with ToTensor/Pad/Normalize through a DataLoader, which is
what most MI code does. Prints both and the ratio. Run: .venv/bin/python benchmarks/data_loading.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torchvision
import torchvision.transforms as T

import lib.data.fashion_mnist as D
from lib.data.images import to_model_input


def ours() -> tuple[float, float]:
    t0 = time.perf_counter()
    data = D._load.__wrapped__(str(D.find_source_dir()), True)  # uncached: parse + sha256
    t1 = time.perf_counter()
    total = 0.0
    for start in range(0, len(data.train_images), 128):
        x = to_model_input(data.train_images[start:start + 128])
        total += float(x[0, 0, 0, 0])
    return t1 - t0, time.perf_counter() - t1


def torchvision_path() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        src = D.find_source_dir()
        for stem in D.FILES.values():
            (raw / stem).write_bytes(D.read_idx_bytes(D._file_in(src, stem)))
        t0 = time.perf_counter()
        tf = T.Compose([T.ToTensor(), T.Pad(2), T.Normalize((0.5,), (0.5,))])
        ds = torchvision.datasets.FashionMNIST(tmp, train=True, transform=tf, download=False)
        t1 = time.perf_counter()
        loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=False, num_workers=0)
        total = 0.0
        for x, _ in loader:
            total += float(x[0, 0, 0, 0])
        return t1 - t0, time.perf_counter() - t1


if __name__ == "__main__":
    torch.set_num_threads(2)
    load_o, epoch_o = ours()
    load_t, epoch_t = torchvision_path()
    print(f"{'':34s} {'load (s)':>9s} {'epoch (s)':>10s}")
    print(f"{'ours: IDX → tensors (+ sha256)':34s} {load_o:9.2f} {epoch_o:10.2f}")
    print(f"{'torchvision dataset + DataLoader':34s} {load_t:9.2f} {epoch_t:10.2f}")
    print(f"epoch speed-up of the in-memory path: {epoch_t / epoch_o:.1f}×")
