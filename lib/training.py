"""Classifier training (cross-entropy or focal loss), prediction and accuracy.

Seeded and deterministic on the CPU; a progress bar when interactive, quiet when the
runner or the test suite sets ``DDCS_MI_HEADLESS``.
"""
from __future__ import annotations

import math
import os
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import PartialState


def progress_enabled() -> bool:
    """Progress bars off under papermill/nbval (``DDCS_MI_HEADLESS`` set by runner and tests)."""
    return not os.environ.get("DDCS_MI_HEADLESS")


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss −(1 − p_t)^γ log p_t (Lin et al. 2017); γ = 0 is cross-entropy."""
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-(1.0 - log_p.exp()).pow(gamma) * log_p).mean()


def classifier_augmentation(size: int = 32, flip: bool = True) -> nn.Module:
    """Random shifts (crop with 2-pixel padding) and horizontal flips, batched (kornia)."""
    augs: list[nn.Module] = [K.RandomCrop((size, size), padding=2, padding_mode="replicate")]
    if flip:
        augs.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*augs)


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     epochs: int, lr: float, batch_size: int, seed: int, loss: str = "ce",
                     gamma: float = 2.0, augment: bool = True, device: str = "cpu",
                     weight_decay: float = 1e-4, progress: bool | None = None,
                     desc: str = "train", amp: bool = False,
                     partial=None) -> dict[str, Any]:
    """Train ``model`` in place with AdamW and a cosine schedule; returns the history.

    ``loss`` is ``"ce"`` or ``"focal"`` (γ = ``gamma``). Shuffling and augmentation draw
    from ``seed`` only, so the same call gives the same weights on the same machine.
    ``amp``: on a GPU, bf16 autocast and channels-last (ignored on the CPU). ``partial``: a
    ``lib.artifacts.PartialState``; the run is saved to it at epoch ends when due and
    continues from it (same weights as an uncut run), and it is cleared at the end.
    """
    if loss not in ("ce", "focal"):
        raise ValueError(f"unknown loss {loss!r}; valid: ce, focal")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images, and at least one ({len(images)}, "
                         f"{len(labels)})")
    from tqdm import tqdm

    from .artifacts import rng_state, set_rng_state

    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    gpu_fast = amp and str(device).startswith("cuda")
    model.to(device).train()
    if gpu_fast:
        model.to(memory_format=torch.channels_last)
    aug = classifier_augmentation(images.shape[-1]).to(device) if augment else nn.Identity()
    steps_per_epoch = math.ceil(len(images) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    history: dict[str, list[float]] = {"loss": [], "train_acc": []}
    first_epoch = 0
    saved = partial.load() if partial is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        shuffle.set_state(saved["shuffle"])
        set_rng_state(saved["rng"], device)
        history, first_epoch = saved["history"], int(saved["epoch"])
    show = progress_enabled() if progress is None else progress
    bar = tqdm(total=epochs * steps_per_epoch, initial=first_epoch * steps_per_epoch, desc=desc,
               disable=not show, leave=False)
    for epoch in range(first_epoch, epochs):
        order = torch.randperm(len(images), generator=shuffle)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x, y = aug(images[idx].to(device)), labels[idx].to(device)
            if gpu_fast:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu_fast):
                logits = model(x)
            logits = logits.float()
            batch_loss = (F.cross_entropy(logits, y) if loss == "ce"
                          else focal_loss(logits, y, gamma))
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            sched.step()
            total += batch_loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
            bar.update(1)
        history["loss"].append(total / seen)
        history["train_acc"].append(correct / seen)
        if partial is not None and partial.due() and epoch + 1 < epochs:
            partial.save({"model": model.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "shuffle": shuffle.get_state(),
                          "rng": rng_state(device), "history": history, "epoch": epoch + 1})
    bar.close()
    if partial is not None:
        partial.clear()
    model.eval().to(memory_format=torch.contiguous_format)
    return history


@torch.no_grad()
def apply_batched(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024,
                  device: str = "cpu", method: str = "forward") -> torch.Tensor:
    """``model.<method>(inputs)`` in eval mode, batched on ``device``, gathered on the CPU."""
    model.eval().to(device)
    fn = getattr(model, method)
    return torch.cat([fn(inputs[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(inputs), batch_size)])


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   device: str = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``images``, batched, on the CPU."""
    return apply_batched(model, images, batch_size, device)


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
          device: str = "cpu") -> torch.Tensor:
    """Penultimate features ``model.embed`` of ``images``, batched."""
    return apply_batched(model, images, batch_size, device, method="embed")


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Acc@k; the one implementation is ``lib.metrics.fidelity.topk_accuracy``."""
    from .metrics.fidelity import topk_accuracy as implementation  # lazy: metrics imports us

    return implementation(logits, labels, k)


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts (true class × predicted class)."""
    flat = labels * n_classes + pred
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


# ---------------------------------------------------------------------------- the three roles
ROLES = ("target", "evaluator", "perceptual")


def trained_roles(cfg) -> tuple[str, ...]:
    """The roles trained here: all three, less P when d_P is the pretrained LPIPS-VGG."""
    return tuple(r for r in ROLES if not (r == "perceptual" and cfg["perc_arch"] == "lpips-vgg"))
_ROLE_KEYS = {"target": "target", "evaluator": "eval", "perceptual": "perc"}


def role_training_set(role: str, cfg, data, split, seed: int):
    """(images, labels in the model's label space, original train indices) for ``role``.

    target: D, labels mapped to the private classes; evaluator: the train split minus D
    and R (10-way); perceptual: the public set only (its classes, mapped to 0..C-1).
    """
    import numpy as np

    from . import data as data_mod

    if role == "target":
        idx = split.private
    elif role == "evaluator":
        idx = split.evaluator
    elif role == "perceptual":
        idx = split.public
    else:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    limit = cfg.get(f"{_ROLE_KEYS[role]}_train_limit", 0)
    if limit and limit < len(idx):
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(idx, size=limit, replace=False))
    images, labels = data_mod.subset(data, idx, train=True, size=cfg["image_size"])
    if role == "target":
        labels = data_mod.to_private_labels(labels, cfg["private_classes"])
    elif role == "evaluator" and split.eval_classes is not None:
        labels = data_mod.to_private_labels(labels, split.eval_classes)
    elif role == "perceptual":
        classes = sorted(set(labels.tolist()))
        if len(classes) < 2:
            raise ValueError("the perceptual network is trained on the public set's classes, "
                             "but it has fewer than two (an unlabelled face set such as FFHQ "
                             "or CelebA-HQ); use perc_arch=lpips-vgg (the paper's LPIPS-VGG)")
        if classes != list(range(len(classes))):   # e.g. class-disjoint, or public identities
            labels = data_mod.to_private_labels(labels, classes)
    return images, labels, idx


def role_classes(role: str, cfg, split) -> list[int]:
    """The original class ids behind the output units of ``role``."""
    import numpy as np

    from . import data as data_mod

    if role == "target":
        return list(cfg["private_classes"])
    if role == "evaluator":
        return list(split.eval_classes or range(data_mod.N_CLASSES))
    if split.public_classes is not None:
        return list(split.public_classes)
    if split.kind == "class-disjoint":
        return list(data_mod.CLASS_DISJOINT_PUBLIC)
    return list(range(data_mod.N_CLASSES))


def fit_classifier(role: str, cfg, data, split, seed: int, device: str = "cpu", partial=None):
    """Build and train the classifier of ``role``; returns (model, train_indices, history)."""
    from .models import build_classifier

    key = _ROLE_KEYS[role]
    if cfg[f"{key}_arch"] == "lpips-vgg":
        raise ValueError(f"the {role} network is LPIPS-VGG (pretrained, not trained here); "
                         "use lib.training.require_perceptual_distance")
    images, labels, idx = role_training_set(role, cfg, data, split, seed)
    torch.manual_seed(seed)  # the initial weights depend on the role's seed only
    spec = {"arch": cfg[f"{key}_arch"], "n_classes": len(role_classes(role, cfg, split)),
            "width": cfg[f"{key}_width"], "in_channels": images.shape[1], "kernel_size": 3}
    if role == "target" and cfg["target_head"] != "gap":
        spec.update(head=cfg["target_head"], image_size=cfg["image_size"])
    model = build_classifier(spec)
    loss = cfg["target_loss"] if role == "target" else "ce"
    history = train_classifier(model, images, labels, epochs=cfg[f"{key}_epochs"],
                               lr=cfg[f"{key}_lr"], batch_size=cfg["batch_size"], seed=seed,
                               loss=loss, gamma=cfg["focal_gamma"], device=device,
                               augment=cfg[f"{key}_augment"], amp=cfg["amp"], partial=partial,
                               desc=f"{role} ({cfg[f'{key}_arch']})")
    return model.cpu(), idx, history


def role_config(role: str, cfg) -> dict:
    """The config entries a trained ``role`` depends on (stored with its checkpoint)."""
    key = _ROLE_KEYS[role]
    keys = [k for k in cfg if k.startswith(key + "_")] + [
        "dataset", "split", "split_seed", "private_classes", "private_per_class",
        "image_size", "batch_size", "amp"] + (["focal_gamma"] if role == "target" else []) + (
        ["face_split"] if cfg["dataset"] == "faces" else [])
    return {k: cfg[k] for k in sorted(keys)}


def classifier_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A classifier's weights as checkpoint tensors (``model.<name>``)."""
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def classifier_from(tensors: dict[str, torch.Tensor], arch: dict) -> nn.Module:
    """The classifier of ``arch`` (its ``arch_spec``) with the ``model.*`` checkpoint tensors,
    in eval mode; other tensors in ``tensors`` are ignored."""
    from .models import build_classifier

    model = build_classifier(arch)
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items()
                           if k.startswith("model.")})
    return model.eval()


def require_classifier(ctx, role: str, data=None, split=None):
    """The trained classifier of ``role`` from the run folder, trained now if missing.

    Returns (model, train_indices, info) where ``info`` says whether it was reused. A
    checkpoint made under another config is an error, never silently replaced.
    """
    import numpy as np

    from . import data as data_mod

    rel = f"models/{role}.safetensors"
    wanted = role_config(role, ctx.cfg)
    loaded = ctx.load_current(rel, wanted)
    if loaded is not None:
        tensors, meta = loaded
        model = classifier_from(tensors, meta["arch"])
        return model, tensors["train_indices"].numpy(), {"reused": True,
                                                         "history": meta.get("history")}
    if data is None or split is None:
        data, split = data_mod.split_for_config(ctx.cfg, data)
    seed = ctx.subseed(role)
    partial = PartialState(ctx.path(f"models/{role}.partial.safetensors"), wanted,
                           ctx.cfg["checkpoint_every_s"])
    model, idx, history = fit_classifier(role, ctx.cfg, data, split, seed, ctx.device, partial)
    tensors = classifier_tensors(model)
    tensors["train_indices"] = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    ctx.save_tensors(rel, tensors, {"arch": model.arch_spec, "config": wanted, "role": role,
                                    "seed": seed, "history": history,
                                    "classes": role_classes(role, ctx.cfg, split)})
    return model.eval(), idx, {"reused": False, "history": history}


def require_perceptual_distance(ctx, data=None, split=None):
    """The attacker's perceptual distance d_P: LPIPS-VGG from the local weights folder when
    ``perc_arch`` is ``lpips-vgg`` (the paper; a clear error when the weights are missing),
    else the LPIPS-style distance on the trained perceptual network P. Returns (distance, P
    or None)."""
    from .metrics.distances import LPIPS_VGG_WEIGHTS_FILE, PerceptualDistance, lpips_vgg

    if ctx.cfg["perc_arch"] == "lpips-vgg":
        from . import weights

        folder = weights.require((LPIPS_VGG_WEIGHTS_FILE,))
        return lpips_vgg(folder, resize=ctx.cfg["lpips_resize"] or None), None
    perceptual, _, _ = require_classifier(ctx, "perceptual", data, split)
    return PerceptualDistance(perceptual), perceptual


def soundness_criterion(profile: str, n_target_classes: int, n_eval_classes: int = 10):
    """Claim C0's thresholds (T accuracy, E accuracy) and their wording, per PROTOCOL.md."""
    if profile == "smoke":
        t_min, e_min = 1.0 / n_target_classes, 1.0 / n_eval_classes
        return t_min, e_min, f"smoke: T > {t_min:.2f} and E > {e_min:.2f} (above chance)"
    return 0.85, 0.90, "T ≥ 0.85 and E ≥ 0.90"


# ------------------------------------------------------------------------------------- GAN
def gan_augmentation(size: int = 32) -> nn.Module:
    """Differentiable augmentation of discriminator inputs (DiffAugment-style, kornia):
    random translation by up to 1/8 of the side and a random 1/4-side cutout. Applied alike
    to real and generated images, so D never learns the augmentation itself."""
    return K.AugmentationSequential(
        K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), padding_mode="zeros", p=1.0),
        K.RandomErasing(scale=(1 / 16, 1 / 16), ratio=(1.0, 1.0), value=0.0, p=1.0),
    )


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


def ema_beta(batch_size: int, ema_kimg: float) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images (StyleGAN2's rule)."""
    return 0.5 ** (batch_size / max(ema_kimg * 1000.0, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 − β)·model for parameters; buffers (batch-norm statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def train_gan(generator: nn.Module, discriminator: nn.Module, images: torch.Tensor, *,
              steps: int, batch_size: int, lr: float, seed: int, r1_gamma: float = 1.0,
              r1_every: int = 16, ema_kimg: float = 10.0, augment: bool = False,
              betas: tuple[float, float] = (0.5, 0.99), generator_ema: nn.Module | None = None,
              extra_generator_loss=None, log_every: int = 10, device: str = "cpu",
              progress: bool | None = None, desc: str = "GAN", partial=None,
              extra_state: dict[str, list] | None = None) -> tuple[nn.Module, dict]:
    """Alternate discriminator and generator Adam steps on ``images``; returns (EMA G, history).

    D: logistic loss, lazy R1 (γ = ``r1_gamma`` every ``r1_every`` steps, scaled by the
    interval). G: non-saturating loss, plus ``extra_generator_loss(fake, step) -> (loss,
    stats)`` when given (the transfer modes add their target term here). ``generator`` and
    ``discriminator`` are trained in place; the EMA copy (``generator_ema``, a deep copy of
    G when None) is what the attacks use. Every draw comes from ``seed``. ``partial``
    (``lib.artifacts.PartialState``): saved at step ends when due, resumed from, cleared at
    the end; ``extra_state`` names lists the caller keeps (the transfer's monitor), saved
    and restored in place with it.
    """
    import copy

    from tqdm import tqdm

    if steps < 0 or batch_size < 1 or len(images) == 0:
        raise ValueError(f"need steps ≥ 0, batch_size ≥ 1 and some images (steps={steps}, "
                         f"batch_size={batch_size}, images={len(images)})")
    torch.manual_seed(seed)
    draws = torch.Generator().manual_seed(seed)
    G, D = generator.to(device).train(), discriminator.to(device).train()
    G_ema = (copy.deepcopy(generator) if generator_ema is None else generator_ema).to(device)
    G_ema.eval().requires_grad_(False)
    aug = gan_augmentation(images.shape[-1]).to(device) if augment else nn.Identity()
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    beta = ema_beta(batch_size, ema_kimg)
    history: dict[str, list] = {"step": [], "d_loss": [], "g_loss": [], "r1": [],
                                "d_real": [], "d_fake": []}
    show = progress_enabled() if progress is None else progress
    r1_value = float("nan")
    first = 0
    saved = partial.load() if partial is not None else None
    if saved is not None:
        from .artifacts import set_rng_state

        for module, key in ((G, "G"), (D, "D"), (G_ema, "G_ema")):
            module.load_state_dict(saved[key])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        draws.set_state(saved["draws"])
        set_rng_state(saved["rng"], device)
        history, first, r1_value = saved["history"], int(saved["step"]), saved["r1_value"]
        for name, items in (extra_state or {}).items():
            items[:] = saved["extra"][name]
    for step in tqdm(range(first, steps), desc=desc, disable=not show, leave=False,
                     initial=first, total=steps):
        real = images[torch.randint(len(images), (batch_size,), generator=draws)].to(device)
        z = torch.randn(batch_size, G.z_dim, generator=draws).to(device)
        # discriminator
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G(z)
        real_logits, fake_logits = D(aug(real)), D(aug(fake))
        d_loss = discriminator_loss(real_logits, fake_logits)
        if r1_gamma > 0 and step % r1_every == 0:
            r1 = r1_penalty(D, aug(real))
            d_loss = d_loss + 0.5 * r1_gamma * r1_every * r1
            r1_value = r1.item()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator
        D.requires_grad_(False)
        z = torch.randn(batch_size, G.z_dim, generator=draws).to(device)
        fake = G(z)
        g_loss = generator_loss(D(aug(fake)))
        total, stats = g_loss, {}
        if extra_generator_loss is not None:
            extra, stats = extra_generator_loss(fake, step)
            total = total + extra
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        update_ema(G_ema, G, beta)
        if step % log_every == 0 or step == steps - 1:
            history["step"].append(step)
            history["d_loss"].append(d_loss.item())
            history["g_loss"].append(g_loss.item())
            history["r1"].append(r1_value)
            history["d_real"].append(real_logits.mean().item())
            history["d_fake"].append(fake_logits.mean().item())
            for key, value in stats.items():
                history.setdefault(key, []).append(float(value))
        if partial is not None and partial.due() and step + 1 < steps:
            from .artifacts import rng_state

            partial.save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                          "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                          "draws": draws.get_state(), "rng": rng_state(device),
                          "history": history, "step": step + 1, "r1_value": r1_value,
                          "extra": {k: list(v) for k, v in (extra_state or {}).items()}})
    if partial is not None:
        partial.clear()
    D.requires_grad_(True)
    G.eval()
    D.eval()
    return G_ema, history


def generate(generator: nn.Module, latents: torch.Tensor, batch_size: int = 512,
             device: str = "cpu") -> torch.Tensor:
    """Images of ``generator`` (eval mode) for ``latents``, batched, on the CPU."""
    return apply_batched(generator, latents, batch_size, device)


def pack_modules(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One flat tensor dict ``{"<name>.<param>": tensor}`` for several modules (one file)."""
    return {f"{name}.{k}": v.detach().cpu().contiguous()
            for name, module in modules.items() for k, v in module.state_dict().items()}


def unpack_modules(tensors: dict[str, torch.Tensor], modules: dict[str, nn.Module]) -> None:
    """Load ``pack_modules``' output back into ``modules`` (strict: every key must match)."""
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                if k.startswith(prefix)})


def gan_config(cfg) -> dict:
    """The config entries the pretrained GAN depends on (stored with its checkpoint)."""
    keys = [k for k in cfg if k.startswith("gan_")] + [
        "dataset", "split", "split_seed", "private_classes", "private_per_class", "image_size"]
    return {k: cfg[k] for k in sorted(keys)}


def build_gan(cfg):
    """An untrained (generator, discriminator) pair of the profile's sizes."""
    from .models import Discriminator, Generator

    channels = 3 if cfg["dataset"] == "faces" else 1
    return (Generator(cfg["gan_z_dim"], cfg["gan_width"], channels, cfg["image_size"]),
            Discriminator(cfg["gan_d_width"], channels, cfg["image_size"]))


def gan_training_indices(cfg, split, seed: int):
    """Train-split indices of the public images the GAN learns from (``gan_train_limit`` of
    them, drawn with ``seed``, when set)."""
    import numpy as np

    idx = split.public
    limit = cfg["gan_train_limit"]
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return idx


def gan_training_set(cfg, data, split, seed: int) -> torch.Tensor:
    """The public images the GAN learns from (see ``gan_training_indices``)."""
    from . import data as data_mod

    idx = gan_training_indices(cfg, split, seed)
    return data_mod.subset(data, idx, train=True, size=cfg["image_size"])[0]


def require_gan(ctx, data=None, split=None):
    """The pretrained GAN prior from the run folder, pretrained now on the public set if missing.

    Returns (generator, generator_ema, discriminator, info). The EMA generator is the prior
    the attacks use; the raw generator and the discriminator are where transfer starts.
    """
    from . import data as data_mod

    rel = "models/gan_prior.safetensors"
    wanted = gan_config(ctx.cfg)
    G, D = build_gan(ctx.cfg)
    G_ema = build_gan(ctx.cfg)[0]
    loaded = ctx.load_current(rel, wanted)
    if loaded is not None:
        tensors, meta = loaded
        unpack_modules(tensors, {"G": G, "G_ema": G_ema, "D": D})
        return G.eval(), G_ema.eval(), D.eval(), {"reused": True, "history": meta["history"]}
    if data is None or split is None:
        data, split = data_mod.split_for_config(ctx.cfg, data)
    seed = ctx.subseed("gan_prior")
    images = gan_training_set(ctx.cfg, data, split, seed)
    torch.manual_seed(seed)
    G, D = build_gan(ctx.cfg)
    partial = PartialState(ctx.path("models/gan_prior.partial.safetensors"), wanted,
                           ctx.cfg["checkpoint_every_s"])
    G_ema, history = train_gan(
        G, D, images, steps=ctx.cfg["gan_steps"], batch_size=ctx.cfg["gan_batch"],
        lr=ctx.cfg["gan_lr"], seed=seed, r1_gamma=ctx.cfg["gan_r1_gamma"],
        r1_every=ctx.cfg["gan_r1_every"], ema_kimg=ctx.cfg["gan_ema_kimg"],
        augment=ctx.cfg["gan_augment"], device=ctx.device, desc="GAN prior", partial=partial)
    G, G_ema, D = G.cpu().eval(), G_ema.cpu().eval(), D.cpu().eval()
    ctx.save_tensors(rel, pack_modules({"G": G, "G_ema": G_ema, "D": D}),
                     {"generator": G.arch_spec, "discriminator": D.arch_spec, "config": wanted,
                      "seed": seed, "history": history, "n_images": len(images)})
    return G, G_ema, D, {"reused": False, "history": history}
