"""Model-ready images and labels, whatever the data set: [-1, 1] float tensors of the
profile's size, original labels, and their mapping into a model's label space."""
from __future__ import annotations

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
