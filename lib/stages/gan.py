"""Stage 03: the attacker's GAN prior, pretrained on the public set only."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..artifacts import PartialState, load_module_tensors, module_tensors
from ..config import gan_config
from ..data import dataset
from ..data.images import subset
from ..distributed import SINGLE, World
from ..models import Discriminator, Generator
from ..seeding import global_seed
from ..training import train_gan


def build_gan(cfg: Mapping[str, Any], channels: int) -> tuple[Generator, Discriminator]:
    """An untrained (generator, discriminator) pair of the profile's sizes."""
    return (Generator(cfg["gan_z_dim"], cfg["gan_width"], channels, cfg["image_size"]),
            Discriminator(cfg["gan_d_width"], channels, cfg["image_size"]))


def gan_training_indices(cfg: Mapping[str, Any], split, seed: int) -> np.ndarray:
    """Train-split indices of the public images the GAN learns from (``gan_train_limit`` of
    them, drawn with ``seed``, when set)."""
    idx = split.public
    limit = cfg["gan_train_limit"]
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return idx


def gan_training_set(cfg: Mapping[str, Any], data, split, seed: int) -> torch.Tensor:
    """The public images the GAN learns from (see ``gan_training_indices``)."""
    return subset(data, gan_training_indices(cfg, split, seed), train=True,
                  size=cfg["image_size"])[0]


def gan_from(tensors: dict[str, torch.Tensor], meta: dict) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(G, G_ema, D) in eval mode from a GAN checkpoint (the prior's or a transfer's)."""
    G, G_ema = Generator(**meta["generator"]), Generator(**meta["generator"])
    D = Discriminator(**meta["discriminator"])
    load_module_tensors(tensors, {"G": G, "G_ema": G_ema, "D": D})
    return G.eval(), G_ema.eval(), D.eval()


def require_gan(ctx, data=None, split=None, world: World = SINGLE):
    """The pretrained GAN prior from the run folder, pretrained now on the public set if missing.

    Returns (generator, generator_ema, discriminator, info). The EMA generator is the prior
    the attacks use; the raw generator and the discriminator are where transfer starts.
    ``world``: pretrained data-parallel over its processes, rank 0 writes.
    """
    rel = "models/gan_prior.safetensors"
    wanted = gan_config(ctx.cfg)
    loaded = ctx.load_current(rel, wanted)
    if loaded is not None:
        tensors, meta = loaded
        return (*gan_from(tensors, meta), {"reused": True, "history": meta["history"]})
    if data is None or split is None:
        data, split = dataset.load(ctx.cfg, data)
    seed = ctx.subseed("gan_prior")
    images = gan_training_set(ctx.cfg, data, split, seed)
    with global_seed(seed):                    # the initial weights
        G, D = build_gan(ctx.cfg, data.channels)
    partial = PartialState(ctx.path("models/gan_prior.partial.safetensors"), wanted,
                           ctx.cfg["checkpoint_every_s"])
    G_ema, history = train_gan(
        G, D, images, steps=ctx.cfg["gan_steps"], batch_size=ctx.cfg["gan_batch"],
        lr=ctx.cfg["gan_lr"], seed=seed, r1_gamma=ctx.cfg["gan_r1_gamma"],
        r1_every=ctx.cfg["gan_r1_every"], ema_kimg=ctx.cfg["gan_ema_kimg"],
        augment=ctx.cfg["gan_augment"], device=ctx.device, desc="GAN prior", partial=partial,
        world=world)
    G, G_ema, D = G.cpu().eval(), G_ema.cpu().eval(), D.cpu().eval()
    if world.main:
        ctx.save_tensors(rel, module_tensors({"G": G, "G_ema": G_ema, "D": D}),
                         {"generator": G.arch_spec, "discriminator": D.arch_spec,
                          "config": wanted, "seed": seed, "history": history,
                          "n_images": len(images), **world.record})
    world.barrier()
    return G, G_ema, D, {"reused": False, "history": history}
