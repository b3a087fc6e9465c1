"""The attacker's whole interface: ``run_attack``.

The attacker's knowledge is explicit in its parameters: the generator (and, for GMI, its
discriminator), the target, the number of target classes, the config and the seed. Never the
evaluator, the private set or the reference set (a test checks the signature).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..config import ATTACKS, check_attack
from ..errors import InputError
from .gmi import gmi_attack_parts
from .parts import PartCallback, finish_attack
from .ppa import ppa_attack_parts

__all__ = ["ATTACKS", "attack_parts", "finish_attack", "run_attack"]


def attack_parts(name: str, generator: nn.Module, target: nn.Module, n_classes: int,
                 cfg: Mapping[str, Any], seed: int, classes: Iterable[int], *,
                 discriminator: nn.Module | None = None,
                 on_part: PartCallback | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """The parts (``lib.attacks.parts``) of ``classes`` of attack ``name`` with the counts of
    profile ``cfg``: each class's result, the same whichever other classes are attacked;
    ``on_part(c, part)`` as each class finishes.

    ppa: ``attack_*`` keys (``attack_candidates`` ≥ ``recon_per_class``); gmi: ``gmi_*``
    keys and the GAN's ``discriminator``.
    """
    check_attack(name)
    per_class = cfg["recon_per_class"]
    if name == "ppa":
        if cfg["attack_candidates"] < per_class:
            raise InputError(f"attack_candidates ({cfg['attack_candidates']}) must be ≥ "
                             f"recon_per_class ({per_class}): raise attack_candidates or lower "
                             f"recon_per_class")
        return ppa_attack_parts(generator, target, n_classes, classes, pool=cfg["attack_pool"],
                                candidates_per_class=cfg["attack_candidates"],
                                final_per_class=per_class, steps=cfg["attack_steps"],
                                lr=cfg["attack_lr"], truncation=cfg["attack_truncation"],
                                n_aug_final=cfg["attack_final_aug"], seed=seed,
                                on_part=on_part)
    if discriminator is None:
        raise InputError("the gmi attack needs the GAN's discriminator: pass discriminator=D "
                         "(the one trained with the generator)")
    return gmi_attack_parts(generator, discriminator, target, n_classes, classes,
                            per_class=per_class, steps=cfg["gmi_steps"], lr=cfg["gmi_lr"],
                            restarts=cfg["gmi_restarts"], lambda_id=cfg["gmi_lambda_id"],
                            seed=seed, on_part=on_part)


def run_attack(name: str, generator: nn.Module, target: nn.Module, n_classes: int,
               cfg: Mapping[str, Any], seed: int, *,
               discriminator: nn.Module | None = None) -> dict[str, Any]:
    """Run attack ``name`` with the counts of profile ``cfg``; ``recon_per_class`` per class.

    ppa: ``attack_*`` keys (``attack_candidates`` ≥ ``recon_per_class``); gmi: ``gmi_*``
    keys and the GAN's ``discriminator``. Returns the attack's result dict: ``latents``,
    ``start_latents``, ``labels`` (class 0's rows first), ``images``, ``confidence``,
    ``loss_curve``, ``initial_loss``, ``final_loss``.
    """
    parts = attack_parts(name, generator, target, n_classes, cfg, seed, range(n_classes),
                         discriminator=discriminator)
    return finish_attack(parts, generator, n_classes)
