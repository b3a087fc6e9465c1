"""Model-ready images and labels, whatever the data set: [-1, 1] float tensors of the
profile's size, original labels, and their mapping into a model's label space."""
from __future__ import annotations

import math
import tempfile
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

N_FASHION_CLASSES = 10


def to_model_input(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, size, size) in [-1, 1], padded with background.

    Colour images, uint8 (N, 3, H, W) (the face data), are scaled to [-1, 1] and resized
    (bilinear, antialiased) to size × size when H ≠ size."""
    if images.dim() == 4:
        x = images.to(torch.float32).div(127.5).sub(1.0)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x
    x = images.to(torch.float32).div(127.5).sub(1.0).unsqueeze(1)
    pad = size - x.shape[-1]
    if pad < 0 or pad % 2:
        raise InputError(f"cannot pad {tuple(x.shape[-2:])} images to {size}×{size}")
    return F.pad(x, (pad // 2,) * 4, value=-1.0)


def subset(data, indices: np.ndarray, train: bool = True,
           size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-ready images and original labels of ``indices`` in one split (``size``: the
    data's model size when None: 32 for Fashion-MNIST, the profile's for faces)."""
    size = data.image_size if size is None else size
    images = data.train_images if train else data.test_images
    labels = data.train_labels if train else data.test_labels
    idx = torch.from_numpy(np.array(indices, dtype=np.int64))  # a copy: inputs may be read-only
    return to_model_input(images[idx], size), labels[idx].clone()


def to_private_labels(labels: torch.Tensor, private_classes) -> torch.Tensor:
    """Map original labels of private classes to 0..K-1 (the target's label space)."""
    classes = torch.as_tensor(list(private_classes), dtype=torch.long)
    if (labels < 0).any():
        raise InputError("labels outside the private classes cannot be mapped")
    size = max(N_FASHION_CLASSES, int(labels.max()) + 1 if labels.numel() else 0,
               int(classes.max()) + 1 if classes.numel() else 0)
    lookup = torch.full((size,), -1, dtype=torch.long)
    lookup[classes] = torch.arange(len(classes))
    out = lookup[labels]
    if (out < 0).any():
        raise InputError("labels outside the private classes cannot be mapped")
    return out


def role_indices(data, split) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    """Each role of a split: (indices, the labels tensor they index), in display order."""
    return {"D (private, T trains on it)": (split.private, data.train_labels),
            "R (non-member reference)": (split.reference, data.train_labels),
            "public (attacker)": (split.public, data.train_labels),
            "E's training set": (split.evaluator, data.train_labels),
            "test (private classes)": (split.test, data.test_labels)}


class LazyImages:
    """A set of images made a slice at a time, for sets too large to hold: ``rows(lo, hi)``
    returns images ``lo`` … ``hi - 1`` as a tensor. It answers ``len``, ``shape``, ``dtype``,
    slices (step 1) and index arrays (rows in the order given); ``tensor()`` makes it whole.
    The judge streams it a batch at a time, so it is never whole there; its digest
    (``lib.metrics.store.tensor_digest``) is that of the whole tensor, computed once."""

    def __init__(self, length: int, image_shape: tuple[int, ...], dtype: torch.dtype,
                 rows: Callable[[int, int], torch.Tensor]) -> None:
        self.length, self.image_shape, self.dtype = length, tuple(image_shape), dtype
        self.rows = rows
        self.digest: str | None = None

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.length, *self.image_shape))

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.length)
            if step != 1:
                raise InputError(f"a lazy image set is sliced with step 1, not {step}")
            return self.rows(lo, max(lo, hi))
        index = np.asarray(key).reshape(-1)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        if index.size and (index.min() < -self.length or index.max() >= self.length):
            raise InputError(f"index out of range for a set of {self.length} images")
        index = np.where(index < 0, index + self.length, index)
        if not index.size:
            return torch.empty((0, *self.image_shape), dtype=self.dtype)
        return torch.cat([self.rows(int(i), int(i) + 1) for i in index])

    def chunks(self, rows: int):
        """The set in order, ``rows`` images at a time."""
        for lo in range(0, self.length, rows):
            yield self.rows(lo, min(lo + rows, self.length))

    def tensor(self, rows: int = 1024) -> torch.Tensor:
        """The whole set as one tensor."""
        return torch.cat(list(self.chunks(rows))) if self.length else self[[]]


def whole(images: torch.Tensor | LazyImages) -> torch.Tensor:
    """``images`` as one tensor (a lazy set made whole)."""
    return images.tensor() if isinstance(images, LazyImages) else images


class ImageFile:
    """``length`` images of one shape in a temporary file (deleted when closed or collected):
    written by position (``file[i] = image``), read back as a ``LazyImages`` a slice at a
    time, so the set is never in memory."""

    def __init__(self, length: int, image_shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float32) -> None:
        self.length, self.image_shape, self.dtype = length, tuple(image_shape), dtype
        self.row_bytes = math.prod(self.image_shape) * torch.empty((), dtype=dtype).element_size()
        self.file = tempfile.TemporaryFile()
        self.file.truncate(length * self.row_bytes)

    def __setitem__(self, i: int, image: torch.Tensor) -> None:
        if tuple(image.shape) != self.image_shape or image.dtype != self.dtype:
            raise InputError(f"an image file of {self.image_shape} {self.dtype} images was given "
                             f"one of {tuple(image.shape)} {image.dtype}")
        self.file.seek(i * self.row_bytes)
        flat = image.detach().cpu().contiguous().reshape(-1)
        self.file.write(memoryview(flat.view(torch.uint8).numpy()))

    def read(self, lo: int, hi: int) -> torch.Tensor:
        """Images ``lo`` … ``hi - 1``."""
        out = torch.empty((hi - lo, *self.image_shape), dtype=self.dtype)
        self.file.seek(lo * self.row_bytes)
        view = memoryview(out.reshape(-1).view(torch.uint8).numpy())
        if self.file.readinto(view) != len(view):
            raise InputError(f"the image file ends before image {hi - 1}")
        return out

    def images(self) -> LazyImages:
        """The file's images, read a slice at a time."""
        return LazyImages(self.length, self.image_shape, self.dtype, self.read)
