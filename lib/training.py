"""The training loops: classifiers (cross-entropy or focal loss) and GANs (logistic losses,
lazy R1, generator EMA).

Both loops are seeded and deterministic on the CPU (their random draws come from the ``seed``
argument only; torch's global RNG is forked, never left reseeded), resumable through a
``lib.artifacts.PartialState``, and show a progress bar unless ``DDCS_MI_HEADLESS`` is set.

Both run data-parallel on several processes (``world``, a ``lib.distributed.World``): the
``batch_size`` stays the global batch, each rank takes ``batch_size / N`` of it,
``DistributedDataParallel`` averages the gradients (the losses are batch means, so a step
on N ranks is the one-process step on the concatenated batch), batch norms become
``SyncBatchNorm`` on GPUs, and each rank draws from ``lib.seeding.rank_seed(seed, rank, N)``.
One process (the default) runs exactly as before.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from torch.utils.data import DistributedSampler

from . import distributed, paths
from .augment import classifier_shifts, discriminator_view
from .artifacts import PartialState, Resumable
from .distributed import SINGLE, World
from .errors import InputError
from .seeding import derive_seed, global_seed, rank_seed

ExtraLoss = Callable[[torch.Tensor, int], tuple[torch.Tensor, dict]]


# ------------------------------------------------------------------------------- classifiers
def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss −(1 − p_t)^γ log p_t (Lin et al. 2017); γ = 0 is cross-entropy."""
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-(1.0 - log_p.exp()).pow(gamma) * log_p).mean()


def _classifier_epoch(model: nn.Module, opt, sched, images: torch.Tensor, labels: torch.Tensor,
                      order: torch.Tensor, aug: nn.Module, loss_fn, batch_size: int,
                      device: str, gpu_fast: bool, bar) -> tuple[float, float, int]:
    """One pass over ``images[order]`` in batches; returns (loss sum, correct, seen)."""
    total, correct, seen = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, y = aug(images[idx].to(device)), labels[idx].to(device)
        if gpu_fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu_fast):
            logits = model(x)
        logits = logits.float()
        batch_loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        sched.step()
        total += batch_loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        bar.update(1)
    return total, correct, seen


def _epoch_order(epoch: int, n: int, shuffle: torch.Generator,
                 sampler: DistributedSampler | None) -> torch.Tensor:
    """The order of one epoch: a permutation from ``shuffle`` (one process), or this rank's
    share from the ``DistributedSampler`` (several)."""
    if sampler is None:
        return torch.randperm(n, generator=shuffle)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def _summed(values: tuple[float, float, int], world: World) -> tuple[float, float]:
    """(mean loss, accuracy) over every rank's share of an epoch."""
    total, correct, seen = values
    if world.distributed:
        sums = torch.tensor([total, correct, seen], dtype=torch.float64,
                            device=world.comm_device)
        torch.distributed.all_reduce(sums)
        total, correct, seen = sums.tolist()
    return total / seen, correct / seen


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     epochs: int, lr: float, batch_size: int, seed: int, loss: str = "ce",
                     gamma: float = 2.0, augment: bool = True, device: str = "cpu",
                     weight_decay: float = 1e-4, progress: bool | None = None,
                     desc: str = "train", amp: bool = False,
                     partial: PartialState | None = None,
                     world: World = SINGLE) -> dict[str, Any]:
    """Train ``model`` in place with AdamW and a one-cycle schedule; returns the history.

    ``loss`` is ``"ce"`` or ``"focal"`` (γ = ``gamma``). Shuffling and augmentation draw
    from ``seed`` only, so the same call gives the same weights on the same machine.
    ``amp``: on a GPU, bf16 autocast and channels-last (ignored on the CPU). ``partial``: the
    run is saved to it at epoch ends when due and continues from it (same weights as an
    uncut run), and it is cleared at the end. ``world``: data-parallel over its processes
    (see the module; a ``DistributedSampler`` seeded with ``seed`` shards each epoch, every
    epoch has ``ceil(len(images) / batch_size)`` steps whatever the number of processes, and
    the history is over every rank's share).
    """
    if loss not in ("ce", "focal"):
        raise InputError(f"unknown loss {loss!r}; valid: ce, focal")
    if len(images) != len(labels) or len(images) == 0:
        raise InputError(f"need as many labels as images, and at least one ({len(images)}, "
                         f"{len(labels)})")
    loss_fn = F.cross_entropy if loss == "ce" else (lambda lg, y: focal_loss(lg, y, gamma))
    gpu_fast = amp and str(device).startswith("cuda")
    local = distributed.local_batch(batch_size, world)
    model.to(device).train()
    if world.distributed:
        model = distributed.sync_batchnorm(model, device)
    if gpu_fast:
        model.to(memory_format=torch.channels_last)
    aug = classifier_shifts(images.shape[-1]).to(device) if augment else nn.Identity()
    steps_per_epoch = math.ceil(len(images) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    shuffle = torch.Generator().manual_seed(seed)
    sampler = (DistributedSampler(range(len(images)), world.size, world.rank, seed=seed)
               if world.distributed else None)
    net = distributed.data_parallel(model, world, device)
    own_seed = rank_seed(seed, world.rank, world.size)
    loop = Resumable(partial, device, world, own_seed, model=model, opt=opt, sched=sched,
                     shuffle=shuffle)
    with global_seed(own_seed):                   # the augmentation's draws
        saved = loop.restore() or {"position": 0, "history": {"loss": [], "train_acc": []}}
        history, first = saved["history"], int(saved["position"])
        bar = tqdm(total=epochs * steps_per_epoch, initial=first * steps_per_epoch, desc=desc,
                   disable=not paths.progress_enabled(progress) or not world.main, leave=False)
        for epoch in range(first, epochs):
            order = _epoch_order(epoch, len(images), shuffle, sampler)
            sums = _classifier_epoch(net, opt, sched, images, labels, order, aug, loss_fn,
                                     local, device,
                                     gpu_fast, bar)
            mean_loss, accuracy = _summed(sums, world)
            history["loss"].append(mean_loss)
            history["train_acc"].append(accuracy)
            loop.checkpoint(epoch + 1, epochs, history=history)
        bar.close()
    loop.finish()
    model.eval().to(memory_format=torch.contiguous_format)
    return history


# ------------------------------------------------------------------------------------- GAN
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss: softplus(−D(x)) + softplus(D(G(z))), batch means."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(−D(G(z))), batch mean."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E ||∇_x D(x)||² on real images (Mescheder et al. 2018), differentiable in D."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def ema_beta(batch_size: int, ema_kimg: float, images_seen: int = 0,
             rampup: float | None = None) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images (StyleGAN2's rule).
    With ``rampup`` (StyleGAN2-ADA's ramp-up) the half-life is at most ``rampup`` × the
    images seen before this step, so the average forgets its starting weights at the pace
    of the run: the first step's β is 0."""
    half_life = ema_kimg * 1000.0
    if rampup is not None:
        half_life = min(half_life, rampup * images_seen)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


def ema_schedule(steps: int, batch_size: int, ema_kimg: float,
                 rampup: float | None = None) -> list[float]:
    """Each step's EMA decay β (``train_gan``'s; ``batch_size`` is the global batch)."""
    return [ema_beta(batch_size, ema_kimg, step * batch_size, rampup) for step in range(steps)]


def ema_residual(steps: int, batch_size: int, ema_kimg: float,
                 rampup: float | None = None) -> float:
    """The weight the EMA still gives its starting parameters after ``steps`` updates: the
    product of the βs."""
    return math.prod(ema_schedule(steps, batch_size, ema_kimg, rampup))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 − β)·model for the parameters. The buffers (batch-norm statistics) are
    left alone: the averaged weights need statistics of their own (``standing_statistics``),
    not those of the current weights."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - beta)


STANDING_BATCHES = 50
STANDING_BATCH_SIZE = 256


@torch.no_grad()
def standing_statistics(generator: nn.Module, seed: int, batches: int = STANDING_BATCHES,
                        batch_size: int = STANDING_BATCH_SIZE) -> nn.Module:
    """Recompute a generator's batch-norm statistics from its own activations ("standing
    statistics"): the running means and variances become the cumulative averages over
    ``batches`` batches of ``batch_size`` random codes (drawn from ``seed``). The generator is
    left in eval mode; a generator without batch norm is unchanged. Returns it."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                      # a cumulative average over the batches
    device = next(generator.parameters()).device
    draws = torch.Generator().manual_seed(seed)
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, generator.z_dim, generator=draws).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return generator.eval()


def _discriminator_step(G: nn.Module, D: nn.Module, opt_d, real: torch.Tensor, z: torch.Tensor,
                        aug: nn.Module, r1_weight: float) -> dict[str, Any]:
    """One discriminator update (logistic loss, + ``r1_weight`` × R1 when it is > 0); ``D`` is
    the module whose gradients are shared (the DDP wrapper on several processes), ``G`` is
    only run."""
    D.requires_grad_(True)
    with torch.no_grad():
        fake = G(z)
    real_logits, fake_logits = D(aug(real)), D(aug(fake))
    d_loss = discriminator_loss(real_logits, fake_logits)
    r1 = None
    if r1_weight > 0:
        r1 = r1_penalty(D, aug(real))
        d_loss = d_loss + r1_weight * r1
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return {"d_loss": d_loss.item(), "d_real": real_logits.mean().item(),
            "d_fake": fake_logits.mean().item(), "r1": None if r1 is None else r1.item()}


def _generator_step(G: nn.Module, D: nn.Module, opt_g, z: torch.Tensor, aug: nn.Module,
                    extra_loss: ExtraLoss | None, step: int) -> tuple[float, dict]:
    """One generator update (non-saturating loss + ``extra_loss(fake, step)`` when given);
    ``G`` is the module whose gradients are shared, ``D`` is only run."""
    D.requires_grad_(False)
    fake = G(z)
    g_loss = generator_loss(D(aug(fake)))
    total, stats = g_loss, {}
    if extra_loss is not None:
        extra, stats = extra_loss(fake, step)
        total = total + extra
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    return g_loss.item(), stats


def train_gan(generator: nn.Module, discriminator: nn.Module, images: torch.Tensor, *,
              steps: int, batch_size: int, lr: float, seed: int, r1_gamma: float = 1.0,
              r1_every: int = 16, ema_kimg: float = 10.0, ema_rampup: float | None = None,
              augment: bool = False,
              betas: tuple[float, float] = (0.5, 0.99), generator_ema: nn.Module | None = None,
              extra_generator_loss: ExtraLoss | None = None, log_every: int = 10,
              device: str = "cpu", progress: bool | None = None, desc: str = "GAN",
              partial: PartialState | None = None,
              extra_state: dict[str, list] | None = None,
              world: World = SINGLE) -> tuple[nn.Module, dict]:
    """Alternate discriminator and generator Adam steps on ``images``; returns (EMA G, history).

    D: logistic loss, lazy R1 (γ = ``r1_gamma`` every ``r1_every`` steps, scaled by the
    interval). G: non-saturating loss, plus ``extra_generator_loss(fake, step) -> (loss,
    stats)`` when given (the transfer modes add their target term here). ``generator`` and
    ``discriminator`` are trained in place; the EMA copy (``generator_ema``, a deep copy of
    G when None) is what the attacks use; it averages G's parameters (half-life ``ema_kimg``
    thousand images, ramped up by ``ema_rampup`` when given: ``ema_beta``) and gets batch-norm
    statistics of its own at the end (``standing_statistics``). Every draw comes from
    ``seed``. ``partial``: saved
    at step ends when due, resumed from, cleared at the end; ``extra_state`` names lists the
    caller keeps (the transfer's monitor), saved and restored in place with it. ``world``:
    data-parallel over its processes (see the module): each rank draws ``batch_size / N`` real
    images and codes per step from its own stream, G and D are ``DistributedDataParallel``
    (G's batch norms synchronised on GPUs), the EMA and its statistics are the same on every
    rank, and the history holds rank 0's batches.
    """
    if steps < 0 or batch_size < 1 or len(images) == 0:
        raise InputError(f"need steps ≥ 0, batch_size ≥ 1 and some images (steps={steps}, "
                         f"batch_size={batch_size}, images={len(images)})")
    local = distributed.local_batch(batch_size, world)
    own_seed = rank_seed(seed, world.rank, world.size)
    draws = torch.Generator().manual_seed(own_seed)
    G, D = generator.to(device).train(), discriminator.to(device).train()
    G_ema = (copy.deepcopy(generator) if generator_ema is None else generator_ema).to(device)
    G_ema.eval().requires_grad_(False)
    if world.distributed:
        G = distributed.sync_batchnorm(G, device)
    G_net = distributed.data_parallel(G, world, device)        # the modules whose gradients
    D_net = distributed.data_parallel(D, world, device)        # are averaged over the ranks
    aug = discriminator_view(images.shape[-1]).to(device) if augment else nn.Identity()
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    schedule = ema_schedule(steps, batch_size, ema_kimg, ema_rampup)
    loop = Resumable(partial, device, world, own_seed, G=G, D=D, G_ema=G_ema, opt_g=opt_g,
                     opt_d=opt_d, draws=draws)
    with global_seed(own_seed):                   # the discriminator augmentation's draws
        saved = loop.restore() or {"position": 0, "r1_value": float("nan"), "extra": {},
                                   "history": {k: [] for k in ("step", "d_loss", "g_loss", "r1",
                                                               "d_real", "d_fake")}}
        history, first, r1_value = saved["history"], int(saved["position"]), saved["r1_value"]
        for name, items in (extra_state or {}).items():
            items[:] = saved["extra"].get(name, items)
        for step in tqdm(range(first, steps), desc=desc, leave=False, initial=first, total=steps,
                         disable=not paths.progress_enabled(progress) or not world.main):
            real = images[torch.randint(len(images), (local,), generator=draws)].to(device)
            z = torch.randn(local, G.z_dim, generator=draws).to(device)
            r1_weight = 0.5 * r1_gamma * r1_every if r1_gamma > 0 and step % r1_every == 0 else 0.0
            d_stats = _discriminator_step(G, D_net, opt_d, real, z, aug, r1_weight)
            r1_value = d_stats["r1"] if d_stats["r1"] is not None else r1_value
            z = torch.randn(local, G.z_dim, generator=draws).to(device)
            g_loss, stats = _generator_step(G_net, D, opt_g, z, aug, extra_generator_loss, step)
            update_ema(G_ema, G, schedule[step])
            if step % log_every == 0 or step == steps - 1:
                for key, value in {"step": step, "d_loss": d_stats["d_loss"], "g_loss": g_loss,
                                   "r1": r1_value, "d_real": d_stats["d_real"],
                                   "d_fake": d_stats["d_fake"], **stats}.items():
                    history.setdefault(key, []).append(value if key == "step" else float(value))
            loop.checkpoint(step + 1, steps, history=history, r1_value=r1_value,
                            extra={k: list(v) for k, v in (extra_state or {}).items()})
    loop.finish()
    standing_statistics(G_ema, derive_seed(seed, "standing_statistics"))
    D.requires_grad_(True)
    G.eval()
    D.eval()
    return G_ema, history
