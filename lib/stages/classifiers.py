"""Stage 02: the target T, the evaluator E and the attacker's perceptual network P.

Which images each role trains on (``role_training_set``), training one (``fit_classifier``),
loading or training it in a run folder (``require_classifier``), the attacker's perceptual
distance (``require_perceptual_distance``) and the test accuracies behind claim C0.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .. import weights
from ..artifacts import PartialState, load_module_tensors, module_tensors
from ..config import ROLE_KEYS, ROLES, role_config, trained_roles
from ..data import dataset
from ..data.images import N_FASHION_CLASSES, subset, to_private_labels
from ..distributed import SINGLE, World
from ..errors import InputError
from ..inference import predict_logits
from ..metrics.distances import PerceptualDistance, lpips_vgg
from ..metrics.fidelity import confusion_matrix, topk_accuracy
from ..models import build_classifier
from ..seeding import global_seed
from ..training import train_classifier


def role_training_set(role: str, cfg: Mapping[str, Any], data, split, seed: int):
    """(images, labels in the model's label space, original train indices) for ``role``.

    target: D, labels mapped to the private classes; evaluator: the train split minus D
    and R (10-way; the face data: D, its identities); perceptual: the public set only (its
    classes, mapped to 0..C-1).
    """
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    idx = {"target": split.private, "evaluator": split.evaluator,
           "perceptual": split.public}[role]
    limit = cfg.get(f"{ROLE_KEYS[role]}_train_limit", 0)
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    images, labels = subset(data, idx, train=True, size=cfg["image_size"])
    if role == "target":
        labels = to_private_labels(labels, cfg["private_classes"])
    elif role == "evaluator" and split.eval_classes is not None:
        labels = to_private_labels(labels, split.eval_classes)
    elif role == "perceptual":
        classes = sorted(set(labels.tolist()))
        if len(classes) < 2:
            raise InputError("the perceptual network is trained on the public set's classes, "
                             "but it has fewer than two (an unlabelled face set such as FFHQ "
                             "or CelebA-HQ); use perc_arch=lpips-vgg (the paper's LPIPS-VGG)")
        if classes != list(range(len(classes))):   # e.g. class-disjoint, or public identities
            labels = to_private_labels(labels, classes)
    return images, labels, idx


def role_classes(role: str, cfg: Mapping[str, Any], split) -> list[int]:
    """The original class ids behind the output units of ``role``."""
    if role == "target":
        return list(cfg["private_classes"])
    if role == "evaluator":
        return list(split.eval_classes or range(N_FASHION_CLASSES))
    if split.public_classes is not None:
        return list(split.public_classes)
    return list(dataset.module(cfg).CLASS_DISJOINT_PUBLIC if split.kind == "class-disjoint"
                else range(N_FASHION_CLASSES))


def fit_classifier(role: str, cfg: Mapping[str, Any], data, split, seed: int,
                   device: str = "cpu", partial: PartialState | None = None,
                   world: World = SINGLE):
    """Build and train the classifier of ``role``; returns (model, train_indices, history).
    ``world``: data-parallel over its processes (``lib.training.train_classifier``)."""
    key = ROLE_KEYS[role]
    if cfg[f"{key}_arch"] == "lpips-vgg":
        raise InputError(f"the {role} network is LPIPS-VGG (pretrained, not trained here); "
                         "use lib.stages.classifiers.require_perceptual_distance")
    images, labels, idx = role_training_set(role, cfg, data, split, seed)
    spec = {"arch": cfg[f"{key}_arch"], "n_classes": len(role_classes(role, cfg, split)),
            "width": cfg[f"{key}_width"], "in_channels": images.shape[1], "kernel_size": 3}
    if role == "target" and cfg["target_head"] != "gap":
        spec.update(head=cfg["target_head"], image_size=cfg["image_size"])
    with global_seed(seed):                    # the initial weights depend on the role's seed only
        model = build_classifier(spec)
    loss = cfg["target_loss"] if role == "target" else "ce"
    history = train_classifier(model, images, labels, epochs=cfg[f"{key}_epochs"],
                               lr=cfg[f"{key}_lr"], batch_size=cfg["batch_size"], seed=seed,
                               loss=loss, gamma=cfg["focal_gamma"], device=device,
                               augment=cfg[f"{key}_augment"], amp=cfg["amp"], partial=partial,
                               desc=f"{role} ({cfg[f'{key}_arch']})", world=world)
    return model.cpu(), idx, history


def classifier_from(tensors: dict[str, torch.Tensor], arch: dict) -> nn.Module:
    """The classifier of ``arch`` (its ``arch_spec``) with a checkpoint's ``model.*`` tensors,
    in eval mode."""
    model = build_classifier(arch)
    load_module_tensors(tensors, {"model": model})
    return model.eval()


def require_classifier(ctx, role: str, data=None, split=None, world: World = SINGLE):
    """The trained classifier of ``role`` from the run folder, trained now if missing.

    Returns (model, train_indices, info) where ``info`` says whether it was reused. A
    checkpoint made under another config is an error, never silently replaced. ``world``:
    trained data-parallel over its processes, rank 0 writes (the others wait for it).
    """
    rel = f"models/{role}.safetensors"
    wanted = role_config(role, ctx.cfg)
    loaded = ctx.load_current(rel, wanted)
    if loaded is not None:
        tensors, meta = loaded
        return (classifier_from(tensors, meta["arch"]), tensors["train_indices"].numpy(),
                {"reused": True, "history": meta.get("history")})
    if data is None or split is None:
        data, split = dataset.load(ctx.cfg, data)
    seed = ctx.subseed(role)
    partial = PartialState(ctx.path(f"models/{role}.partial.safetensors"), wanted,
                           ctx.cfg["checkpoint_every_s"])
    model, idx, history = fit_classifier(role, ctx.cfg, data, split, seed, ctx.device, partial,
                                         world)
    tensors = module_tensors({"model": model})
    tensors["train_indices"] = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    if world.main:
        ctx.save_tensors(rel, tensors, {"arch": model.arch_spec, "config": wanted, "role": role,
                                        "seed": seed, "history": history,
                                        "classes": role_classes(role, ctx.cfg, split),
                                        **world.record})
    world.barrier()
    return model.eval(), idx, {"reused": False, "history": history}


def require_classifiers(ctx, data, split, world: World = SINGLE) -> dict[str, nn.Module]:
    """Every classifier the config trains (T, E, and P unless d_P is LPIPS-VGG), by role."""
    return {role: require_classifier(ctx, role, data, split, world)[0]
            for role in trained_roles(ctx.cfg)}


def require_perceptual_distance(ctx, data=None, split=None, world: World = SINGLE):
    """The attacker's perceptual distance d_P: LPIPS-VGG from the local weights folder when
    ``perc_arch`` is ``lpips-vgg`` (the paper; a clear error when the weights are missing),
    else the LPIPS-style distance on the trained perceptual network P. Returns (distance, P
    or None)."""
    if ctx.cfg["perc_arch"] == "lpips-vgg":
        folder = weights.require((weights.LPIPS_VGG_WEIGHTS_FILE,))
        return lpips_vgg(folder, resize=ctx.cfg["lpips_resize"] or None), None
    perceptual, _, _ = require_classifier(ctx, "perceptual", data, split, world)
    return PerceptualDistance(perceptual), perceptual


def test_classifiers(cfg: Mapping[str, Any], data, split, models: dict[str, nn.Module],
                     device: str | torch.device = "cpu"
                     ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Test accuracies and confusion matrices (true × predicted) of the trained classifiers.

    T on the private classes' test images; E strict (all its classes; Fashion-MNIST: the
    whole test split, faces: R), its Acc@5, and restricted to the private classes; P on the
    test images of its classes when there are any (the face data's public identities have
    none). The networks run on ``device``."""
    classes = list(cfg["private_classes"])
    eval_classes = role_classes("evaluator", cfg, split)
    x_priv, y_priv = subset(data, split.test, train=False)
    x_all, y_all = subset(data, data.evaluator_test_indices(split), train=False)
    y_e = to_private_labels(y_all, eval_classes)
    y_t = to_private_labels(y_priv, classes)
    logits_t = predict_logits(models["target"], x_priv, device=device)
    logits_e = predict_logits(models["evaluator"], x_all, device=device)
    acc = {"target_test_acc": topk_accuracy(logits_t, y_t),
           "evaluator_test_acc_strict": topk_accuracy(logits_e, y_e),
           "evaluator_test_acc5_strict": topk_accuracy(logits_e, y_e, k=5),
           "evaluator_test_acc_restricted": topk_accuracy(
               predict_logits(models["evaluator"], x_priv, device=device)[:, classes], y_t)}
    if "perceptual" in models:
        perc_classes = role_classes("perceptual", cfg, split)
        mask = np.isin(y_all.numpy(), perc_classes)
        if mask.any():
            logits_p = predict_logits(models["perceptual"], x_all[mask], device=device)
            acc["perceptual_test_acc"] = topk_accuracy(
                logits_p, to_private_labels(y_all[mask], perc_classes))
    confusion = {"target": confusion_matrix(logits_t.argmax(1), y_t, len(classes)),
                 "evaluator": confusion_matrix(logits_e.argmax(1), y_e, len(eval_classes))}
    return acc, confusion
