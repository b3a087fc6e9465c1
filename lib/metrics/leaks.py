"""Positive controls: what the membership tests could see, by construction.

Nothing here is an attack, and nothing here is available to an attacker: every function takes
the private images themselves.

- ``project``: an oracle projection onto a generator's range: for each target image, the
  code whose image is nearest in a perceptual distance (Adam on the distance from several
  random codes, the best kept). On a subset of D and of R it says how close the prior can come
  to individual samples at all ("the prior's reach"), against each sample's distance to its
  nearest other same-class image; projections of D members are also one kind of leak.
- ``blend``: α·member + (1 − α)·a same-class public image: a leak of known strength α
  (``lazy_blend``: the same, made a slice at a time for the judge to stream).
- ``dose``: which reconstructions a dose f replaces, and by which members' leaks: per class,
  a seeded random round(f·n) of its reconstructions, each by a different member, the members
  drawn in one seeded order so that a larger dose contains every leak of a smaller one. A leak
  keeps the starting point of the reconstruction it replaces (claim C1c compares a final
  reconstruction with its starting point).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..artifacts import PartialState
from ..data.images import LazyImages
from ..errors import InputError
from ..inference import frozen, module_device
from .ddcs import Blocks

LEAK_FRACTIONS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
BLEND_ALPHAS = (0.2, 0.35, 0.5)


def project(generator: nn.Module, distance: nn.Module, targets: torch.Tensor, *,
            steps: int = 150, lr: float = 0.05, restarts: int = 4, seed: int = 0,
            batch_size: int = 512, device: str | torch.device | None = None,
            partial: PartialState | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, images, distances): for each target image the best of ``restarts`` codes,
    each optimised with Adam for ``steps`` steps on d(G(z), target); all on ``device``
    (default: the generator's; the generator and the distance are moved there), in batches
    of ``batch_size`` codes; results on the CPU.

    ``partial`` (enabled): the codes and distances are saved after every batch, and a
    projection cut short resumes at the batch it was on; every batch being optimised on its
    own, the result equals an uncut one bit for bit."""
    if steps < 0 or restarts < 1 or len(targets) == 0:
        raise InputError(f"project needs steps ≥ 0, restarts ≥ 1 and some targets (got {steps}, "
                         f"{restarts}, {len(targets)})")
    device = module_device(generator) if device is None else torch.device(device)
    generator.to(device), distance.to(device)
    draws = torch.Generator().manual_seed(seed)
    n = len(targets)
    codes = torch.randn(restarts * n, generator.z_dim, generator=draws)
    repeated = targets.repeat(restarts, 1, 1, 1)
    best = torch.full((restarts * n,), float("inf"))
    saved = partial.load() if partial is not None else None
    first = 0
    if saved is not None:
        codes, best, first = saved["codes"], saved["best"], int(saved["next"])
    with frozen(generator, distance):
        for lo in range(first, len(codes), batch_size):
            z = codes[lo:lo + batch_size].to(device).requires_grad_(True)
            to_target = _against(distance, repeated[lo:lo + batch_size].to(device))
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                to_target(generator(z)).sum().backward()
                opt.step()
            with torch.no_grad():
                best[lo:lo + batch_size] = to_target(generator(z)).cpu()
            codes[lo:lo + batch_size] = z.detach().cpu()
            if partial is not None and partial.enabled:
                partial.save({"codes": codes, "best": best, "next": lo + batch_size})
        pick = best.reshape(restarts, n).argmin(0) * n + torch.arange(n)
        with torch.no_grad():
            images = torch.cat([generator(codes[pick][i:i + batch_size].to(device)).cpu()
                                for i in range(0, n, batch_size)])
    return codes[pick], images, best[pick]


def _against(distance: nn.Module, targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ distance(x, targets)``, the targets embedded once where the distance can
    (``PerceptualDistance.against``: the same numbers), else evaluated each call."""
    against = getattr(distance, "against", None)
    return against(targets) if against is not None else (lambda x: distance(x, targets))


def blend(members: torch.Tensor, others: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·member + (1 − α)·other, image by image (both in [-1, 1])."""
    if members.shape != others.shape or not 0.0 < alpha < 1.0:
        raise InputError(f"blend needs images of one shape and 0 < α < 1 (got {tuple(members.shape)}"
                         f", {tuple(others.shape)}, α = {alpha}); α = 1 would be an exact copy")
    return alpha * members + (1.0 - alpha) * others


def lazy_blend(members: torch.Tensor, partner_rows: Callable[[int, int], torch.Tensor],
               alpha: float) -> LazyImages:
    """``blend`` of every member with its partner, made a slice at a time: ``partner_rows(lo,
    hi)`` gives the partners of members ``lo`` … ``hi - 1``. The same images as the whole
    ``blend`` (it is elementwise), never all at once."""
    if not 0.0 < alpha < 1.0:
        raise InputError(f"blend needs 0 < α < 1, got {alpha}; α = 1 would be an exact copy")
    return LazyImages(len(members), tuple(members.shape[1:]), members.dtype,
                      lambda lo, hi: blend(members[lo:hi], partner_rows(lo, hi), alpha))


def same_class_partners(labels: np.ndarray, pool_labels: np.ndarray, seed: int) -> np.ndarray:
    """For each label, a random position in ``pool_labels`` of the same class (any class when
    the pool has none of it: the face data's public set is other people)."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        pool = np.flatnonzero(pool_labels == c)
        pool = pool if pool.size else np.arange(len(pool_labels))
        out[rows] = rng.choice(pool, size=rows.size, replace=pool.size < rows.size)
    return out


def dose(recon_labels: np.ndarray, member_labels: np.ndarray, fraction: float,
         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the reconstructions to replace, the member each gets a leak of): per class,
    round(fraction · n) rows and as many different members — cycling through the class's
    members in the same order when it has fewer than that (the face split: 50 reconstructions,
    about 27 members per identity); nested in ``fraction`` for a fixed ``seed`` (see the
    module)."""
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"a dose is a fraction in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    rows, members = [], []
    for c in np.unique(recon_labels):
        mine, theirs = np.flatnonzero(recon_labels == c), np.flatnonzero(member_labels == c)
        order_rows, order_members = rng.permutation(mine), rng.permutation(theirs)
        k = int(round(fraction * mine.size))
        if k and not theirs.size:
            raise InputError(f"class {c}: a dose of {fraction} replaces {k} reconstructions but "
                             "the class has no members to leak")
        rows.append(order_rows[:k])
        members.append(np.resize(order_members, k) if k else order_members[:0])
    return np.concatenate(rows), np.concatenate(members)


def dosed_blocks(blocks: Blocks, labels: np.ndarray, replaced: np.ndarray, leak_blocks: Blocks,
                 leak_labels: np.ndarray, leaked: np.ndarray) -> Blocks:
    """Class blocks of a set whose rows ``replaced`` (positions in the set) are replaced by
    rows ``leaked`` (positions in the leak set, same class) of the leak set's blocks — what
    ``dose`` gives: the dense ``d[replaced] = d_leak[leaked]``, class by class."""
    position, leak_position = class_positions(labels), class_positions(leak_labels)
    out = {c: block.copy() for c, block in blocks.items()}
    for c in np.unique(labels[replaced]):
        mine = labels[replaced] == c
        out[int(c)][position[replaced[mine]]] = leak_blocks[int(c)][leak_position[leaked[mine]]]
    return out


def class_positions(labels: np.ndarray) -> np.ndarray:
    """Each element's position among the elements of its class (0, 1, … in order)."""
    position = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        position[rows] = np.arange(rows.size)
    return position
