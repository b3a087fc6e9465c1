"""Face data sets for the ``paper`` profile: identity folders, the paper's split, loading.

The face data sets cannot be downloaded here and are never committed; the user downloads
them and this module writes *our split files* from their copy with a seeded, committed
command (``python -m lib.faces split ...``). Two layouts are read:

- ``folders``: one sub-folder per identity holding that identity's images (UMDFaces after
  the user crops it with the data set's boxes, FaceScrub, CelebA rearranged by identity);
- ``celeba``: CelebA as distributed: a flat image folder plus ``identity_CelebA.txt``
  (``<file name> <identity id>`` per line).

FFHQ and CelebA-HQ have no identity labels: they serve as the public set only (``flat``).

The paper's split (PAPER.md §5): private identities are those with at least 30 images, the
first 1,000 of them (sorted by identity name); the last 3 images of each (sorted by file
name) are held out as the non-member reference R; attacks and evaluation use the first 200.
The public set is a disjoint data set (or the identities of the same data set that are not
private). Licences: UMDFaces, CelebA/CelebA-HQ, FFHQ (CC BY-NC-SA 4.0, images under their
own licences) and FaceScrub are for non-commercial research; see each data set's terms.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("folders", "celeba", "flat")


class FaceDataError(FileNotFoundError):
    """A face data folder is missing or does not have the expected layout."""


def _images_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan(root: str | Path, layout: str = "folders",
         identity_file: str | Path | None = None) -> dict[str, list[str]]:
    """Identity → sorted image paths relative to ``root`` (``flat``: one pseudo-identity "")."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
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
               holdout: int = 3, seed: int = 0, same_dataset: bool = False) -> dict[str, Any]:
    """The paper's split as a JSON-ready dict (see the module). ``seed`` is recorded and
    reserved for sub-sampling; the rule itself is deterministic (sorted names)."""
    if holdout < 1 or min_images <= holdout:
        raise ValueError(f"need holdout ≥ 1 and min_images > holdout; got {holdout}, {min_images}")
    eligible = [k for k in sorted(private) if len(private[k]) >= min_images]
    if len(eligible) < n_attacked:
        raise ValueError(f"only {len(eligible)} identities have ≥ {min_images} images; the "
                         f"split needs at least {n_attacked} (lower n_attacked or min_images)")
    chosen = eligible[:n_identities]
    train = {k: private[k][:-holdout] for k in chosen}
    held_out = {k: private[k][-holdout:] for k in chosen}
    public_ids = [k for k in sorted(public) if not (same_dataset and k in set(chosen))]
    public_files = [f for k in public_ids for f in public[k]]
    if not public_files:
        raise ValueError("the public set is empty: pass a disjoint data set or more identities")
    return {"kind": "faces", "seed": seed, "rule": {"min_images": min_images,
            "n_identities": n_identities, "n_attacked": n_attacked, "holdout": holdout},
            "identities": chosen, "attacked": chosen[:n_attacked],
            "train": train, "reference": held_out, "public_identities": public_ids,
            "public_count": len(public_files), "public_sha256": _digest(public_files),
            "private_sha256": _digest([f for k in chosen for f in private[k]])}


def write_split(split: dict, path: str | Path) -> Path:
    from .artifacts import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, split)
    return path


def check_split(split: dict, private: dict[str, list[str]], public: dict[str, list[str]]) -> None:
    """Raise ``FaceDataError`` when the user's copy no longer matches a written split."""
    digest = _digest([f for k in split["identities"] for f in private.get(k, [])])
    if digest != split["private_sha256"]:
        raise FaceDataError("the private face folder differs from the one the split was written "
                            "from (file list sha256 mismatch); re-run `python -m lib.faces split`")
    files = [f for k in split["public_identities"] for f in public.get(k, [])]
    if _digest(files) != split["public_sha256"]:
        raise FaceDataError("the public face folder differs from the one the split was written "
                            "from; re-run `python -m lib.faces split`")


def load_images(root: str | Path, files: list[str], size: int) -> torch.Tensor:
    """RGB images, centre-cropped to a square, resized to ``size``, in [-1, 1], (N, 3, s, s)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    out = []
    for rel in files:
        with Image.open(Path(root) / rel) as img:
            img = img.convert("RGB")
            side = min(img.size)
            img = TF.center_crop(img, [side, side]).resize((size, size), Image.BILINEAR)
            out.append(TF.to_tensor(img))
    if not out:
        raise ValueError("no images to load")
    return torch.stack(out).mul(2).sub(1)


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.faces split --private ROOT [--private-layout L] --public ROOT ...``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lib.faces")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="write our split file from your copy of the face data")
    p.add_argument("--private", required=True)
    p.add_argument("--private-layout", default="folders", choices=LAYOUTS[:2])
    p.add_argument("--identity-file", default=None)
    p.add_argument("--public", required=True)
    p.add_argument("--public-layout", default="flat", choices=LAYOUTS)
    p.add_argument("--min-images", type=int, default=30)
    p.add_argument("--identities", type=int, default=1000)
    p.add_argument("--attacked", type=int, default=200)
    p.add_argument("--holdout", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    private = scan(args.private, args.private_layout, args.identity_file)
    public = scan(args.public, args.public_layout)
    same = Path(args.private).resolve() == Path(args.public).resolve()
    split = make_split(private, public, min_images=args.min_images, n_identities=args.identities,
                       n_attacked=args.attacked, holdout=args.holdout, seed=args.seed,
                       same_dataset=same)
    write_split(split, args.out)
    print(f"{len(split['identities'])} private identities ({len(split['attacked'])} attacked), "
          f"{split['public_count']} public images → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
