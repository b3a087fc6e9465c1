"""The audit's three distances, each an embedding e with d(x, y) = ||e(x) − e(y)||².

- ``pixel``: mean over pixels and channels of the squared difference, values in [0, 1];
- ``lpips-vgg``: the real LPIPS-VGG v0.1 from the local weights folder (``make weights``);
- ``perceptual:CHECKPOINT``: the LPIPS-style distance on a classifier checkpoint saved by this
  repository (e.g. a run's ``models/perceptual.safetensors``: the pipeline's d_P), with the
  images brought to the checkpoint's channels and size the way the pipeline does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .. import weights
from ..artifacts import load_module_tensors, load_tensors
from ..errors import InputError, WeightsError
from ..metrics.distances import PerceptualDistance, lpips_vgg
from ..models import build_classifier
from .images import as_signed, as_unit, resize, to_channels

LPIPS_RESIZE = 256
"""LPIPS-VGG's input size, as in the ``paper`` profile (``lpips_resize``)."""
PIXEL_NOTE = (
    "Pixel distance: the mean over pixels and channels of the squared difference of the "
    "images scaled to [0, 1]. A weak, weight-free baseline: it sees only pixel-aligned "
    "copies (a copy shifted by a pixel or re-lit looks far) and says nothing about what a "
    "person or a perceptual network would call similar. It is not LPIPS and not the paper's "
    "distance; use it to check the plumbing or when no weights are at hand.")
LPIPS_NOTE = (
    "LPIPS-VGG v0.1 (Zhang et al. 2018), the paper's distance: unit-normalised VGG16 "
    "feature maps (ImageNet weights, local file) weighted by LPIPS's learned heads, inputs "
    f"as RGB in [-1, 1] resized to {LPIPS_RESIZE}×{LPIPS_RESIZE}. It approximates human "
    "judgements of perceptual similarity on natural images; it is not an identity or "
    "re-identification measure (two photos of one person can be far), and it was not "
    "trained on your data.")
PERCEPTUAL_NOTE = (
    "LPIPS-style distance on the classifier checkpoint {path} ({arch}): the unit-normalised "
    "feature maps of each of its blocks, uniform weights, averaged over space and summed over "
    "blocks — the pipeline's d_P when the checkpoint is a run's perceptual network P. It is "
    "similarity as that network sees it (what separates its training classes), not a human "
    "judgement, and its values are not comparable across checkpoints.")


@dataclass(frozen=True)
class Distance:
    """A distance as an embedding: ``embed(images)`` (uint8 or [-1, 1] float (N, C, H, W))
    gives (N, D) vectors with d(x, y) = ||e(x) − e(y)||²."""
    name: str                       # as given: pixel, lpips-vgg, perceptual:<path>
    channels: int | None            # channels the images are converted to (None: the members')
    note: str                       # what the distance is and is not (the report)
    embed: Callable[[torch.Tensor], torch.Tensor]
    preprocessing: Callable[[int, tuple[int, int]], str]   # (channels, (H, W)) → description

    def batch_limit(self, images: torch.Tensor, memory_bytes: int) -> int:
        """How many images to embed at once so that their float64 embeddings and float32
        copies take at most ``memory_bytes`` (at least 1)."""
        dim = self.embed(images[:1]).shape[1]
        return max(1, int(memory_bytes // (12 * dim)))


def pixel() -> Distance:
    """Mean squared difference over pixels and channels, values in [0, 1]."""

    def embed(images: torch.Tensor) -> torch.Tensor:
        x = as_unit(images).flatten(1)
        return x / math.sqrt(x.shape[1])

    return Distance("pixel", None, PIXEL_NOTE, embed,
                    lambda c, hw: f"{'grey' if c == 1 else 'RGB'} (the members' mode), "
                                  f"{hw[1]}×{hw[0]}, values scaled to [0, 1]")


def lpips(batch_size: int = 32, folder: str | Path | None = None) -> Distance:
    """LPIPS-VGG from the weights folder; a ``WeightsError`` naming ``make weights`` when the
    VGG16 weights are absent (nothing is downloaded)."""
    try:
        folder = weights.require((weights.LPIPS_VGG_WEIGHTS_FILE,), folder)
    except WeightsError as err:
        raise WeightsError(f"the lpips-vgg distance cannot run: {err}. The pixel and "
                           "perceptual:CHECKPOINT distances need no downloaded weights") from err
    distance = lpips_vgg(folder, resize=LPIPS_RESIZE)

    def embed(images: torch.Tensor) -> torch.Tensor:
        return distance.embed_batched(as_signed(images), batch_size)

    return Distance("lpips-vgg", 3, LPIPS_NOTE, embed,
                    lambda c, hw: f"RGB (grey repeated), {hw[1]}×{hw[0]} resized to "
                                  f"{LPIPS_RESIZE}×{LPIPS_RESIZE} (bilinear), values in [-1, 1]")


def fit_to_checkpoint(x: torch.Tensor, channels: int, size: int | None,
                      pad: bool) -> torch.Tensor:
    """[-1, 1] images with the checkpoint's channels and size: Fashion-MNIST's smaller images
    padded with background (-1) as ``lib.data.images.to_model_input`` does, others resized
    (bilinear, antialiased)."""
    x = to_channels(x, channels)
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    h, w = x.shape[-2:]
    if pad and h == w and h < size and (size - h) % 2 == 0:
        return F.pad(x, ((size - h) // 2,) * 4, value=-1.0)
    return resize(x, size)


def checkpoint_geometry(meta: dict) -> tuple[int, int | None, bool, str]:
    """(channels, image size or None, pad?, dataset) a classifier checkpoint's metadata gives."""
    arch, cfg = meta["arch"], meta.get("config") or {}
    size = cfg.get("image_size") or arch.get("image_size") or None
    dataset = str(cfg.get("dataset", "unknown"))
    return int(arch.get("in_channels", 3)), size, dataset == "fashion-mnist", dataset


def perceptual(path: str | Path, batch_size: int = 256) -> Distance:
    """The LPIPS-style distance on a classifier checkpoint of this repository (safetensors
    with its ``arch`` metadata; pickles are refused)."""
    path = Path(path)
    tensors, meta = load_tensors(path)          # refuses pickles: ArtifactError
    if not isinstance(meta.get("arch"), dict) or not any(k.startswith("model.") for k in tensors):
        raise InputError(f"{path} is not a classifier checkpoint of this repository (no 'arch' "
                         "metadata or 'model.*' tensors); pass e.g. a run folder's "
                         "models/perceptual.safetensors")
    try:
        model = build_classifier(meta["arch"])
        load_module_tensors(tensors, {"model": model})
    except (RuntimeError, TypeError, KeyError) as err:
        raise InputError(f"{path}: its tensors do not fit its architecture {meta['arch']} "
                         f"({str(err).splitlines()[0]})") from err
    channels, size, pad, dataset = checkpoint_geometry(meta)
    distance = PerceptualDistance(model.eval(), name="d_P")

    def embed(images: torch.Tensor) -> torch.Tensor:
        return distance.embed_batched(fit_to_checkpoint(as_signed(images), channels, size, pad),
                                      batch_size)

    def preprocessing(c: int, hw: tuple[int, int]) -> str:
        text = f"{'grey' if channels == 1 else 'RGB'} (the checkpoint's {channels} channel(s))"
        if size is None or hw == (size, size):
            geometry = f"{hw[1]}×{hw[0]} as given"
        elif pad and hw[0] == hw[1] and hw[0] < size and (size - hw[0]) % 2 == 0:
            geometry = (f"{hw[1]}×{hw[0]} padded with background to {size}×{size} (the "
                        "pipeline's Fashion-MNIST input)")
        else:
            geometry = f"{hw[1]}×{hw[0]} resized to {size}×{size} (bilinear, antialiased)"
        return f"{text}, {geometry}, values in [-1, 1]"

    arch = f"{meta['arch'].get('arch')}, role {meta.get('role', '?')}, trained on {dataset}"
    return Distance(f"perceptual:{path}", channels,
                    PERCEPTUAL_NOTE.format(path=path.name, arch=arch), embed, preprocessing)


DISTANCES = ("lpips-vgg", "pixel", "perceptual:CHECKPOINT")


def resolve(name: str | Distance, batch_size: int = 256) -> Distance:
    """The distance called ``name`` (a ``Distance`` is returned as it is)."""
    if isinstance(name, Distance):
        return name
    if name == "pixel":
        return pixel()
    if name == "lpips-vgg":
        return lpips(min(batch_size, 32))
    if name.startswith("perceptual:") and len(name) > len("perceptual:"):
        return perceptual(name[len("perceptual:"):], batch_size)
    raise InputError(f"unknown distance {name!r}; valid: {', '.join(DISTANCES)}")
