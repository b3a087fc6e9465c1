"""The GMI-style attack (Zhang et al. 2020) on a GAN prior and its discriminator.

For each target class, latents are optimised with SGD (momentum 0.9) on

    prior + λ_id · identity,  prior = softplus(−D(G(z)))  ("look real to D", non-saturating),
                              identity = cross-entropy(T(G(z)), class),

per sample, the latents clamped to [−3, 3] after every step (as GMI does). Several random
restarts; each row keeps the restart with the lowest final loss. The attacker knows the
generator, its discriminator, the target and the number of target classes only.

Each class is attacked on its own: its random codes come from a stream of the class
(``lib.seeding.class_seed``), with its own forward passes and optimiser, so
``gmi_attack_parts`` on a subset of the classes gives each the part it has in the whole
attack (``lib.attacks.parts``), which is how the attack is sharded across processes.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..inference import class_probabilities, frozen, generate, module_device
from ..seeding import class_seed, derive_seed
from .parts import PartCallback, check_classes, finish_attack, scalar

LATENT_BOUND = 3.0


def gmi_loss(generator: nn.Module, discriminator: nn.Module, target: nn.Module,
             z: torch.Tensor, labels: torch.Tensor, lambda_id: float) -> torch.Tensor:
    """Per-sample softplus(−D(G(z))) + λ_id · CE(T(G(z)), label), shape (N,)."""
    images = generator(z)
    prior = F.softplus(-discriminator(images))
    identity = F.cross_entropy(target(images), labels, reduction="none")
    return prior + lambda_id * identity


def _per_sample_loss(generator, discriminator, target, z, labels, lambda_id,
                     batch_size) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([gmi_loss(generator, discriminator, target, z[i:i + batch_size],
                                   labels[i:i + batch_size], lambda_id).cpu()
                          for i in range(0, len(z), batch_size)])


def _optimise(generator, discriminator, target, z: torch.Tensor, labels: torch.Tensor,
              lambda_id: float, steps: int, lr: float, batch_size: int) -> list[float]:
    """SGD with momentum on ``z`` in place (clamped to ±LATENT_BOUND after each step); the
    batch-mean loss of each step."""
    opt = torch.optim.SGD([z], lr=lr, momentum=0.9)
    curve, n = [], len(z)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for i in range(0, n, batch_size):
            loss = gmi_loss(generator, discriminator, target, z[i:i + batch_size],
                            labels[i:i + batch_size], lambda_id).sum() / n
            loss.backward()
            total += loss.item()
        curve.append(total)
        opt.step()
        with torch.no_grad():
            z.clamp_(-LATENT_BOUND, LATENT_BOUND)
    return curve


def _gmi_class(generator: nn.Module, discriminator: nn.Module, target: nn.Module, label: int, *,
               per_class: int, steps: int, lr: float, restarts: int, lambda_id: float,
               seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """Every restart of one class (codes from the class's stream ``restart{r}``): its part."""
    device = module_device(generator)
    labels = torch.full((per_class,), label, dtype=torch.long, device=device)
    stream = class_seed(seed, label)
    best_z, best_start, best_loss = None, None, None
    curves: list[list[float]] = []
    initial: list[torch.Tensor] = []
    for r in range(restarts):
        draws = torch.Generator().manual_seed(derive_seed(stream, f"restart{r}"))
        start = generator.sample_latents(per_class, draws)
        z = start.clone().to(device).requires_grad_(True)   # start stays the starting point
        initial.append(_per_sample_loss(generator, discriminator, target, z, labels, lambda_id,
                                        batch_size))
        curves.append(_optimise(generator, discriminator, target, z, labels, lambda_id, steps,
                                lr, batch_size))
        final = _per_sample_loss(generator, discriminator, target, z, labels, lambda_id,
                                 batch_size)
        z = z.detach().cpu()
        if best_z is None:
            best_z, best_start, best_loss = z.clone(), start.clone(), final
        else:
            better = final < best_loss                 # ties keep the earlier restart
            best_z[better], best_loss[better] = z[better], final[better]
            best_start[better] = start[better]
    with torch.no_grad():
        images = generate(generator, best_z, batch_size, device)
        probs = class_probabilities(target, images, batch_size, device)
    return {"latents": best_z.contiguous(), "start_latents": best_start.contiguous(),
            "confidence": probs[:, label].contiguous(),
            "loss_curve": torch.tensor([sum(c[t] for c in curves) / restarts
                                        for t in range(steps)], dtype=torch.float64),
            "initial_loss": scalar(torch.cat(initial).mean().item()),
            "final_loss": scalar(best_loss.mean().item())}


def _check(n_classes: int, per_class: int, steps: int, lr: float, restarts: int,
           batch_size: int) -> None:
    if n_classes < 1 or per_class < 1 or restarts < 1 or steps < 0 or lr <= 0 or batch_size < 1:
        raise InputError(f"need n_classes, per_class, restarts, batch_size ≥ 1, steps ≥ 0 and "
                         f"lr > 0; got {n_classes}, {per_class}, {restarts}, {batch_size}, "
                         f"{steps}, {lr}")


def gmi_attack_parts(generator: nn.Module, discriminator: nn.Module, target: nn.Module,
                     n_classes: int, classes: Iterable[int], *, per_class: int, steps: int,
                     lr: float, restarts: int, lambda_id: float, seed: int,
                     batch_size: int = 256,
                     on_part: PartCallback | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """The parts (``lib.attacks.parts``) of ``classes`` (labels in 0..n_classes−1) of the
    GMI-style attack: each class's result, the same whichever other classes are attacked;
    ``on_part(c, part)`` is called as each class finishes."""
    _check(n_classes, per_class, steps, lr, restarts, batch_size)
    classes = check_classes(classes, n_classes)
    device = module_device(generator)
    with frozen(generator, discriminator, target):
        out_dim = target(generator(torch.zeros(1, generator.z_dim, device=device))).shape[1]
        if out_dim != n_classes:
            raise InputError(f"the target has {out_dim} outputs but n_classes is {n_classes}; "
                             f"pass the target's number of classes")
        parts = {}
        for c in classes:
            parts[c] = _gmi_class(generator, discriminator, target, c, per_class=per_class,
                                  steps=steps, lr=lr, restarts=restarts, lambda_id=lambda_id,
                                  seed=seed, batch_size=batch_size)
            if on_part is not None:
                on_part(c, parts[c])
    return parts


def gmi_attack(generator: nn.Module, discriminator: nn.Module, target: nn.Module,
               n_classes: int, *, per_class: int, steps: int, lr: float, restarts: int,
               lambda_id: float, seed: int, batch_size: int = 256) -> dict[str, Any]:
    """Reconstruct ``per_class`` images per target class (GMI-style); see the module.

    Returns the keys of ``ppa_attack``: ``latents`` (C·per_class, z), ``start_latents`` (each
    row's random code before the optimisation, of the restart kept), ``labels`` (class 0's
    rows first), ``images`` G(latents), ``confidence`` (T's probability of the class, no
    augmentation), ``loss_curve`` (per step, the mean over the classes of each class's
    batch-mean total loss averaged over the restarts), ``initial_loss`` (mean total loss of
    every restart's starting latents) and ``final_loss`` (mean total loss of the returned
    latents); the means over all rows are means of the classes' means.
    """
    parts = gmi_attack_parts(generator, discriminator, target, n_classes, range(n_classes),
                             per_class=per_class, steps=steps, lr=lr, restarts=restarts,
                             lambda_id=lambda_id, seed=seed, batch_size=batch_size)
    return finish_attack(parts, generator, n_classes, batch_size)
