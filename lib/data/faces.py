"""Face data sets for the ``paper`` profile: identity folders, the paper's split, loading.

The face data sets cannot be downloaded here and are never committed; the user downloads
them and this module writes *our split files* from their copy with a seeded, committed
command (``python -m lib.cli faces split ...``). Two layouts are read:

- ``folders``: one sub-folder per identity holding that identity's images (UMDFaces after
  the user crops it with the data set's boxes, FaceScrub, CelebA rearranged by identity);
- ``celeba``: CelebA as distributed: a flat image folder plus ``identity_CelebA.txt``
  (``<file name> <identity id>`` per line).

FFHQ and CelebA-HQ have no identity labels: they serve as the public set only (``flat``).

The split file records where the data were (``sources``) and the sha256 of the file lists;
``load_for_config`` reads it for the ``paper`` profile (config key ``face_split``), checks the
user's folders still match it (move them? set ``$DDCS_MI_FACES_PRIVATE`` /
``$DDCS_MI_FACES_PUBLIC``), decodes the images once at the profile's size into a safetensors
cache under ``data/cache/`` (git-ignored), and returns a ``FaceData`` and a ``Split``:
D = the training images of the attacked identities, R = their held-out images (also T's and
E's test images: a face data set has no other images of these people), the evaluator's
training set = D (as in the paper, so E-feature metrics favour members: the membership
claim C1b is read under LPIPS-VGG), public = the public set.

The paper's split (docs/method.md, "The setting"): private identities are those with at least 30 images, the
first 1,000 of them (sorted by identity name); the last 3 images of each (sorted by file
name) are held out as the non-member reference R; attacks and evaluation use the first 200.
The public set is a disjoint data set (or the identities of the same data set that are not
private). Licences: UMDFaces, CelebA/CelebA-HQ, FFHQ (CC BY-NC-SA 4.0, images under their
own licences) and FaceScrub are for non-commercial research; see each data set's terms.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..artifacts import atomic_write_json, load_tensors, save_tensors
from ..errors import ArtifactError, FaceDataError, InputError
from .images import role_indices
from .split import Split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("folders", "celeba", "flat")


def _images_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan(root: str | Path, layout: str = "folders",
         identity_file: str | Path | None = None) -> dict[str, list[str]]:
    """Identity → sorted image paths relative to ``root`` (``flat``: one pseudo-identity "")."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise FaceDataError(f"face data folder {root} does not exist; download the data set "
                            "and pass its folder (README: 'The paper profile')")
    if layout == "flat":
        files = _images_in(root)
        if not files:
            raise FaceDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
        return {"": files}
    if layout == "celeba":
        path = Path(identity_file) if identity_file else root.parent / "identity_CelebA.txt"
        if not path.is_file():
            raise FaceDataError(f"CelebA identity file {path} is missing; pass identity_file=")
        present = set(_images_in(root))
        out: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            name, identity = line.split()
            if name in present:
                out.setdefault(identity, []).append(name)
        if not out:
            raise FaceDataError(f"none of the images listed in {path} are in {root}")
        return {k: sorted(v) for k, v in sorted(out.items())}
    out = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _images_in(sub)
        if files:
            out[sub.name] = [f"{sub.name}/{f}" for f in files]
    if not out:
        raise FaceDataError(f"{root} has no identity sub-folders with images; layout 'folders' "
                            "expects <root>/<identity>/<image>")
    return out


def _digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def make_split(private: dict[str, list[str]], public: dict[str, list[str]], *,
               min_images: int = 30, n_identities: int = 1000, n_attacked: int = 200,
               holdout: int = 3, seed: int = 0, same_dataset: bool = False,
               sources: dict | None = None) -> dict[str, Any]:
    """The paper's split as a JSON-ready dict (see the module). ``seed`` is recorded and
    reserved for sub-sampling; the rule itself is deterministic (sorted names). ``sources``
    ({"private"|"public": {"root", "layout", "identity_file"}}) says where the data are."""
    if holdout < 1 or min_images <= holdout:
        raise InputError(f"need holdout ≥ 1 and min_images > holdout; got {holdout}, {min_images}")
    eligible = [k for k in sorted(private) if len(private[k]) >= min_images]
    if len(eligible) < n_attacked:
        raise InputError(f"only {len(eligible)} identities have ≥ {min_images} images; the "
                         f"split needs at least {n_attacked} (lower n_attacked or min_images)")
    chosen = eligible[:n_identities]
    train = {k: private[k][:-holdout] for k in chosen}
    held_out = {k: private[k][-holdout:] for k in chosen}
    public_ids = [k for k in sorted(public) if not (same_dataset and k in set(chosen))]
    public_files = [f for k in public_ids for f in public[k]]
    if not public_files:
        raise InputError("the public set is empty: pass a disjoint data set or more identities")
    return {"kind": "faces", "seed": seed, "rule": {"min_images": min_images,
            "n_identities": n_identities, "n_attacked": n_attacked, "holdout": holdout},
            "identities": chosen, "attacked": chosen[:n_attacked],
            "train": train, "reference": held_out, "public_identities": public_ids,
            "public_count": len(public_files), "public_sha256": _digest(public_files),
            "private_sha256": _digest([f for k in chosen for f in private[k]]),
            "sources": sources or {}}


def write_split(split: dict, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_json(path, split)
    return path


def check_split(split: dict, private: dict[str, list[str]], public: dict[str, list[str]]) -> None:
    """Raise ``FaceDataError`` when the user's copy no longer matches a written split."""
    digest = _digest([f for k in split["identities"] for f in private.get(k, [])])
    if digest != split["private_sha256"]:
        raise FaceDataError("the private face folder differs from the one the split was written "
                            "from (file list sha256 mismatch); re-run `python -m lib.cli faces split`")
    files = [f for k in split["public_identities"] for f in public.get(k, [])]
    if _digest(files) != split["public_sha256"]:
        raise FaceDataError("the public face folder differs from the one the split was written "
                            "from; re-run `python -m lib.cli faces split`")


def load_images(root: str | Path, files: list[str], size: int) -> torch.Tensor:
    """RGB images, centre-cropped to a square, resized to ``size``, in [-1, 1], (N, 3, s, s)."""
    from PIL import Image  # only the face data decode image files
    from torchvision.transforms import functional as TF

    out = []
    for rel in files:
        with Image.open(Path(root) / rel) as img:
            img = img.convert("RGB")
            side = min(img.size)
            img = TF.center_crop(img, [side, side]).resize((size, size), Image.BILINEAR)
            out.append(TF.to_tensor(img))
    if not out:
        raise InputError("no images to load")
    return torch.stack(out).mul(2).sub(1)


# ------------------------------------------------------------------ the paper profile's data
@dataclass(frozen=True)
class FaceData:
    """Decoded face images for a run, in the shape ``lib.data`` expects of a data set.

    ``train_images``: uint8 (N, 3, S, S), the attacked identities' training images, then their
    held-out images, then the public images; ``train_labels``: the identity's index in the
    split file (public images: ``n_identities`` + public identity index). There is no separate
    test split: ``test_*`` are the same tensors (the test indices are R's)."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    identities: tuple[str, ...]
    image_size: int
    source: str
    sha256: dict = None   # the split file's sha256 of the private and public file lists
    channels = 3

    @property
    def test_images(self) -> torch.Tensor:
        return self.train_images

    @property
    def test_labels(self) -> torch.Tensor:
        return self.train_labels

    @property
    def class_names(self) -> list[str]:
        return list(self.identities)

    def label_name(self, label: int) -> str:
        """An identity's name (public identities have no name in the run)."""
        return self.identities[label] if 0 <= label < len(self.identities) else f"public #{label}"

    def source_line(self) -> str:
        return f"loaded from {self.source}"

    def role_counts(self, split: Split) -> pd.DataFrame:
        """Per role: images, identities and images per identity (min / median / max)."""
        rows = {}
        for role, (idx, labels) in role_indices(self, split).items():
            per = np.unique(labels[idx].numpy(), return_counts=True)[1]
            rows[role] = {"images": int(per.sum()), "identities": len(per), "min per identity":
                          int(per.min()), "median": float(np.median(per)), "max": int(per.max())}
        return pd.DataFrame(rows).T

    def evaluator_test_indices(self, split: Split) -> np.ndarray:
        """E trains on D: it is tested on R, the only images of these people it has not seen."""
        return split.test

    def public_contrast(self, split: Split) -> str:
        return "the face data's public set is other people already (identity-disjoint)"

    def summary_lines(self, split: Split) -> list[str]:
        return [f"Face data checked against the split file: {len(self.train_images)} images.",
                f"D: {split.private.size} images of {len(split.private_classes)} identities; R: "
                f"{split.reference.size} held-out images of the same people, never seen by any "
                "model.",
                f"Public set: {split.public.size} images of other people; E trains on D itself "
                "(as in the paper: no other images of these people exist), so E-feature metrics "
                "favour members and the membership claim C1b is read under d_P."]


def class_slug(label: int) -> str:
    """A file-name form of an identity index."""
    return f"class_{label:04d}"


def _decode_uint8(root: Path, files: list[str], size: int, chunk: int = 512) -> torch.Tensor:
    """``load_images`` in chunks, stored as uint8 (a quarter of the memory of float32)."""
    parts = [load_images(root, files[i:i + chunk], size).add(1).mul(127.5).round()
             .clamp(0, 255).to(torch.uint8) for i in range(0, len(files), chunk)]
    return torch.cat(parts) if parts else torch.empty(0, 3, size, size, dtype=torch.uint8)


def split_file(cfg) -> Path:
    """The face split file of a config (``$DDCS_MI_FACE_SPLIT`` wins; relative to the repo)."""
    path = paths.face_split_override() or Path(cfg["face_split"])
    return path if path.is_absolute() else paths.repo_root() / path


def source(split: dict, role: str) -> tuple[Path, str, str | None]:
    """(folder, layout, identity file) of the ``private`` or ``public`` face data."""
    info = split.get("sources", {}).get(role)
    override = paths.face_folder_override(role)
    if override is None and not info:
        raise FaceDataError(f"the split file names no {role} data folder; set "
                            f"${paths.ENV_FACES[role]}")
    root = override or Path(info["root"])
    layout = (info or {}).get("layout", "folders" if role == "private" else "flat")
    return root, layout, (info or {}).get("identity_file")


def read_split(cfg) -> dict:
    """The split file of ``cfg``, or a ``FaceDataError`` that says how to write it."""
    path = split_file(cfg)
    if not path.is_file():
        raise FaceDataError(
            f"the {cfg['profile']} profile reads the face split file {path} (missing). Write it "
            "from your copy of the face data: python -m lib.cli faces split --private <folder> "
            f"--public <folder> --out {path} (README: 'The paper profile'), or set the config "
            f"key face_split (or ${paths.ENV_FACE_SPLIT}) to your split file")
    split = json.loads(path.read_text())
    if split.get("kind") != "faces":
        raise FaceDataError(f"{path} is not a face split file (kind {split.get('kind')!r})")
    return split


def attacked_count(cfg, split: dict) -> int:
    """K, the number of private identities the config trains T on and attacks: its
    ``private_classes`` must be 0..K−1 (the first K identities of the split file)."""
    classes = [int(c) for c in cfg["private_classes"]]
    k = len(classes)
    if classes != list(range(k)) or not 0 < k <= len(split["identities"]):
        raise InputError(f"for the face data, private_classes must be 0..K−1 with K ≤ "
                         f"{len(split['identities'])} (the split's identities); got "
                         f"{classes[:5]}{'…' if k > 5 else ''} ({k} classes)")
    return k


def cache_path(split: dict, cfg) -> Path:
    """Where the decoded images of a config are cached (``data/cache/``, git-ignored)."""
    return _cache_path(split, attacked_count(cfg, split), cfg["image_size"])


def _cache_path(split: dict, k: int, size: int) -> Path:
    key = _digest([split["private_sha256"], split["public_sha256"], str(k), str(size),
                   json.dumps(split["identities"][:k])])
    return paths.cache_dir() / f"faces_k{k}_{size}px_{key[:16]}.safetensors"


def _file_lists(split: dict) -> dict:
    return {"private file list": split["private_sha256"],
            "public file list": split["public_sha256"]}


def load_face_data(split: dict, k: int, size: int, cache: bool = True) -> FaceData:
    """Decode (or read from the cache) the images of the first ``k`` identities and the
    public set at ``size`` px, after checking the folders still match the split file."""
    identities = split["identities"]
    path = _cache_path(split, k, size)
    if cache and path.is_file():
        try:
            tensors, _ = load_tensors(path)
            return FaceData(tensors["images"], tensors["labels"], tuple(identities[:k]), size,
                            f"cache {path.name}", _file_lists(split))
        except (ArtifactError, KeyError) as err:  # damaged cache: say so and decode again
            print(f"warning: the face cache {path} is unreadable ({err}); decoding again")
    p_root, p_layout, p_ids = source(split, "private")
    q_root, q_layout, _ = source(split, "public")
    private, public = scan(p_root, p_layout, p_ids), scan(q_root, q_layout)
    check_split(split, private, public)
    private_files, labels = [], []
    for role in ("train", "reference"):
        for i, name in enumerate(identities[:k]):
            private_files += split[role][name]
            labels += [i] * len(split[role][name])
    public_files = []
    for j, name in enumerate(split["public_identities"]):
        public_files += public[name]
        labels += [len(identities) + j] * len(public[name])
    images = torch.cat([_decode_uint8(p_root, private_files, size),
                        _decode_uint8(q_root, public_files, size)])
    data = FaceData(images, torch.as_tensor(labels, dtype=torch.long), tuple(identities[:k]),
                    size, f"{p_root.name}/ + {q_root.name}/", _file_lists(split))
    if cache:
        save_tensors(path, {"images": images, "labels": data.train_labels})
    return data


def load_for_config(cfg, data: FaceData | None = None) -> tuple[FaceData, Split]:
    """(FaceData, Split) for a ``faces`` config (see the module)."""
    split = read_split(cfg)
    k = attacked_count(cfg, split)
    data = data or load_face_data(split, k, cfg["image_size"])
    labels = data.train_labels.numpy()
    n_train = sum(len(split["train"][n]) for n in split["identities"][:k])
    n_ref = sum(len(split["reference"][n]) for n in split["identities"][:k])
    private = np.arange(n_train)
    reference = np.arange(n_train, n_train + n_ref)
    public = np.arange(n_train + n_ref, len(labels))
    out = Split("faces", int(split["seed"]), tuple(range(k)), 0, private, reference, public,
                evaluator=private, test=reference, eval_classes=tuple(range(k)),
                public_classes=tuple(sorted(set(labels[public].tolist()))))
    out.check_disjoint()
    return data, out


def check_inputs(cfg) -> None:
    """Fail early, with the fix in the message, when the split file or the face folders a
    config needs are missing."""
    split = read_split(cfg)
    attacked_count(cfg, split)
    if cache_path(split, cfg).is_file():
        return
    for role in ("private", "public"):
        root, _, _ = source(split, role)
        if not root.is_dir():
            raise FaceDataError(
                f"the {role} face folder {root} named by {split_file(cfg)} does not exist; put "
                f"the data there or set ${paths.ENV_FACES[role]} to where it is now")


def write_standin(root: str | Path, identities: int = 8, per_identity: int = 12,
                  public_identities: int = 8, per_public: int = 12, size: int = 112,
                  seed: int = 0) -> tuple[Path, Path]:
    """A generated stand-in for a face data set (no real faces): ``root/private`` and
    ``root/public`` in the ``folders`` layout, one sub-folder per identity. Each identity
    is a fixed random colour blob pattern on a gradient, jittered per image, so classifiers
    can learn identities and the pipeline's logic and speed can be tested. Returns the two
    folders."""
    from PIL import Image  # only the face data decode image files

    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for part, n_ids, per in (("private", identities, per_identity),
                             ("public", public_identities, per_public)):
        for i in range(n_ids):
            folder = root / part / f"{part[:3]}{i:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            centres = rng.uniform(0.25, 0.75, size=(3, 2))
            colours = rng.uniform(0, 255, size=(3, 3))
            base = rng.uniform(40, 200, size=3)
            for j in range(per):
                shift = rng.normal(0, 0.03, size=2)
                img = base[None, None, :] * (0.6 + 0.4 * yy[..., None])
                for (cy, cx), colour in zip(centres + shift, colours):
                    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)[..., None]
                    img = img * (1 - blob) + colour[None, None, :] * blob
                img = img + rng.normal(0, 8, size=img.shape)
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{j:04d}.png")
    return root / "private", root / "public"
