"""The PPA-style attack (Struppek et al. 2022; docs/method.md, "The attacks") on a GAN prior.

1. Sample a pool of latents once; for each target class keep the candidates the frozen
   target T is most confident about for that class (a latent may serve several classes).
2. Optimise every chosen latent (all classes in one batch) with Adam on the Poincaré loss
   between T's L1-normalised output on a random augmentation of G(z) and the class.
3. Keep per class the latents with the highest confidence averaged over many random
   augmentations ("robust" confidence).

The attacker knows the generator, the target and the number of target classes only. All
randomness comes from ``seed``: the pool from its own stream, and every class's views (steps 2
and 3) from a stream of the class (``lib.seeding.class_seed``), each with its own forward
passes and optimiser; latents from seeded ``torch.Generator`` objects, kornia augmentations
inside a forked, seeded global RNG. So the classes are independent: ``ppa_attack_parts`` on
a subset of the classes gives each the part it has in the whole attack (``lib.attacks.parts``),
which is how the attack is sharded across processes.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import attack_view
from ..errors import InputError
from ..inference import class_probabilities, frozen, generate, module_device
from ..seeding import class_seed, derive_seed, seeded_rng
from .parts import PartCallback, check_classes, finish_attack, scalar


# ----------------------------------------------------------------------------- loss
def poincare_loss(logits: torch.Tensor, targets: torch.Tensor, xi: float = 1e-4) -> torch.Tensor:
    """Poincaré distance between ``logits``/‖logits‖₁ and the one-hot class (1 → 1 − ξ), (N,).

    d(u, v) = arccosh(1 + 2‖u − v‖² / ((1 − ‖u‖²)(1 − ‖v‖²))); per sample, not averaged.
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise InputError(f"need logits (N, C) and targets (N,); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if not 0.0 < xi < 1.0:
        raise InputError(f"xi must lie in (0, 1); got {xi}")
    u = logits / logits.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    v = F.one_hot(targets, logits.shape[1]).to(logits.dtype) * (1.0 - xi)
    u_sq = u.pow(2).sum(dim=1)
    v_sq = v.pow(2).sum(dim=1)
    diff_sq = (u - v).pow(2).sum(dim=1)
    denom = ((1.0 - u_sq) * (1.0 - v_sq)).clamp_min(1e-12)
    return torch.acosh(1.0 + 2.0 * diff_sq / denom)


# ----------------------------------------------------------------------------- selection
def select_candidates(confidences: torch.Tensor, per_class: int) -> torch.Tensor:
    """For each class j the ``per_class`` rows with the highest ``confidences[:, j]``, (C, k).

    ``confidences`` is (M, C); a row may be chosen by several classes. Ties keep torch's
    ``topk`` order (deterministic on the CPU).
    """
    if confidences.ndim != 2:
        raise InputError(f"need confidences (M, C); got shape {tuple(confidences.shape)}")
    if not 1 <= per_class <= confidences.shape[0]:
        raise InputError(f"per_class must lie in 1..{confidences.shape[0]} (the pool size); got "
                         f"{per_class}: enlarge the pool or lower the candidates per class")
    return confidences.topk(per_class, dim=0).indices.T.contiguous()


def select_final(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Per class (row of ``scores`` (C, K)) the indices of the ``keep`` highest, (C, keep)."""
    if scores.ndim != 2:
        raise InputError(f"need scores (C, K); got shape {tuple(scores.shape)}")
    if not 1 <= keep <= scores.shape[1]:
        raise InputError(f"keep must lie in 1..{scores.shape[1]} (the candidates per class); "
                         f"got {keep}: raise the candidates or lower the final count")
    return scores.topk(keep, dim=1).indices


@torch.no_grad()
def robust_confidence(generator: nn.Module, target: nn.Module, latents: torch.Tensor,
                      classes_idx: torch.Tensor | Sequence[int], n_aug: int, seed: int,
                      batch_size: int = 256) -> torch.Tensor:
    """T's softmax probability of each latent's class, averaged over ``n_aug`` views, (C, K).

    ``latents`` is (C, K, z_dim); row c of it belongs to class ``classes_idx[c]``. Each row
    is scored on its own: its view a draws from ``class_seed(seed, class)``'s stream
    ``robust{a}``, the same view for every latent of the row.
    """
    if latents.ndim != 3:
        raise InputError(f"need latents (C, K, z_dim); got shape {tuple(latents.shape)}")
    classes = torch.as_tensor(classes_idx, dtype=torch.long)
    if classes.shape != latents.shape[:1]:
        raise InputError(f"need one class per latent row ({latents.shape[0]}); got "
                         f"{tuple(classes.shape)}")
    if n_aug < 1:
        raise InputError(f"n_aug must be ≥ 1; got {n_aug}")
    device = module_device(generator)
    rows = []
    with frozen(generator, target):
        for row, label in zip(latents, classes.tolist()):
            images = generate(generator, row, batch_size, device)
            view = attack_view(images.shape[-1]).to(device)
            total = torch.zeros(len(images))
            for a in range(n_aug):
                with seeded_rng(class_seed(seed, label), f"robust{a}"):
                    probs = class_probabilities(target, images, batch_size, device, view)
                total += probs[:, label]
            rows.append(total / n_aug)
    return torch.stack(rows)


# ----------------------------------------------------------------------------- the attack
def _poincare_pass(generator: nn.Module, target: nn.Module, view: nn.Module, z: torch.Tensor,
                   labels: torch.Tensor, batch_size: int, backward: bool) -> float:
    """Mean Poincaré loss over ``z`` in batches; accumulates its gradient in ``z`` if asked."""
    total = 0.0
    for i in range(0, len(z), batch_size):
        zb, yb = z[i:i + batch_size], labels[i:i + batch_size]
        loss = poincare_loss(target(view(generator(zb))), yb).sum() / len(z)
        if backward:
            loss.backward()
        total += loss.item()
    return total


def _check_counts(n_classes: int, pool: int, candidates_per_class: int, final_per_class: int,
                  steps: int, lr: float, batch_size: int) -> None:
    if n_classes < 1 or steps < 0 or lr <= 0 or batch_size < 1:
        raise InputError(f"need n_classes ≥ 1, steps ≥ 0, lr > 0 and batch_size ≥ 1; got "
                         f"{n_classes}, {steps}, {lr}, {batch_size}")
    if not 1 <= final_per_class <= candidates_per_class <= pool:
        raise InputError(f"need 1 ≤ final_per_class ({final_per_class}) ≤ candidates_per_class "
                         f"({candidates_per_class}) ≤ pool ({pool}); adjust the attack counts")


def ppa_pool(generator: nn.Module, target: nn.Module, n_classes: int, *, pool: int,
             candidates_per_class: int, truncation: float, seed: int,
             batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Step 1: the shared pool (``derive_seed(seed, "pool")``), scored in full by T without
    augmentation; returns (pool latents (M, z) on the CPU, each class's candidates (C, K) as
    pool rows, the image side). Every process of a sharded attack computes it whole."""
    device = module_device(generator)
    with frozen(generator, target):
        draws = torch.Generator().manual_seed(derive_seed(seed, "pool"))
        pool_z = generator.sample_latents(pool, draws, truncation)
        pool_images = generate(generator, pool_z, batch_size, device)
        probs = class_probabilities(target, pool_images, batch_size, device)
    if probs.shape[1] != n_classes:
        raise InputError(f"the target has {probs.shape[1]} outputs but n_classes is "
                         f"{n_classes}; pass the target's number of classes")
    return pool_z, select_candidates(probs, candidates_per_class), pool_images.shape[-1]


def _ppa_class(generator: nn.Module, target: nn.Module, label: int, start: torch.Tensor,
               view: nn.Module, *, final_per_class: int, steps: int, lr: float,
               n_aug_final: int, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """Steps 2 and 3 for one class from its candidates ``start`` (K, z): its part."""
    device = module_device(generator)
    stream = class_seed(seed, label)
    labels = torch.full((len(start),), label, dtype=torch.long, device=device)
    z = start.to(device).clone().requires_grad_(True)

    def fixed_loss() -> float:
        with torch.no_grad(), seeded_rng(stream, "loss_eval"):
            return _poincare_pass(generator, target, view, z, labels, batch_size, False)

    initial = fixed_loss()
    opt = torch.optim.Adam([z], lr=lr)
    curve: list[float] = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        with seeded_rng(stream, f"step{step}"):
            curve.append(_poincare_pass(generator, target, view, z, labels, batch_size, True))
        opt.step()
    final = fixed_loss()
    optimised = z.detach().cpu()
    scores = robust_confidence(generator, target, optimised[None], [label], n_aug_final,
                               derive_seed(seed, "final"), batch_size)[0]
    keep = select_final(scores[None], final_per_class)[0]
    return {"latents": optimised[keep].contiguous(), "start_latents": start[keep].contiguous(),
            "confidence": scores[keep], "loss_curve": torch.tensor(curve, dtype=torch.float64),
            "initial_loss": scalar(initial), "final_loss": scalar(final)}


def ppa_attack_parts(generator: nn.Module, target: nn.Module, n_classes: int,
                     classes: Iterable[int], *, pool: int, candidates_per_class: int,
                     final_per_class: int, steps: int, lr: float, truncation: float,
                     n_aug_final: int, seed: int, batch_size: int = 256,
                     on_part: PartCallback | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """The parts (``lib.attacks.parts``) of ``classes`` (labels in 0..n_classes−1) of the
    PPA-style attack: each class's result, the same whichever other classes are attacked;
    ``on_part(c, part)`` is called as each class finishes."""
    _check_counts(n_classes, pool, candidates_per_class, final_per_class, steps, lr, batch_size)
    classes = check_classes(classes, n_classes)
    pool_z, chosen, size = ppa_pool(generator, target, n_classes, pool=pool,
                                    candidates_per_class=candidates_per_class,
                                    truncation=truncation, seed=seed, batch_size=batch_size)
    view = attack_view(size).to(module_device(generator))
    parts = {}
    with frozen(generator, target):
        for c in classes:
            parts[c] = _ppa_class(generator, target, c, pool_z[chosen[c]], view,
                                  final_per_class=final_per_class, steps=steps, lr=lr,
                                  n_aug_final=n_aug_final, seed=seed, batch_size=batch_size)
            if on_part is not None:
                on_part(c, parts[c])
    return parts


def ppa_attack(generator: nn.Module, target: nn.Module, n_classes: int, *, pool: int,
               candidates_per_class: int, final_per_class: int, steps: int, lr: float,
               truncation: float, n_aug_final: int, seed: int,
               batch_size: int = 256) -> dict[str, Any]:
    """Reconstruct ``final_per_class`` images per target class (PPA-style); see the module.

    Returns ``latents`` (C·keep, z), ``labels`` (C·keep,) in T's label space (class 0's
    rows first), ``images`` G(latents), ``start_latents`` (each row's code before the
    optimisation: its candidate from the pool), ``confidence`` (robust, per row), ``loss_curve``
    (per step, the mean over the classes of each class's mean training loss, each on its own
    random views) and ``initial_loss`` / ``final_loss``: the mean loss of the candidates before
    and after optimisation on one fixed set of views per class (its stream ``loss_eval``), so
    the two compare directly.
    """
    parts = ppa_attack_parts(generator, target, n_classes, range(n_classes), pool=pool,
                             candidates_per_class=candidates_per_class,
                             final_per_class=final_per_class, steps=steps, lr=lr,
                             truncation=truncation, n_aug_final=n_aug_final, seed=seed,
                             batch_size=batch_size)
    return finish_attack(parts, generator, n_classes, batch_size)
