"""The PPA-style attack (Struppek et al. 2022; PAPER.md §4) on a GAN prior.

1. Sample a pool of latents once; for each target class keep the candidates the frozen
   target T is most confident about for that class (a latent may serve several classes).
2. Optimise every chosen latent (all classes in one batch) with Adam on the Poincaré loss
   between T's L1-normalised output on a random augmentation of G(z) and the class.
3. Keep per class the latents with the highest confidence averaged over many random
   augmentations ("robust" confidence).

The attacker knows the generator, the target and the number of target classes only. All
randomness comes from ``seed``: latents from seeded ``torch.Generator`` objects, kornia
augmentations inside a forked, seeded global RNG.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import attack_view
from ..errors import InputError
from ..inference import class_probabilities, frozen, generate, module_device
from ..seeding import derive_seed, seeded_rng


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

    ``latents`` is (C, K, z_dim); row c of it belongs to class ``classes_idx[c]``. View a
    draws from ``derive_seed(seed, f"robust{a}")``, the same view for every latent.
    """
    if latents.ndim != 3:
        raise InputError(f"need latents (C, K, z_dim); got shape {tuple(latents.shape)}")
    classes = torch.as_tensor(classes_idx, dtype=torch.long)
    if classes.shape != latents.shape[:1]:
        raise InputError(f"need one class per latent row ({latents.shape[0]}); got "
                         f"{tuple(classes.shape)}")
    if n_aug < 1:
        raise InputError(f"n_aug must be ≥ 1; got {n_aug}")
    n_rows, per_row = latents.shape[:2]
    device = module_device(generator)
    with frozen(generator, target):
        images = generate(generator, latents.reshape(n_rows * per_row, -1), batch_size, device)
        view = attack_view(images.shape[-1]).to(device)
        labels = classes.repeat_interleave(per_row)[:, None]
        total = torch.zeros(len(images))
        for a in range(n_aug):
            with seeded_rng(seed, f"robust{a}"):
                probs = class_probabilities(target, images, batch_size, device, view)
            total += probs.gather(1, labels).squeeze(1)
    return (total / n_aug).reshape(n_rows, per_row)


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


def ppa_attack(generator: nn.Module, target: nn.Module, n_classes: int, *, pool: int,
               candidates_per_class: int, final_per_class: int, steps: int, lr: float,
               truncation: float, n_aug_final: int, seed: int,
               batch_size: int = 256) -> dict[str, Any]:
    """Reconstruct ``final_per_class`` images per target class (PPA-style); see the module.

    Returns ``latents`` (C·keep, z), ``labels`` (C·keep,) in T's label space (class 0's
    rows first), ``images`` G(latents), ``start_latents`` (each row's code before the
    optimisation: its candidate from the pool), ``confidence`` (robust, per row), ``loss_curve``
    (mean training loss per step, each on its own random views) and ``initial_loss`` /
    ``final_loss``: the mean loss of the candidates before and after optimisation on one
    fixed set of views (``derive_seed(seed, "loss_eval")``), so the two compare directly.
    """
    if n_classes < 1 or steps < 0 or lr <= 0 or batch_size < 1:
        raise InputError(f"need n_classes ≥ 1, steps ≥ 0, lr > 0 and batch_size ≥ 1; got "
                         f"{n_classes}, {steps}, {lr}, {batch_size}")
    if not 1 <= final_per_class <= candidates_per_class <= pool:
        raise InputError(f"need 1 ≤ final_per_class ({final_per_class}) ≤ candidates_per_class "
                         f"({candidates_per_class}) ≤ pool ({pool}); adjust the attack counts")
    device = module_device(generator)
    with frozen(generator, target):
        # 1. the shared pool and the candidates of each class
        draws = torch.Generator().manual_seed(derive_seed(seed, "pool"))
        pool_z = generator.sample_latents(pool, draws, truncation)
        pool_images = generate(generator, pool_z, batch_size, device)
        probs = class_probabilities(target, pool_images, batch_size, device)
        if probs.shape[1] != n_classes:
            raise InputError(f"the target has {probs.shape[1]} outputs but n_classes is "
                             f"{n_classes}; pass the target's number of classes")
        chosen = select_candidates(probs, candidates_per_class)          # (C, K)
        labels = torch.arange(n_classes).repeat_interleave(candidates_per_class).to(device)
        z = pool_z[chosen.reshape(-1)].to(device).clone().requires_grad_(True)
        view = attack_view(pool_images.shape[-1]).to(device)
        del pool_images

        def fixed_loss() -> float:
            with torch.no_grad(), seeded_rng(seed, "loss_eval"):
                return _poincare_pass(generator, target, view, z, labels, batch_size, False)

        # 2. optimise every candidate at once
        initial = fixed_loss()
        opt = torch.optim.Adam([z], lr=lr)
        curve: list[float] = []
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            with seeded_rng(seed, f"step{step}"):
                curve.append(_poincare_pass(generator, target, view, z, labels, batch_size, True))
            opt.step()
        final = fixed_loss()
        # 3. robust confidence, the best per class
        optimised = z.detach().cpu().reshape(n_classes, candidates_per_class, -1)
        scores = robust_confidence(generator, target, optimised, torch.arange(n_classes),
                                   n_aug_final, derive_seed(seed, "final"), batch_size)
        keep = select_final(scores, final_per_class)                      # (C, keep)
        index = keep[:, :, None].expand(-1, -1, optimised.shape[2])
        latents = optimised.gather(1, index).reshape(n_classes * final_per_class, -1).contiguous()
        starts = pool_z[chosen.reshape(-1)].reshape(optimised.shape).gather(1, index)
        images = generate(generator, latents, batch_size, device).detach()
    return {"latents": latents,
            "start_latents": starts.reshape(n_classes * final_per_class, -1).contiguous(),
            "labels": torch.arange(n_classes).repeat_interleave(final_per_class),
            "images": images,
            "confidence": scores.gather(1, keep).reshape(-1),
            "loss_curve": curve, "initial_loss": initial, "final_loss": final}
