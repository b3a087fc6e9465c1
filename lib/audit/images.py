"""The audit's image sets: ImageFolder-style folders or in-memory tensors, one class list.

A folder holds one subfolder per class (``ROOT/<class>/**/<image>``, as torchvision's
``ImageFolder``); PNG, JPEG and WebP files are read, any other file (``.DS_Store``,
``Thumbs.db``, a text file) is skipped and counted. The members' folder fixes the classes:
the reconstructions and the non-members may only use member classes.

Images read from files stay uint8 (N, C, H, W) in [0, 255], compact enough for 60,000
Fashion-MNIST images; tensors passed in stay as given (uint8, or float in [-1, 1], the
repository's convention). ``as_signed`` turns either into float32 in [-1, 1] exactly as
``lib.data.images.to_model_input`` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import DataCorruptError, DataNotFoundError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
MODES = {"L": 1, "RGB": 3}
"""The two modes images are converted to, and their channel counts."""
LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights, PIL's colour → grey conversion (used for tensors)."""


@dataclass(frozen=True)
class ImageSet:
    """Images with their classes and where each came from."""
    images: torch.Tensor              # (N, C, H, W): uint8 in [0, 255] or float in [-1, 1]
    labels: np.ndarray                # (N,) int64, index into ``classes``
    classes: list[str]                # the member classes, label i ↔ classes[i]
    files: list[str]                  # per image: path relative to ``root`` (tensors: index)
    root: Path | None = None          # the folder read (None: tensors)
    skipped: list[str] = field(default_factory=list)  # non-image files, relative to root

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mode(self) -> str:
        return "L" if self.images.shape[1] == 1 else "RGB"

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def counts(self) -> np.ndarray:
        """Images per class (len(classes),)."""
        return np.bincount(self.labels, minlength=len(self.classes))


def as_signed(images: torch.Tensor) -> torch.Tensor:
    """Float32 in [-1, 1]: uint8 as ``x / 127.5 − 1`` (the pipeline's ``to_model_input``),
    float images as they are."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div(127.5).sub(1.0)
    return images.to(torch.float32)


def as_unit(images: torch.Tensor) -> torch.Tensor:
    """Float64 in [0, 1]: uint8 / 255, float images (x + 1) / 2."""
    if images.dtype == torch.uint8:
        return images.to(torch.float64).div(255.0)
    return images.to(torch.float64).add(1.0).div(2.0)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Float images (N, 1 or 3, H, W) with ``channels`` channels: grey repeated, colour to
    grey by the luma weights."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.repeat(1, 3, 1, 1)
    weights = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, C, H, W) resized to size × size: bilinear, antialiased."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


# ------------------------------------------------------------------------------ folders
def scan(root: str | Path, role: str) -> tuple[dict[str, list[str]], list[str]]:
    """(class name → sorted image paths relative to ``root``, skipped non-image files)."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"the {role} folder {root} does not exist (or is not a folder)")
    skipped, classes = [], {}
    entries = sorted(root.iterdir())
    for entry in entries:
        if entry.is_file():
            skipped.append(entry.name)
    for folder in (e for e in entries if e.is_dir() and not e.name.startswith(".")):
        files = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            is_image = path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            (files if is_image else skipped).append(rel)
        if not files:
            raise InputError(f"the {role} class folder {folder} holds no images (PNG, JPEG or "
                             "WebP); remove the empty class folder or add its images")
        classes[folder.name] = files
    if not classes:
        raise InputError(f"the {role} folder {root} has no class subfolders, so no images; it must "
                         f"have the ImageFolder layout {root}/<class>/<image>")
    return classes, sorted(skipped)


def _to_uint8(img) -> np.ndarray:
    """A decoded 16- or 32-bit grey PIL image as uint8 (H, W), scaled from 0..65535."""
    arr = np.asarray(img, dtype=np.float64)
    return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)


def decode(path: Path, mode: str | None) -> np.ndarray:
    """One image file as uint8 (C, H, W) in ``mode`` ("L" or "RGB"; None: grey files grey,
    others RGB). A file that does not decode is a ``DataCorruptError`` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            native = "L" if img.mode in GREY_MODES else "RGB"
            target = mode or native
            if img.mode in ("I", "I;16", "I;16B", "I;16L"):
                arr = _to_uint8(img)
                arr = np.repeat(arr[..., None], 3, axis=2) if target == "RGB" else arr
            else:
                arr = np.array(img.convert(target))      # writable, for torch
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataCorruptError(f"{path} is not a readable image ({err}); replace or remove "
                               "it") from err
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _fit(arr: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (C, H, W) resized to size × size (bilinear, antialiased, rounded to uint8)."""
    if size is None or arr.shape[1:] == (size, size):
        return arr
    x = resize(torch.from_numpy(arr)[None].to(torch.float32), size)
    return x[0].round().clamp(0, 255).to(torch.uint8).numpy()


@dataclass
class SizeCheck:
    """The first image seen (its path and size): every later one must match without --size."""
    path: str | None = None
    shape: tuple[int, int] | None = None

    def check(self, path: str, shape: tuple[int, int]) -> None:
        if self.shape is None:
            self.path, self.shape = path, shape
        elif shape != self.shape:
            raise InputError(
                f"images differ in size: {self.path} is {self.shape[1]}×{self.shape[0]}, "
                f"{path} is {shape[1]}×{shape[0]}; pass --size N (size=N) to resize all images "
                "to N×N (bilinear, antialiased)")


def read_folder(root: str | Path, role: str, classes: Sequence[str] | None = None,
                mode: str | None = None, size: int | None = None,
                sizes: SizeCheck | None = None, progress: bool = False) -> ImageSet:
    """Every image of an ImageFolder-style folder as uint8 (N, C, H, W).

    ``classes``: the member classes (None: this folder's classes, i.e. this is the members'
    folder); a class folder outside them is an error. ``mode``: "L" or "RGB" (None: grey
    when every file is grey, else RGB). ``size``: resize to size × size; without it every
    image must have the size of the first one ``sizes`` saw (shared across folders).
    """
    root = Path(root)
    found, skipped = scan(root, role)
    if classes is None:
        classes = sorted(found)
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise InputError(f"the {role} class {unknown[0]!r} ({root / unknown[0]}) is not a member "
                         f"class; the member classes are {', '.join(classes)}. Every class "
                         "needs its member folder of the same name")
    sizes = sizes if sizes is not None else SizeCheck()
    files = [(classes.index(name), rel) for name in sorted(found) for rel in found[name]]
    arrays = []
    for _, rel in tqdm(files, desc=f"reading {role}", unit="img", disable=not progress):
        arr = _fit(decode(root / rel, mode), size)
        sizes.check(str(root / rel), arr.shape[1:])
        arrays.append(arr)
    if mode is None and len({a.shape[0] for a in arrays}) > 1:   # mixed grey and colour: RGB
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays))
    labels = np.array([c for c, _ in files], dtype=np.int64)
    return ImageSet(images, labels, list(classes), [rel for _, rel in files], root, skipped)


# ------------------------------------------------------------------------------ tensors
def _class_names(labels: np.ndarray) -> list[str]:
    """Sorted class names of labels (numbers in numeric order)."""
    values = np.unique(labels)
    return [str(v) for v in values]


def from_tensors(images, labels, role: str, classes: Sequence[str] | None = None,
                 size: int | None = None) -> ImageSet:
    """An ``ImageSet`` from images (N, H, W) or (N, 1 or 3, H, W), uint8 in [0, 255] or float
    in [-1, 1], and their class labels (ints or names). ``classes``: the member classes
    (None: these are the members). ``files`` are the images' positions."""
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"{role} images must be (N, H, W) or (N, 1 or 3, H, W); got shape "
                         f"{tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise InputError(f"{role} images must be uint8 in [0, 255] or float in [-1, 1]; got "
                             f"{x.dtype}")
        x = x.detach().cpu().to(torch.float32)
        if not torch.isfinite(x).all() or x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6:
            raise InputError(f"{role} float images must lie in [-1, 1] (the repository's "
                             "convention; uint8 images in [0, 255] are accepted too)")
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) != len(x):
        raise InputError(f"{role}: {len(x)} images but labels of shape {labels.shape}")
    if len(x) == 0:
        raise InputError(f"no {role} images")
    names = [str(v) for v in labels]
    classes = list(classes) if classes is not None else _class_names(labels)
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise InputError(f"the {role} class {unknown[0]!r} is not a member class; the member "
                         f"classes are {', '.join(classes)}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = resize(as_signed(x), size).clamp(-1.0, 1.0)
    lookup = {name: i for i, name in enumerate(classes)}
    return ImageSet(x, np.array([lookup[n] for n in names], dtype=np.int64), classes,
                    [str(i) for i in range(len(x))])
