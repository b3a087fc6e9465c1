"""Attacks class by class: each class's result is a part of its own, merged in class order.

Both attacks treat every target class independently: class c draws its random numbers (codes,
augmentation views) from its own stream (``lib.seeding.class_seed``) and runs its own
forward passes and optimiser, so attacking a subset of the classes gives every class of the
subset exactly the result it gets in the whole attack. ``merge_parts`` turns the parts of all
classes into the attack's result; the sharded stage (``lib.stages.attacks``) merges the parts
that several processes computed with the same function, so it equals the one-process attack
bit for bit.

A part is a dict of tensors (``PART_KEYS``): ``latents`` and ``start_latents`` (keep, z_dim),
``confidence`` (keep,), ``loss_curve`` (steps,) float64 (the class's mean loss per step),
``initial_loss`` and ``final_loss`` () float64 (the class's mean).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..errors import InputError
from ..inference import frozen, generate, module_device

PartCallback = Callable[[int, dict[str, torch.Tensor]], None]
"""Called with (class, part) as each class of an attack finishes (e.g. to save it)."""

PART_KEYS = ("latents", "start_latents", "confidence", "loss_curve", "initial_loss",
             "final_loss")


def scalar(value: float) -> torch.Tensor:
    """A Python float as a 0-d float64 tensor (exact: both are IEEE doubles)."""
    return torch.tensor(float(value), dtype=torch.float64)


def merge_parts(parts: Mapping[int, Mapping[str, torch.Tensor]], n_classes: int) -> dict[str, Any]:
    """The attack's result from the parts of classes 0..n_classes−1 (class 0's rows first).

    ``loss_curve``, ``initial_loss`` and ``final_loss`` are the means over the classes of the
    classes' means (every class has as many rows). No ``images``: the caller generates them
    from ``latents`` in one batched pass (``lib.inference.generate``).
    """
    missing = sorted(set(range(n_classes)) - set(parts))
    if missing:
        raise InputError(f"the parts of classes {missing} are missing; every class of the "
                         f"attack (0..{n_classes - 1}) needs its part")
    ordered = [parts[c] for c in range(n_classes)]
    for c, part in enumerate(ordered):
        absent = [k for k in PART_KEYS if k not in part]
        if absent:
            raise InputError(f"the part of class {c} lacks {absent}")
    per_class = len(ordered[0]["latents"])
    curves = torch.stack([p["loss_curve"].to(torch.float64) for p in ordered])
    return {"latents": torch.cat([p["latents"] for p in ordered]).contiguous(),
            "start_latents": torch.cat([p["start_latents"] for p in ordered]).contiguous(),
            "labels": torch.arange(n_classes).repeat_interleave(per_class),
            "confidence": torch.cat([p["confidence"] for p in ordered]),
            "loss_curve": curves.mean(dim=0).tolist(),
            "initial_loss": torch.stack([p["initial_loss"] for p in ordered]).mean().item(),
            "final_loss": torch.stack([p["final_loss"] for p in ordered]).mean().item()}


def check_classes(classes: Iterable[int], n_classes: int) -> list[int]:
    """``classes`` as ints, each a label in 0..n_classes−1 (else an ``InputError``)."""
    classes = [int(c) for c in classes]
    if any(not 0 <= c < n_classes for c in classes):
        raise InputError(f"classes must lie in 0..{n_classes - 1}; got {classes}")
    return classes


def finish_attack(parts: Mapping[int, Mapping[str, torch.Tensor]], generator: nn.Module,
                  n_classes: int, batch_size: int = 256) -> dict[str, Any]:
    """The attack's result from the parts of every class, with ``images`` G(latents)."""
    out = merge_parts(parts, n_classes)
    with frozen(generator):
        out["images"] = generate(generator, out["latents"], batch_size,
                                 module_device(generator)).detach()
    return out
