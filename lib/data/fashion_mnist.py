"""Fashion-MNIST, parsed straight from its gzip IDX files, and the committed splits.

Sources, in order: ``$DDCS_MI_FASHION_MNIST`` (a folder), ``data/raw/fashion-mnist/``, the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), and last
torchvision's download into ``data/raw/fashion-mnist/`` (``python -m lib.cli data fetch``; the
only network use). Integrity is checked on the decompressed IDX bytes, which are the same
whichever way the files came.

Splits (docs/protocol.md): the private training set D, the non-member reference set R, the public
set and the evaluator's training set, as index files in ``data/splits/`` that every run reads.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..artifacts import atomic_write_bytes
from ..config import SPLIT_KINDS
from ..errors import DataCorruptError, DataNotFoundError, InputError
from .images import role_indices
from .split import Split

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
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_DISJOINT_PUBLIC = [1, 4, 6, 8, 9]
CLUSTER_SHIFT = {"pca_components": 20, "k": 4, "iterations": 50, "min_cluster_per_class": 4}
"""The cluster-shift split's design, registered in docs/protocol.md before it was measured:
per private class, pixel PCA to 20 components, k-means with k = 4 (k-means++, 50 iterations);
the private cluster is the farthest from the class mean among those holding at least
4 × ``private_per_class`` images."""


def local_dir() -> Path:
    return paths.data_dir() / "raw" / "fashion-mnist"


def candidate_dirs() -> list[Path]:
    """The folders searched for the IDX files, in order."""
    override = paths.fashion_mnist_dir()
    return ([override] if override else []) + [local_dir(), DEBIAN_DIR]


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
        f"in data/raw/fashion-mnist/ or in a folder named by ${paths.ENV_FASHION_MNIST}; (2) "
        "install the Debian "
        "package: apt-get install dataset-fashion-mnist (as root; `make data` does it); "
        "(3) when online, download it: python -m lib.cli data fetch"
    )


def describe_source(folder: str | Path) -> str:
    """Where the data came from, in words (no absolute path of a user's machine)."""
    folder = Path(folder).resolve()
    if folder == DEBIAN_DIR.resolve():
        return "the Debian package dataset-fashion-mnist"
    if folder == local_dir().resolve():
        return "data/raw/fashion-mnist/"
    return f"${paths.ENV_FASHION_MNIST} ({folder.name}/)"


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
                               "again (see python -m lib.cli data status)") from err


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
    """The raw data set: uint8 images (N, 28, 28) and int64 labels, both splits.

    Like ``lib.data.faces.FaceData``, it answers every data-set-specific question the
    notebooks ask (names, counts, which images test E, what the summary says), so no caller
    branches on the data set."""
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

    def label_name(self, label: int) -> str:
        return CLASS_NAMES[label]

    def source_line(self) -> str:
        """Where the data came from, in words."""
        return f"loaded from {describe_source(self.source)}"

    def role_counts(self, split: Split) -> pd.DataFrame:
        """Images per role and class (10 columns and a total)."""
        counts = pd.DataFrame({role: np.bincount(labels[idx].numpy(), minlength=N_CLASSES)
                               for role, (idx, labels) in role_indices(self, split).items()},
                              index=CLASS_NAMES).T
        counts["total"] = counts.sum(axis=1)
        return counts

    def evaluator_test_indices(self, split: Split) -> np.ndarray:
        """E is tested 10-way on the whole test split."""
        return np.arange(len(self.test_labels))

    def public_contrast(self, split: Split) -> str:
        """The class-disjoint option's public set, for contrast with the split in use (its D
        and R are the same images)."""
        disjoint = load_split(self, "class-disjoint", split.per_class, split.seed,
                              split.private_classes)
        if not np.array_equal(disjoint.private, split.private):
            raise DataCorruptError("the class-disjoint split's D differs from the same-class "
                                   "one; restore data/splits with git checkout")
        return (f"class-disjoint public set: {disjoint.public.size} images of classes "
                f"{sorted(set(self.train_labels[disjoint.public].tolist()))}")

    def summary_lines(self, split: Split) -> list[str]:
        """What notebook 01's summary says about this data set and split."""
        return [f"Fashion-MNIST verified by sha256: {len(self.train_images)} train and "
                f"{len(self.test_images)} test images.",
                f"D: {split.private.size} images ({split.per_class} per private class); R: "
                f"{split.reference.size}, disjoint from D and never seen by any model.",
                f"Public set: {split.public.size} images; E's pool: {split.evaluator.size} "
                "images, none of them in D or R."]


def class_slug(label: int) -> str:
    """A file-name form of a class name ("T-shirt/top" → "t-shirt-top")."""
    return CLASS_NAMES[label].replace("/", "-").replace(" ", "_").lower()


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
                "set; delete it and obtain the data again (python -m lib.cli data status)")
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


def download(dest: Path | None = None) -> Path:
    """Download Fashion-MNIST with torchvision into ``dest`` (network; only when missing)."""
    import torchvision  # only here: the download is the one network use

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


def fetch() -> Path:
    """The folder holding Fashion-MNIST: found locally, else downloaded (the one network use);
    ``DataNotFoundError`` naming the three ways to get it when the download fails."""
    try:
        return find_source_dir()
    except DataNotFoundError:
        print("Fashion-MNIST not found locally; downloading it with torchvision")
        try:
            return download()
        except Exception as err:  # no network, mirror down: say so with the other two ways
            raise DataNotFoundError(_how_to_get_it(candidate_dirs())
                                    + f" [the download failed: {err}]") from err


# ---------------------------------------------------------------------------- splits
def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def private_clusters(train_images: np.ndarray, train_labels: np.ndarray,
                     private_classes: tuple[int, ...], per_class: int,
                     seed: int) -> dict[int, np.ndarray]:
    """The cluster-shift split's private appearance cluster of each private class (sorted
    train indices), by the rule of ``CLUSTER_SHIFT`` (docs/protocol.md, "Choosing a shifted
    split"): the class's images as pixel vectors in [0, 1], centred, projected on their top
    principal components; k-means++ seeded by (``seed``, class); the cluster whose centroid is
    farthest from the class mean (the origin) among those large enough, ties to the larger."""
    from scipy.cluster.vq import kmeans2

    k, need = CLUSTER_SHIFT["k"], CLUSTER_SHIFT["min_cluster_per_class"] * per_class
    clusters = {}
    for c in private_classes:
        idx = np.flatnonzero(np.asarray(train_labels) == c)
        x = np.asarray(train_images)[idx].reshape(len(idx), -1).astype(np.float64) / 255.0
        x -= x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        scores = x @ vt[:CLUSTER_SHIFT["pca_components"]].T
        centroids, assignment = kmeans2(scores, k, iter=CLUSTER_SHIFT["iterations"],
                                        minit="++", seed=np.random.default_rng([seed, c]))
        sizes = np.bincount(assignment, minlength=k)
        eligible = [j for j in range(k) if sizes[j] >= need]
        if not eligible:
            raise InputError(f"cluster-shift: no cluster of class {c} holds {need} images "
                             f"(sizes {sizes.tolist()}); use a smaller private_per_class")
        far = max(eligible, key=lambda j: (float(np.linalg.norm(centroids[j])), sizes[j]))
        clusters[int(c)] = np.sort(idx[assignment == far])
    return clusters


def make_split(train_labels: np.ndarray, test_labels: np.ndarray, kind: str = "same-class",
               per_class: int = 100, seed: int = 0,
               private_classes: tuple[int, ...] = (0, 2, 3, 5, 7),
               clusters: dict[int, np.ndarray] | None = None) -> Split:
    """Draw D and R (``per_class`` each per private class) with ``seed``; derive the rest.
    ``cluster-shift`` draws them from each class's private cluster (``clusters``, from
    ``private_clusters``) and leaves those clusters out of the public set."""
    if kind not in SPLIT_KINDS:
        raise InputError(f"unknown split {kind!r}; valid: {', '.join(SPLIT_KINDS)}")
    if kind == "cluster-shift" and clusters is None:
        raise InputError("the cluster-shift split needs its private clusters "
                         "(lib.data.fashion_mnist.private_clusters)")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    rng = np.random.default_rng(seed)
    private, reference = [], []
    for c in private_classes:
        idx = np.flatnonzero(train_labels == c)
        if kind == "cluster-shift":
            pool = np.asarray(clusters[int(c)], dtype=np.int64)
            if not np.isin(pool, idx).all():
                raise DataCorruptError(f"cluster-shift: the private cluster of class {c} holds "
                                       "images of other classes; restore data/splits with git "
                                       "checkout")
            idx = pool
        if 2 * per_class > idx.size:
            raise InputError(f"class {c} has {idx.size} train images to draw from; D and R need "
                             f"{2 * per_class}")
        perm = rng.permutation(idx)
        private.append(np.sort(perm[:per_class]))
        reference.append(np.sort(perm[per_class:2 * per_class]))
    private, reference = np.concatenate(private), np.concatenate(reference)
    rest = np.setdiff1d(np.arange(train_labels.size), np.concatenate([private, reference]))
    if kind == "same-class":
        public = rest
    elif kind == "class-disjoint":
        public = rest[np.isin(train_labels[rest], CLASS_DISJOINT_PUBLIC)]
    else:
        public = np.setdiff1d(rest, np.concatenate([clusters[int(c)] for c in private_classes]))
    test = np.flatnonzero(np.isin(test_labels, private_classes))
    split = Split(kind, seed, tuple(private_classes), per_class, private, reference,
                  public, rest, test)
    split.check_disjoint()
    return split


def split_filename(kind: str, per_class: int, seed: int) -> str:
    return f"fashion-mnist_{kind}_n{per_class}_seed{seed}.json"


PUBLIC_RULES = {
    "same-class": "train split minus D and R",
    "class-disjoint": f"train images of classes {CLASS_DISJOINT_PUBLIC} minus D and R",
    "cluster-shift": "train split minus the private clusters (which hold D and R)"}


def split_to_json(split: Split, source_sha256: dict,
                  clusters: dict[int, np.ndarray] | None = None) -> dict:
    """The committed form: D and R listed; public/evaluator/test as count + sha256 + rule;
    the cluster-shift split's private clusters listed (k-means is computed once, when the
    file is written, so that another machine's floating point cannot move a border image)."""
    extra = ({"private_clusters": {str(c): np.asarray(v).tolist() for c, v in clusters.items()},
              "cluster_rule": dict(CLUSTER_SHIFT)} if clusters is not None else {})
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
                       "rule": PUBLIC_RULES[split.kind]},
            "evaluator": {"count": int(split.evaluator.size), "sha256": _digest(split.evaluator),
                          "rule": "train split minus D and R"},
            "test": {"count": int(split.test.size), "sha256": _digest(split.test),
                     "rule": "test split, private classes"},
        },
        "source_sha256": dict(source_sha256),
        **extra,
    }


def split_path(kind: str, per_class: int, seed: int) -> Path:
    return paths.splits_dir() / split_filename(kind, per_class, seed)


def write_split(data: FashionMNIST, kind: str, per_class: int, seed: int,
                private_classes: tuple[int, ...]) -> Path:
    """Write the split index file (atomically); returns its path."""
    clusters = (private_clusters(data.train_images.numpy(), data.train_labels.numpy(),
                                 tuple(private_classes), per_class, seed)
                if kind == "cluster-shift" else None)
    split = make_split(data.train_labels.numpy(), data.test_labels.numpy(), kind,
                       per_class, seed, tuple(private_classes), clusters)
    path = split_path(kind, per_class, seed)
    atomic_write_bytes(path, (json.dumps(split_to_json(split, data.sha256, clusters), indent=1)
                              + "\n").encode())
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
            raise DataNotFoundError(f"{path} does not exist; write it with "
                                    "python -m lib.cli data write-splits")
        write_split(data, kind, per_class, seed, private_classes)
    stored = json.loads(path.read_text())
    if stored["source_sha256"] != data.sha256:
        raise DataCorruptError(f"{path} was made from other source files than the ones "
                               f"loaded from {data.source}")
    if list(stored["private_classes"]) != list(private_classes):
        raise InputError(f"{path} is for private classes {stored['private_classes']}, "
                         f"the config asks for {list(private_classes)}")
    clusters = None
    if kind == "cluster-shift":
        if "private_clusters" not in stored:
            raise DataCorruptError(f"{path} lacks the private clusters of the cluster-shift "
                                   "split; restore it with git checkout data/splits")
        clusters = {int(c): np.asarray(v, dtype=np.int64)
                    for c, v in stored["private_clusters"].items()}
    split = make_split(data.train_labels.numpy(), data.test_labels.numpy(), kind, per_class,
                       seed, tuple(private_classes), clusters)
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


def load_for_config(cfg, data: FashionMNIST | None = None) -> tuple[FashionMNIST, Split]:
    """The data and the committed split a resolved profile config names."""
    data = data or load_fashion_mnist()
    return data, load_split(data, cfg["split"], cfg["private_per_class"], cfg["split_seed"],
                            tuple(cfg["private_classes"]))


def split_file(cfg) -> Path:
    """The committed split file a resolved config reads."""
    return split_path(cfg["split"], cfg["private_per_class"], cfg["split_seed"])


def check_inputs(cfg) -> None:
    """The split's constraints on the private classes (before a run folder or a split file
    is made); ``load_fashion_mnist`` names missing data when it loads."""
    if cfg["split"] == "class-disjoint":
        shared = sorted(set(cfg["private_classes"]) & set(CLASS_DISJOINT_PUBLIC))
        if shared:
            raise InputError(f"private_classes={list(cfg['private_classes'])} share {shared} with "
                             f"the class-disjoint split's public classes {CLASS_DISJOINT_PUBLIC}; "
                             "choose private classes among the others or use split=same-class")


def write_splits(data: FashionMNIST, configs) -> list[Path]:
    """Write the split files of every Fashion-MNIST config in ``configs``, both kinds."""
    return [write_split(data, kind, cfg["private_per_class"], cfg["split_seed"],
                        tuple(cfg["private_classes"]))
            for cfg in configs if cfg["dataset"] == "fashion-mnist" for kind in SPLIT_KINDS]
