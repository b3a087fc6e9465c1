"""Example inputs for the audit, made from the committed Fashion-MNIST split.

- ``write_example(folder)``: the smoke split's private set D as members, its reference set
  R as non-members, and per class a few noisy (some shifted) copies of members plus noisy
  test images as "reconstructions", as PNG folders: what ``notebooks/tools/audit.ipynb``
  audits by default (``runs/audit_example/``, git-ignored, written when missing).
- ``tiny_checkpoint(path, data)``: a small perceptual network P trained for seconds, saved in
  the repository's checkpoint format (for tests and the benchmark).

``python -m lib.audit.example [FOLDER]`` writes the example folders (default
``runs/audit_example``); ``make golden`` regenerates the notebook's golden
(``lib.run.runner.golden``).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import paths
from ..artifacts import module_tensors, save_tensors
from ..config import resolve, role_config
from ..data import dataset
from ..data.images import subset
from ..errors import InputError
from ..models import ConvClassifier
from ..seeding import global_seed
from ..training import train_classifier

EXAMPLE = "audit_example"
"""The example's folder under ``runs/``."""
ROLES = ("members", "reconstructions", "nonmembers")
COPIES, SHIFTED, TEST_IMAGES = 4, 2, 4
"""Reconstructions per class: noisy copies of members, noisy copies shifted by a pixel,
noisy test images (non-members of the split)."""
NOISE = 12.0
"""Standard deviation of the added noise, in 8-bit grey levels."""
NOTEBOOK = Path("notebooks") / "tools" / "audit.ipynb"


def example_dir() -> Path:
    """``runs/audit_example`` in the repository (git-ignored)."""
    return paths.repo_root() / "runs" / EXAMPLE


def write_png_folder(root: Path, images: torch.Tensor, labels: Sequence[int],
                     class_names: Sequence[str], names: Sequence[str]) -> None:
    """uint8 images (N, H, W) as ``root/<class name>/<name>.png``."""
    from PIL import Image

    for img, label, name in zip(images, labels, names):
        folder = root / class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.numpy()).save(folder / f"{name}.png")


def _noisy(images: np.ndarray, rng: np.random.Generator, shift: bool) -> np.ndarray:
    x = images.astype(np.float64)
    if shift:
        x = np.roll(x, shift=(1, 1), axis=(1, 2))
    x = x + rng.normal(0.0, NOISE, x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def example_reconstructions(data, split, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Per private class: noisy copies of members (some shifted by a pixel) and noisy test
    images; (uint8 images (N, 28, 28), original labels, names saying what each is)."""
    rng = np.random.default_rng(seed)
    train, test = data.train_images.numpy(), data.test_images.numpy()
    images, labels, names = [], [], []
    for c in split.private_classes:
        members = split.private[data.train_labels.numpy()[split.private] == c]
        picked = rng.choice(members, COPIES + SHIFTED, replace=False)
        tests = rng.choice(split.test[data.test_labels.numpy()[split.test] == c], TEST_IMAGES,
                           replace=False)
        images += [_noisy(train[picked[:COPIES]], rng, False),
                   _noisy(train[picked[COPIES:]], rng, True), _noisy(test[tests], rng, False)]
        labels += [c] * (COPIES + SHIFTED + TEST_IMAGES)
        names += ([f"copy-of-{i}" for i in picked[:COPIES]]
                  + [f"shifted-copy-of-{i}" for i in picked[COPIES:]]
                  + [f"test-{i}" for i in tests])
    return torch.from_numpy(np.concatenate(images)), np.array(labels), names


def write_example(folder: str | Path | None = None, seed: int = 0) -> Path:
    """The example folders (members = D, nonmembers = R of the smoke split, reconstructions as
    in ``example_reconstructions``) in ``folder``, written whole or not at all."""
    folder = Path(folder) if folder is not None else example_dir()
    if folder.exists():
        raise InputError(f"{folder} exists; remove it to write the example folders afresh")
    cfg = resolve("smoke")
    data, split = dataset.load(cfg)
    names = [dataset.class_slug(cfg, c) for c in range(len(data.class_names))]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        for role, idx in (("members", split.private), ("nonmembers", split.reference)):
            write_png_folder(staging / role, data.train_images[idx], data.train_labels[idx].numpy(),
                             names, [f"train-{i}" for i in idx])
        images, labels, files = example_reconstructions(data, split, seed)
        write_png_folder(staging / "reconstructions", images, labels, names, files)
        staging.chmod(0o755)
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def notebook_inputs(members: str, reconstructions: str, nonmembers: str,
                    distance: str) -> tuple[Path, Path, Path | None, str]:
    """The notebook's parameters as the audit's inputs: relative paths (folders and a
    ``perceptual:`` checkpoint) from the repository root, "" non-members → None. The example
    folders are written first when they are asked for and missing."""
    root = paths.repo_root()
    fix = lambda f: Path(f) if Path(f).is_absolute() else root / f
    folders = [fix(f) if f else None for f in (members, reconstructions, nonmembers)]
    example = example_dir()
    if any(p is not None and example in (p, *p.parents) for p in folders) and not example.exists():
        write_example(example)
    if distance.startswith("perceptual:"):
        distance = f"perceptual:{fix(distance[len('perceptual:'):])}"
    return folders[0], folders[1], folders[2], distance


def tiny_checkpoint(path: str | Path, data, n: int = 1000, epochs: int = 1, seed: int = 0,
                    width: int = 16) -> Path:
    """A small perceptual network P (``mcnn``, 10 classes, 32×32 Fashion-MNIST input) trained
    on the first ``n`` train images, saved like ``lib.stages.classifiers.require_classifier``
    saves one (``model.*`` tensors, ``train_indices``, metadata with ``arch`` and ``config``)."""
    cfg = resolve("smoke", {"perc_train_limit": n, "perc_epochs": epochs, "perc_width": width})
    idx = np.arange(n)
    images, labels = subset(data, idx, train=True, size=cfg["image_size"])
    with global_seed(seed):
        model = ConvClassifier("mcnn", 10, width=width, in_channels=1)
    history = train_classifier(model, images, labels, epochs=epochs, lr=cfg["perc_lr"],
                               batch_size=cfg["batch_size"], seed=seed, augment=False,
                               progress=False, desc="tiny P")
    tensors = module_tensors({"model": model})
    tensors["train_indices"] = torch.as_tensor(idx, dtype=torch.long)
    meta = {"arch": model.arch_spec, "config": role_config("perceptual", cfg),
            "role": "perceptual", "seed": seed, "history": history, "classes": list(range(10))}
    return save_tensors(Path(path), tensors, meta)


if __name__ == "__main__":
    print(f"example folders written: {write_example(sys.argv[1] if len(sys.argv) > 1 else None)}")
