"""Pretrained weights for the ``paper`` profile: LPIPS-VGG's VGG16 and Inception-v3 (FID).

Nothing downloads weights at run time. ``make weights`` (``python -m lib.cli weights fetch``)
downloads them once, when online, into ``weights/`` (or ``$DDCS_MI_WEIGHTS``), checks the
sha256 prefix torchvision puts in each file name, and records the full sha256 in
``SHA256SUMS``. ``require(names)`` is what a stage calls: it names what is missing and how to
get it, and verifies what is there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .artifacts import atomic_write_bytes, sha256_file
from .errors import DataCorruptError, WeightsError
from .paths import weights_dir

LPIPS_VGG_WEIGHTS_FILE = "vgg16-397923af.pth"          # ImageNet VGG16 (LPIPS-VGG's backbone)
INCEPTION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"   # ImageNet Inception-v3 (FID)
WEIGHTS = {
    LPIPS_VGG_WEIGHTS_FILE: "https://download.pytorch.org/models/vgg16-397923af.pth",
    INCEPTION_WEIGHTS_FILE:
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
}
SUMS = "SHA256SUMS"


def needed_for(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The pretrained weight files a resolved config needs."""
    names = []
    if cfg["perc_arch"] == "lpips-vgg":
        names.append(LPIPS_VGG_WEIGHTS_FILE)
    if cfg["fid_network"] == "inception":
        names.append(INCEPTION_WEIGHTS_FILE)
    return tuple(names)


def _prefix(name: str) -> str:
    return Path(name).stem.rsplit("-", 1)[-1]


USES = {LPIPS_VGG_WEIGHTS_FILE: "the LPIPS-VGG distance (the paper profile's d_P, the audit's "
                                "--distance lpips-vgg)",
        INCEPTION_WEIGHTS_FILE: "Inception FID (the paper profile)"}


def require(names=tuple(WEIGHTS), folder: str | Path | None = None) -> Path:
    """The weights folder, after checking every file in ``names`` is there and intact."""
    folder = Path(folder) if folder is not None else weights_dir()
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        uses = "; ".join(f"{n} for {USES.get(n, 'this computation')}" for n in missing)
        raise WeightsError(
            f"missing pretrained weights in {folder}: {uses}; nothing is downloaded at run "
            "time. Run `make weights` on a machine with internet (or set DDCS_MI_WEIGHTS to a "
            "folder that holds them)")
    recorded = _read_sums(folder)
    for name in names:
        digest = sha256_file(folder / name)
        if not digest.startswith(_prefix(name)) or recorded.get(name, digest) != digest:
            raise DataCorruptError(f"{folder / name} does not match its sha256 ({digest[:12]}…); "
                             "delete it and run `make weights` again")
    return folder


def _read_sums(folder: Path) -> dict[str, str]:
    path = folder / SUMS
    if not path.is_file():
        return {}
    return {name: digest for digest, name in
            (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())}


def fetch(folder: str | Path | None = None, download=None) -> Path:
    """Download the missing weights (sha256 prefix checked) and write ``SHA256SUMS``."""
    folder = Path(folder) if folder is not None else weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if download is None:
        from torch.hub import download_url_to_file as download  # the one network use
    for name, url in WEIGHTS.items():
        if not (folder / name).is_file():
            print(f"downloading {name}")
            download(url, str(folder / name), hash_prefix=_prefix(name))
    lines = [f"{sha256_file(folder / n)}  {n}" for n in sorted(WEIGHTS)]
    atomic_write_bytes(folder / SUMS, ("\n".join(lines) + "\n").encode())
    require(tuple(WEIGHTS), folder)
    print(f"weights verified in {folder}")
    return folder
