"""Model-inversion attacks on a GAN prior: PPA-style (``ppa``) and GMI-style (``gmi``).

The attacker's knowledge is explicit in ``run_attack``'s parameters: the generator (and,
for GMI, its discriminator), the target, the number of target classes, the config and the
seed. Never the evaluator, the private set or the reference set.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..training import generate
from .gmi import gmi_attack, gmi_loss
from .ppa import (attack_augmentation, poincare_loss, ppa_attack, robust_confidence,
                  select_candidates, select_final)

ATTACKS = ("ppa", "gmi")

__all__ = ["ATTACKS", "attack_augmentation", "gmi_attack", "gmi_loss", "poincare_loss",
           "ppa_attack", "regenerate", "robust_confidence", "run_attack", "select_candidates",
           "select_final"]


def regenerate(generator: nn.Module, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The images of saved ``latents`` (``lib.training.generate``, eval mode, on the CPU)."""
    return generate(generator, latents, batch_size)


def run_attack(name: str, generator: nn.Module, target: nn.Module, n_classes: int,
               cfg: Mapping[str, Any], seed: int, *,
               discriminator: nn.Module | None = None) -> dict[str, Any]:
    """Run attack ``name`` with the counts of profile ``cfg``; ``recon_per_class`` per class.

    ppa: ``attack_*`` keys (``attack_candidates`` ≥ ``recon_per_class``); gmi: ``gmi_*``
    keys and the GAN's ``discriminator``. Returns the attack's result dict.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    per_class = cfg["recon_per_class"]
    if name == "ppa":
        if cfg["attack_candidates"] < per_class:
            raise ValueError(f"attack_candidates ({cfg['attack_candidates']}) must be ≥ "
                             f"recon_per_class ({per_class}): raise attack_candidates or lower "
                             f"recon_per_class")
        return ppa_attack(generator, target, n_classes, pool=cfg["attack_pool"],
                          candidates_per_class=cfg["attack_candidates"],
                          final_per_class=per_class, steps=cfg["attack_steps"],
                          lr=cfg["attack_lr"], truncation=cfg["attack_truncation"],
                          n_aug_final=cfg["attack_final_aug"], seed=seed)
    if discriminator is None:
        raise ValueError("the gmi attack needs the GAN's discriminator: pass discriminator=D "
                         "(the one trained with the generator)")
    return gmi_attack(generator, discriminator, target, n_classes, per_class=per_class,
                      steps=cfg["gmi_steps"], lr=cfg["gmi_lr"], restarts=cfg["gmi_restarts"],
                      lambda_id=cfg["gmi_lambda_id"], seed=seed)
