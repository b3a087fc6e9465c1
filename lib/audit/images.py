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

import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

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
    alpha_dropped: list[str] = field(default_factory=list)  # files whose alpha was dropped
    unusable: list["Unusable"] = field(default_factory=list)  # entries left out (skip_unusable)

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
UNUSABLE_REASONS = ("unreadable", "not an image", "symlink loop", "dangling link",
                    "outside the folder", "too large")
"""Why an entry of an input folder cannot be used (``--skip-unusable`` leaves them out)."""


@dataclass(frozen=True)
class Unusable:
    """An entry of an input folder that cannot be used, and why (one of UNUSABLE_REASONS)."""
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _link_problem(link: Path, inside: Path) -> str | None:
    """Why the symbolic link ``link`` cannot be followed (a symlink loop, a dangling link, a
    target outside the folder ``inside``, unreadable), or None."""
    try:
        target = link.resolve(strict=True)
    except RuntimeError:                               # Python's "Symlink loop from ..."
        return "symlink loop"
    except FileNotFoundError:
        return "dangling link"
    except OSError as err:                             # ELOOP and the like
        return "symlink loop" if err.errno == errno.ELOOP else "unreadable"
    if target != inside and inside not in target.parents:
        return "outside the folder"
    return None


def _walk(folder: Path, inside: Path, seen: set[Path], unusable: list[Unusable]
          ) -> list[Path]:
    """The files under ``folder`` (links followed while they stay ``inside``), sorted;
    entries that cannot be used are added to ``unusable``."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        unusable.append(Unusable(str(folder), "unreadable"))
        return []
    files: list[Path] = []
    for entry in entries:
        path = Path(entry.path)
        problem = _link_problem(path, inside) if entry.is_symlink() else None
        if problem:
            unusable.append(Unusable(str(path), problem))
            continue
        if entry.is_dir():
            real = path.resolve()
            if real in seen:
                unusable.append(Unusable(str(path), "symlink loop"))
                continue
            files += _walk(path, inside, seen | {real}, unusable)
        elif entry.is_file():
            files.append(path)
        else:                                          # a pipe, a socket, a device
            unusable.append(Unusable(str(path), "not an image"))
    return files


def scan(root: str | Path, role: str, unusable: list[Unusable]
         ) -> tuple[dict[str, list[str]], list[str]]:
    """(class name → sorted image paths relative to ``root``, skipped non-image files);
    entries that cannot be used (``UNUSABLE_REASONS``) are added to ``unusable`` (the caller
    refuses or skips them)."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"the {role} folder {root} does not exist (or is not a folder)")
    inside = root.resolve()
    skipped, classes = [], {}
    top = _walk_top(root, inside, unusable)
    for entry in top["files"]:
        skipped.append(entry.name)
    for folder in top["folders"]:
        before = len(unusable)
        paths_ = _walk(folder, inside, {folder.resolve()}, unusable)
        files = []
        for path in paths_:
            rel = path.relative_to(root).as_posix()
            is_image = path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            if is_image and not os.access(path, os.R_OK):
                unusable.append(Unusable(str(path), "unreadable"))
                continue
            (files if is_image else skipped).append(rel)
        if files:
            classes[folder.name] = files
        elif len(unusable) == before:
            raise InputError(f"the {role} class folder {folder} holds no images (PNG, JPEG or "
                             "WebP); remove the empty class folder or add its images")
    if not classes and not unusable:
        raise InputError(f"the {role} folder {root} has no class subfolders, so no images; it must "
                         f"have the ImageFolder layout {root}/<class>/<image>")
    return classes, sorted(skipped)


def _walk_top(root: Path, inside: Path, unusable: list[Unusable]) -> dict[str, list[Path]]:
    """The class folders (not hidden; links resolved inside ``root``) and loose files of
    the top of ``root``."""
    out: dict[str, list[Path]] = {"folders": [], "files": []}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        unusable.append(Unusable(str(root), "unreadable"))
        return out
    for entry in entries:
        path = Path(entry.path)
        problem = _link_problem(path, inside) if entry.is_symlink() else None
        if problem:
            unusable.append(Unusable(str(path), problem))
            continue
        if entry.is_dir() and not entry.name.startswith("."):
            out["folders"].append(path)
        elif entry.is_file():
            out["files"].append(path)
    return out


def _to_uint8(img) -> np.ndarray:
    """A decoded 16- or 32-bit grey PIL image as uint8 (H, W), scaled from 0..65535 by
    rounding x / 257, in integers (no float copy of the image)."""
    arr = np.asarray(img)
    out = np.empty(arr.shape, dtype=np.uint8)
    for i in range(0, arr.shape[0], 256):        # row blocks: one small int64 copy at a time
        block = arr[i:i + 256].astype(np.int64)
        out[i:i + 256] = np.clip((block + 128) // 257, 0, 255)
    return out


@dataclass(frozen=True)
class Header:
    """What an image file's header says, before decoding: size, mode, bytes per pixel."""
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """PIL's decoded image and the array made from it, at most (bytes)."""
        bands = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4,
                 "CMYK": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(self.mode, 4)
        return self.pixels * (2 * bands + 8)     # decoded + converted + one int64 row block


@contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """PIL's decompression-bomb limit off: the audit applies its own (``--max-pixels``)
    from the header, before decoding, and names the file."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_header(path: Path) -> Header:
    """The header of an image file; ``DataCorruptError`` when it is not an image."""
    from PIL import Image

    try:
        with _own_pixel_limit(), Image.open(path) as img:
            return Header(int(img.width), int(img.height), img.mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataCorruptError(f"{path} is not a readable image ({err})") from err


def decode(path: Path, mode: str | None) -> tuple[np.ndarray, bool]:
    """One image file as uint8 (C, H, W) in ``mode`` ("L" or "RGB"; None: grey files grey,
    others RGB), and whether it had an alpha channel (dropped). A file that does not decode
    is a ``DataCorruptError`` naming it. Its size is not bounded here: ``survey`` refused
    the headers above ``--max-pixels`` first."""
    from PIL import Image

    try:
        with _own_pixel_limit(), Image.open(path) as img:
            img.load()
            alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
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
    return (arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))), alpha


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


@dataclass
class Survey:
    """A folder before decoding: its images (class index, path relative to root, header),
    its skipped non-image files and its unusable entries."""
    root: Path
    role: str
    classes: list[str]
    files: list[tuple[int, str, Header]]
    skipped: list[str]
    unusable: list[Unusable]


def survey(root: str | Path, role: str, classes: Sequence[str] | None = None,
           max_pixels: int | None = None) -> Survey:
    """Scan an ImageFolder-style folder and read every image's header (nothing decoded).

    ``classes``: the member classes (None: this folder's classes, i.e. this is the members'
    folder); a class folder outside them is an error. Unreadable entries, broken links,
    links leaving the folder, files named as images that are not, and images above
    ``max_pixels`` are collected in ``unusable`` (the caller refuses or skips them)."""
    root = Path(root)
    unusable: list[Unusable] = []
    found, skipped = scan(root, role, unusable)
    if classes is None:
        classes = sorted(found)
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise InputError(f"the {role} class {unknown[0]!r} ({root / unknown[0]}) is not a member "
                         f"class; the member classes are {', '.join(classes)}. Every class "
                         "needs its member folder of the same name")
    files = []
    for name in sorted(found):
        for rel in found[name]:
            try:
                header = read_header(root / rel)
            except DataCorruptError:
                unusable.append(Unusable(str(root / rel), "not an image"))
                continue
            if max_pixels is not None and header.pixels > max_pixels:
                unusable.append(Unusable(str(root / rel), f"too large ({header.width}×"
                                         f"{header.height}, more than --max-pixels {max_pixels:,})"))
                continue
            files.append((list(classes).index(name), rel, header))
    return Survey(root, role, list(classes), files, skipped, unusable)


def read_survey(found: Survey, mode: str | None = None, size: int | None = None,
                sizes: SizeCheck | None = None, progress: bool = False,
                skip_unusable: bool = False) -> ImageSet:
    """Decode the images of a ``survey`` as uint8 (N, C, H, W). ``mode``: "L" or "RGB"
    (None: grey when every file is grey, else RGB). ``size``: resize to size × size;
    without it every image must have the size of the first one ``sizes`` saw (shared
    across folders). A file whose header read but whose data does not decode is an error,
    or with ``skip_unusable`` one more entry of ``found.unusable``."""
    sizes = sizes if sizes is not None else SizeCheck()
    arrays, kept, alpha = [], [], []
    for label, rel, _ in tqdm(found.files, desc=f"reading {found.role}", unit="img",
                              disable=not progress):
        try:
            arr, had_alpha = decode(found.root / rel, mode)
        except DataCorruptError:
            if not skip_unusable:
                raise
            found.unusable.append(Unusable(str(found.root / rel), "not an image"))
            continue
        arr = _fit(arr, size)
        sizes.check(str(found.root / rel), arr.shape[1:])
        arrays.append(arr)
        kept.append((label, rel))
        if had_alpha:
            alpha.append(rel)
    if not arrays:
        raise InputError(f"the {found.role} folder {found.root} has no usable images")
    if mode is None and len({a.shape[0] for a in arrays}) > 1:   # mixed grey and colour: RGB
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays))
    labels = np.array([c for c, _ in kept], dtype=np.int64)
    return ImageSet(images, labels, found.classes, [rel for _, rel in kept], found.root,
                    found.skipped, alpha, list(found.unusable))


def unusable_message(unusable: Sequence[Unusable], limit: int = 20) -> str:
    """One paragraph listing the unusable entries by reason (at most ``limit`` paths)."""
    by_reason: dict[str, list[str]] = {}
    for u in unusable:
        by_reason.setdefault(u.reason.split(" (")[0], []).append(u.path)
    parts = [f"{reason} ({len(p)}): {', '.join(p[:limit])}{' …' if len(p) > limit else ''}"
             for reason, p in by_reason.items()]
    return (f"{len(unusable)} input entr{'y' if len(unusable) == 1 else 'ies'} cannot be used — "
            + "; ".join(parts) + ". Fix or remove them, or pass --skip-unusable "
            "(skip_unusable=True) to audit the other images and list these in summary.json")


def estimate_bytes(surveys: Sequence[Survey], size: int | None, channels: int,
                   memory_mb: int) -> int:
    """Peak memory of reading and scoring these sets, from their headers: the images kept
    (uint8, resized), the largest one being decoded (and its float copy for resizing), and
    the embeddings' bound ``memory_mb``."""
    kept = peak = 0
    for found in surveys:
        for _, _, h in found.files:
            side = (size, size) if size else (h.height, h.width)
            kept += channels * side[0] * side[1]
            peak = max(peak, h.decoded_bytes + (4 * channels * h.pixels if size else 0))
    return 2 * kept + peak + (memory_mb << 20)        # the stack copies the kept images once


def available_bytes() -> int | None:
    """Memory available to this process now (Linux: MemAvailable), None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
