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
                     desc: str = "train") -> dict[str, Any]:
    """Train ``model`` in place with AdamW and a cosine schedule; returns the history.

    ``loss`` is ``"ce"`` or ``"focal"`` (γ = ``gamma``). Shuffling and augmentation draw
    from ``seed`` only, so the same call gives the same weights on the same machine.
    """
    if loss not in ("ce", "focal"):
        raise ValueError(f"unknown loss {loss!r}; valid: ce, focal")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images, and at least one ({len(images)}, "
                         f"{len(labels)})")
    from tqdm import tqdm

    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    model.to(device).train()
    aug = classifier_augmentation(images.shape[-1]).to(device) if augment else nn.Identity()
    steps_per_epoch = math.ceil(len(images) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    history: dict[str, list[float]] = {"loss": [], "train_acc": []}
    show = progress_enabled() if progress is None else progress
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not show, leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=shuffle)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x, y = aug(images[idx].to(device)), labels[idx].to(device)
            logits = model(x)
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
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   device: str = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``images``, batched, on the CPU."""
    model.eval().to(device)
    return torch.cat([model(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
          device: str = "cpu") -> torch.Tensor:
    """Penultimate features ``model.embed`` of ``images``, batched."""
    model.eval().to(device)
    return torch.cat([model.embed(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(images), batch_size)])


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
    elif role == "perceptual":
        classes = sorted(set(labels.tolist()))
        labels = data_mod.to_private_labels(labels, classes) if len(classes) < 10 else labels
    return images, labels, idx


def role_classes(role: str, cfg, split) -> list[int]:
    """The original class ids behind the output units of ``role``."""
    import numpy as np

    from . import data as data_mod

    if role == "target":
        return list(cfg["private_classes"])
    if role == "evaluator":
        return list(range(data_mod.N_CLASSES))
    if split.kind == "class-disjoint":
        return list(data_mod.CLASS_DISJOINT_PUBLIC)
    return list(range(data_mod.N_CLASSES))


def fit_classifier(role: str, cfg, data, split, seed: int, device: str = "cpu"):
    """Build and train the classifier of ``role``; returns (model, train_indices, history)."""
    from .models import ConvClassifier

    key = _ROLE_KEYS[role]
    images, labels, idx = role_training_set(role, cfg, data, split, seed)
    torch.manual_seed(seed)  # the initial weights depend on the role's seed only
    model = ConvClassifier(cfg[f"{key}_arch"], len(role_classes(role, cfg, split)),
                           width=cfg[f"{key}_width"])
    loss = cfg["target_loss"] if role == "target" else "ce"
    history = train_classifier(model, images, labels, epochs=cfg[f"{key}_epochs"],
                               lr=cfg[f"{key}_lr"], batch_size=cfg["batch_size"], seed=seed,
                               loss=loss, gamma=cfg["focal_gamma"], device=device,
                               augment=cfg[f"{key}_augment"],
                               desc=f"{role} ({cfg[f'{key}_arch']})")
    return model.cpu(), idx, history


def role_config(role: str, cfg) -> dict:
    """The config entries a trained ``role`` depends on (stored with its checkpoint)."""
    key = _ROLE_KEYS[role]
    keys = [k for k in cfg if k.startswith(key + "_")] + [
        "dataset", "split", "split_seed", "private_classes", "private_per_class",
        "image_size", "batch_size"] + (["focal_gamma"] if role == "target" else [])
    return {k: cfg[k] for k in sorted(keys)}


def require_classifier(ctx, role: str, data=None, split=None):
    """The trained classifier of ``role`` from the run folder, trained now if missing.

    Returns (model, train_indices, info) where ``info`` says whether it was reused. A
    checkpoint made under another config is an error, never silently replaced.
    """
    import numpy as np

    from . import artifacts
    from . import data as data_mod
    from .models import build_classifier

    rel = f"models/{role}.safetensors"
    wanted = role_config(role, ctx.cfg)
    if ctx.exists(rel):
        tensors, meta = ctx.load_tensors(rel)
        if meta.get("config") != wanted:
            raise artifacts.ArtifactError(
                f"{ctx.path(rel)} was trained under another config ({meta.get('config')}); "
                f"this notebook wants {wanted}. Use a new RUN_DIR, or delete the file to retrain")
        idx = tensors.pop("train_indices").numpy()
        model = build_classifier(meta["arch"])
        model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items()})
        return model.eval(), idx, {"reused": True, "history": meta.get("history")}
    if data is None or split is None:
        data, split = data_mod.split_for_config(ctx.cfg, data)
    seed = ctx.subseed(role)
    model, idx, history = fit_classifier(role, ctx.cfg, data, split, seed, ctx.device)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors["train_indices"] = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    ctx.save_tensors(rel, tensors, {"arch": model.arch_spec, "config": wanted, "role": role,
                                    "seed": seed, "history": history,
                                    "classes": role_classes(role, ctx.cfg, split)})
    return model.eval(), idx, {"reused": False, "history": history}


def soundness_criterion(profile: str, n_target_classes: int, n_eval_classes: int = 10):
    """Claim C0's thresholds (T accuracy, E accuracy) and their wording, per PROTOCOL.md."""
    if profile == "smoke":
        t_min, e_min = 1.0 / n_target_classes, 1.0 / n_eval_classes
        return t_min, e_min, f"smoke: T > {t_min:.2f} and E > {e_min:.2f} (above chance)"
    return 0.85, 0.90, "T ≥ 0.85 and E ≥ 0.90"
