"""Fashion-MNIST, parsed straight from its gzip IDX files, and the committed splits.

Sources, in order: ``$DDCS_MI_FASHION_MNIST`` (a folder), ``data/raw/fashion-mnist/``, the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), and last
torchvision's download into ``data/raw/fashion-mnist/`` (``python -m lib.data fetch``; the
only network use). Integrity is checked on the decompressed IDX bytes, which are the same
whichever way the files came.

Splits (PROTOCOL.md): the private training set D, the non-member reference set R, the public
set and the evaluator's training set, as index files in ``data/splits/`` that every run reads.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import paths

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
N_CLASSES = 10
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# sha256 of the decompressed IDX files (Zalando's release; identical in Debian's package and
# in torchvision's mirror, whose gzip files differ byte-wise).
SOURCE_SHA256 = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
ENV_DIR = "DDCS_MI_FASHION_MNIST"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_DISJOINT_PUBLIC = [1, 4, 6, 8, 9]
SPLIT_KINDS = ("same-class", "class-disjoint")


class DataNotFoundError(FileNotFoundError):
    """Fashion-MNIST is not in any of the places we look."""


class DataCorruptError(ValueError):
    """A Fashion-MNIST file exists but its content is not the expected one."""


def local_dir() -> Path:
    return paths.data_dir() / "raw" / "fashion-mnist"


def candidate_dirs() -> list[Path]:
    """The folders searched for the IDX files, in order."""
    dirs = []
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.environ[ENV_DIR]))
    return dirs + [local_dir(), DEBIAN_DIR]


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _how_to_get_it(searched: list[Path]) -> str:
    return (
        "Fashion-MNIST was not found (looked in: " + ", ".join(str(d) for d in searched) + "). "
        "Get it in one of three ways: (1) put the four IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) "
        f"in data/raw/fashion-mnist/ or in a folder named by ${ENV_DIR}; (2) install the Debian "
        "package: apt-get install dataset-fashion-mnist (as root; `make data` does it); "
        "(3) when online, download it: python -m lib.data fetch"
    )


def describe_source(folder: str | Path) -> str:
    """Where the data came from, in words (no absolute path of a user's machine)."""
    folder = Path(folder).resolve()
    if folder == DEBIAN_DIR.resolve():
        return "the Debian package dataset-fashion-mnist"
    if folder == local_dir().resolve():
        return "data/raw/fashion-mnist/"
    return f"${ENV_DIR} ({folder.name}/)"


def find_source_dir() -> Path:
    """The first candidate folder that holds all four files; else ``DataNotFoundError``."""
    searched = candidate_dirs()
    for folder in searched:
        if all(_file_in(folder, stem) for stem in FILES.values()):
            return folder
    raise DataNotFoundError(_how_to_get_it(searched))


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file (gzip or raw)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as err:  # bad gzip stream, truncated file
        raise DataCorruptError(f"{path} cannot be read ({err}); delete it and obtain the data "
                               "again (see python -m lib.data status)") from err


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes (unsigned-byte type only) into a uint8 array of the declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataCorruptError(f"{name}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataCorruptError(f"{name}: IDX data type {raw[2]:#x} is not unsigned byte")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataCorruptError(f"{name}: {len(raw)} bytes, the header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@dataclass(frozen=True)
class FashionMNIST:
    """The raw data set: uint8 images (N, 28, 28) and int64 labels, both splits."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    sha256: dict = field(default_factory=dict)
    image_size = 32  # padded from 28 (``to_model_input``)
    channels = 1

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES


@functools.lru_cache(maxsize=2)
def _load(folder: str, verify: bool) -> FashionMNIST:
    arrays, digests = {}, {}
    for key, stem in FILES.items():
        path = _file_in(Path(folder), stem)
        raw = read_idx_bytes(path)
        digests[key] = hashlib.sha256(raw).hexdigest()
        if verify and digests[key] != SOURCE_SHA256[key]:
            raise DataCorruptError(
                f"{path}: sha256 of the decompressed bytes is {digests[key]}, expected "
                f"{SOURCE_SHA256[key]} (Fashion-MNIST). The file is corrupt or another data "
                "set; delete it and obtain the data again (python -m lib.data status)")
        arrays[key] = parse_idx(raw, str(path))
    return FashionMNIST(
        train_images=torch.from_numpy(arrays["train_images"].copy()),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"].copy()),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source=str(folder), sha256=digests)


def load_fashion_mnist(folder: str | Path | None = None, verify: bool = True) -> FashionMNIST:
    """Load Fashion-MNIST from ``folder`` or the first place it is found (cached per process)."""
    folder = Path(folder) if folder is not None else find_source_dir()
    if not all(_file_in(folder, stem) for stem in FILES.values()):
        raise DataNotFoundError(_how_to_get_it([folder]))
    return _load(str(folder.resolve()), verify)


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
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} images to {size}×{size}")
    return F.pad(x, (pad // 2,) * 4, value=-1.0)


def download(dest: Path | None = None) -> Path:
    """Download Fashion-MNIST with torchvision into ``dest`` (network; only when missing)."""
    import torchvision

    dest = Path(dest) if dest is not None else local_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        torchvision.datasets.FashionMNIST(tmp, train=True, download=True)
        torchvision.datasets.FashionMNIST(tmp, train=False, download=True)
        raw = Path(tmp) / "FashionMNIST" / "raw"
        for stem in FILES.values():
            shutil.copyfile(raw / (stem + ".gz"), dest / (stem + ".gz"))
    load_fashion_mnist(dest)  # verifies the sha256 of what arrived
    return dest


# ---------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """Indices into the original train/test splits for every role of PROTOCOL.md."""
    kind: str
    seed: int
    private_classes: tuple[int, ...]
    per_class: int
    private: np.ndarray      # D: T's training data (train split)
    reference: np.ndarray    # R: non-members, same classes and size as D (train split)
    public: np.ndarray       # the attacker's data (train split)
    evaluator: np.ndarray    # E's training data: train split minus D and R
    test: np.ndarray         # test-split images of the private classes
    eval_classes: tuple[int, ...] | None = None    # E's classes (None: all 10)
    public_classes: tuple[int, ...] | None = None  # P's classes (None: by split kind)

    def check_disjoint(self) -> None:
        """Raise if D, R and public overlap (a broken invariant, never a claim). The face
        split's evaluator is trained on D itself (as in the paper), so that pair is allowed."""
        pairs = [("private", "reference"), ("private", "public"), ("reference", "public"),
                 ("reference", "evaluator")]
        if self.kind != "faces":
            pairs.append(("private", "evaluator"))
        for a, b in pairs:
            common = np.intersect1d(getattr(self, a), getattr(self, b))
            if common.size:
                raise AssertionError(f"split invariant broken: {a} and {b} share "
                                     f"{common.size} indices (e.g. {common[:5].tolist()})")


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def make_split(train_labels: np.ndarray, test_labels: np.ndarray, kind: str = "same-class",
               per_class: int = 100, seed: int = 0,
               private_classes: tuple[int, ...] = (0, 2, 3, 5, 7)) -> Split:
    """Draw D and R (``per_class`` each per private class) with ``seed``; derive the rest."""
    if kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split {kind!r}; valid: {', '.join(SPLIT_KINDS)}")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    rng = np.random.default_rng(seed)
    private, reference = [], []
    for c in private_classes:
        idx = np.flatnonzero(train_labels == c)
        if 2 * per_class > idx.size:
            raise ValueError(f"class {c} has {idx.size} train images; D and R need {2 * per_class}")
        perm = rng.permutation(idx)
        private.append(np.sort(perm[:per_class]))
        reference.append(np.sort(perm[per_class:2 * per_class]))
    private, reference = np.concatenate(private), np.concatenate(reference)
    rest = np.setdiff1d(np.arange(train_labels.size), np.concatenate([private, reference]))
    if kind == "same-class":
        public = rest
    else:
        public = rest[np.isin(train_labels[rest], CLASS_DISJOINT_PUBLIC)]
    test = np.flatnonzero(np.isin(test_labels, private_classes))
    split = Split(kind, seed, tuple(private_classes), per_class, private, reference,
                  public, rest, test)
    split.check_disjoint()
    return split


def split_filename(kind: str, per_class: int, seed: int) -> str:
    return f"fashion-mnist_{kind}_n{per_class}_seed{seed}.json"


def split_to_json(split: Split, source_sha256: dict) -> dict:
    """The committed form: D and R listed; public/evaluator/test as count + sha256 + rule."""
    return {
        "dataset": "fashion-mnist",
        "kind": split.kind,
        "seed": split.seed,
        "private_classes": list(split.private_classes),
        "per_class": split.per_class,
        "private": split.private.tolist(),
        "reference": split.reference.tolist(),
        "derived": {
            "public": {"count": int(split.public.size), "sha256": _digest(split.public),
                       "rule": ("train split minus D and R" if split.kind == "same-class" else
                                f"train images of classes {CLASS_DISJOINT_PUBLIC} minus D and R")},
            "evaluator": {"count": int(split.evaluator.size), "sha256": _digest(split.evaluator),
                          "rule": "train split minus D and R"},
            "test": {"count": int(split.test.size), "sha256": _digest(split.test),
                     "rule": "test split, private classes"},
        },
        "source_sha256": dict(source_sha256),
    }


def split_path(kind: str, per_class: int, seed: int) -> Path:
    return paths.data_dir() / "splits" / split_filename(kind, per_class, seed)


def write_split(data: FashionMNIST, kind: str, per_class: int, seed: int,
                private_classes: tuple[int, ...]) -> Path:
    """Write the split index file (atomically); returns its path."""
    split = make_split(data.train_labels.numpy(), data.test_labels.numpy(), kind,
                       per_class, seed, tuple(private_classes))
    path = split_path(kind, per_class, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(split_to_json(split, data.sha256), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_split(data: FashionMNIST, kind: str = "same-class", per_class: int = 100,
               seed: int = 0, private_classes: tuple[int, ...] = (0, 2, 3, 5, 7),
               create: bool = True) -> Split:
    """Read the committed split file and verify it against the data and its own rules.

    A split that is not committed (a non-default size) is written on first use when
    ``create``; the committed ones are never rewritten.
    """
    path = split_path(kind, per_class, seed)
    if not path.is_file():
        if not create:
            raise FileNotFoundError(f"{path} does not exist; write it with "
                                    f"python -m lib.data write-splits")
        write_split(data, kind, per_class, seed, private_classes)
    stored = json.loads(path.read_text())
    if stored["source_sha256"] != data.sha256:
        raise DataCorruptError(f"{path} was made from other source files than the ones "
                               f"loaded from {data.source}")
    if list(stored["private_classes"]) != list(private_classes):
        raise ValueError(f"{path} is for private classes {stored['private_classes']}, "
                         f"the config asks for {list(private_classes)}")
    split = make_split(data.train_labels.numpy(), data.test_labels.numpy(), kind, per_class,
                       seed, tuple(private_classes))
    for role in ("private", "reference"):
        if not np.array_equal(np.asarray(stored[role]), getattr(split, role)):
            raise DataCorruptError(f"{path}: the {role} indices differ from the ones seed "
                                   f"{seed} draws; the file was modified. Restore it with git "
                                   "checkout data/splits")
    for role, facts in stored["derived"].items():
        got = getattr(split, role)
        if facts["count"] != got.size or facts["sha256"] != _digest(got):
            raise DataCorruptError(f"{path}: derived set {role!r} does not match its rule")
    return split


def split_for_config(cfg, data=None) -> tuple:
    """The data and the split a resolved profile config names (Fashion-MNIST, or the face
    data of the ``paper`` profile through ``lib.faces.load_for_config``)."""
    if cfg["dataset"] == "faces":
        from . import faces

        return faces.load_for_config(cfg, data)
    if cfg["dataset"] != "fashion-mnist":
        raise ValueError(f"unknown dataset {cfg['dataset']!r}; valid: fashion-mnist, faces")
    data = data or load_fashion_mnist()
    split = load_split(data, cfg["split"], cfg["private_per_class"], cfg["split_seed"],
                       tuple(cfg["private_classes"]))
    return data, split


def source_line(data) -> str:
    """Where the loaded data came from, in words."""
    if isinstance(data, FashionMNIST):
        return f"loaded from {describe_source(data.source)}"
    return f"loaded from {data.source}"


def split_file_for(cfg) -> Path:
    """The split file a resolved config reads (committed for Fashion-MNIST; the user's for faces)."""
    if cfg["dataset"] == "faces":
        from . import faces

        return faces.split_file(cfg)
    return split_path(cfg["split"], cfg["private_per_class"], cfg["split_seed"])


def label_name(data, label: int) -> str:
    """The name of an original label (a Fashion-MNIST class, a face identity, or a public
    identity of the face data, which has no name in the run)."""
    names = data.class_names
    return names[label] if 0 <= label < len(names) else f"public #{label}"


def role_counts(data, split):
    """Images per role: per class for Fashion-MNIST (10 columns); for the face data, images,
    identities and images per identity (min / median / max) — hundreds of columns otherwise."""
    import pandas as pd

    roles = {"D (private, T trains on it)": (split.private, data.train_labels),
             "R (non-member reference)": (split.reference, data.train_labels),
             "public (attacker)": (split.public, data.train_labels),
             "E's training set": (split.evaluator, data.train_labels),
             "test (private classes)": (split.test, data.test_labels)}
    if isinstance(data, FashionMNIST):
        counts = pd.DataFrame({role: np.bincount(labels[idx].numpy(), minlength=10)
                               for role, (idx, labels) in roles.items()}, index=CLASS_NAMES).T
        counts["total"] = counts.sum(axis=1)
        return counts
    rows = {}
    for role, (idx, labels) in roles.items():
        per = np.unique(labels[idx].numpy(), return_counts=True)[1]
        rows[role] = {"images": int(per.sum()), "identities": len(per), "min per identity":
                      int(per.min()), "median": float(np.median(per)), "max": int(per.max())}
    return pd.DataFrame(rows).T


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
        raise ValueError("labels outside the private classes cannot be mapped")
    size = max(N_CLASSES, int(labels.max()) + 1 if labels.numel() else 0,
               int(classes.max()) + 1 if classes.numel() else 0)
    lookup = torch.full((size,), -1, dtype=torch.long)
    lookup[classes] = torch.arange(len(classes))
    out = lookup[labels]
    if (out < 0).any():
        raise ValueError("labels outside the private classes cannot be mapped")
    return out


# ---------------------------------------------------------------------------- CLI
def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.data", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["status", "fetch", "write-splits"])
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            try:
                folder = find_source_dir()
            except DataNotFoundError:
                print("Fashion-MNIST not found locally; downloading it with torchvision")
                try:
                    folder = download()
                except Exception as err:  # no network, mirror down
                    raise DataNotFoundError(_how_to_get_it(candidate_dirs())
                                            + f" [the download failed: {err}]") from err
        else:
            folder = find_source_dir()
        data = load_fashion_mnist(folder)
        print(f"Fashion-MNIST OK in {folder} (sha256 of the decompressed files verified)")
        if args.command == "write-splits":
            from .profiles import PROFILES
            for name, cfg in PROFILES.items():
                if cfg["dataset"] != "fashion-mnist":
                    continue
                for kind in SPLIT_KINDS:
                    path = write_split(data, kind, cfg["private_per_class"], cfg["split_seed"],
                                       tuple(cfg["private_classes"]))
                    print(f"wrote {path.relative_to(paths.repo_root())}")
    except (DataNotFoundError, DataCorruptError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
