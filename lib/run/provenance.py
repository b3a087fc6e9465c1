"""Where a result came from: the git commit, whether the tree was dirty, package versions,
the machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

import torch

from .. import paths

PACKAGES = ["torch", "torchvision", "kornia", "numpy", "scipy", "pandas", "matplotlib",
            "seaborn", "safetensors", "papermill", "nbval", "prdc", "lpips"]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=paths.repo_root(), capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_commit(short: bool = True) -> str:
    """The commit of HEAD ("nogit" outside a git checkout)."""
    return _git("rev-parse", "--short" if short else "--verify", "HEAD") or "nogit"


def git_dirty() -> bool:
    """Whether tracked files differ from HEAD."""
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def git_dirty_files(paths: tuple[str, ...] = ("lib", "notebooks", "requirements.txt")) -> list[str]:
    """Files that differ from HEAD: tracked changes anywhere, untracked files under ``paths``
    (what the notebooks' outputs depend on)."""
    tracked = _git("status", "--porcelain", "--untracked-files=no") or ""
    untracked = _git("status", "--porcelain", "--untracked-files=all", "--", *paths) or ""
    lines = {line[3:] for line in (tracked + "\n" + untracked).splitlines() if line.strip()}
    return sorted(lines)


def environment_info(device: str = "") -> dict:
    """Python, package versions, git commit and state, CPU count, torch threads and GPU."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions,
            "git_commit": git_commit(short=False), "git_dirty": git_dirty(),
            "executable": sys.executable, "requested_device": device,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def provenance_text(device: str = "", run_dir_text: str = "") -> str:
    """Versions, device and git commit, as shown in every notebook's Provenance section."""
    info = environment_info(device)
    lines = [f"python {info['python']} on {info['platform']} ({info['cpu_count']} CPUs)",
             "packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v),
             f"git commit {info['git_commit'][:12]}" + (" (dirty)" if info["git_dirty"] else ""),
             f"torch threads {info.get('torch_threads')}, CUDA: {info.get('cuda')}"]
    if device:
        lines.append(f"device {device}, run folder {run_dir_text}")
    return "\n".join(lines)
