"""Controls that calibrate DDCS: what an attacker gets without inverting the target.

(a) ``public_by_target``: public images labelled by the target's argmax — an attacker with
public data and query access, no inversion; ``random_generator``: the GAN prior's samples at
random codes, the most target-confident per class — the attack's starting point, no
optimisation. (b) ``real_test``: real test images of the private classes
with their true labels — knowledge of the class, not of the training samples. Attack results
are read against these.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.images import subset
from ..errors import InputError
from ..inference import generate, predict_logits

CONTROLS = {
    "random_generator": "the GAN prior's random samples, most target-confident per class",
    "public_by_target": "public images labelled by the target's argmax",
    "real_test": "real test images of the private classes, true labels",
}


def _per_class_draw(labels: np.ndarray, classes, per_class: int, rng,
                    at_most: bool = False) -> np.ndarray:
    """``per_class`` positions of each class, drawn with ``rng`` (``at_most``: all of a class
    that has fewer; else that is an error)."""
    picks = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        if at_most and pool.size < per_class:
            picks.append(pool)
            continue
        if pool.size < per_class:
            raise InputError(f"class {c} has {pool.size} candidates; the control needs "
                             f"{per_class} per class")
        picks.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
    return np.concatenate(picks)


def public_by_target(data, split, target: torch.nn.Module, classes, per_class: int,
                     seed: int, size: int | None = None, candidates: int = 20,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """``per_class`` public images per private class, labelled by the target's argmax (run
    on ``device``). A class that the target gives fewer public images (many identities, few
    public images) is filled with the public images most probable for it under the target."""
    rng = np.random.default_rng(seed)
    n = min(len(split.public), candidates * per_class * len(classes))
    idx = np.sort(rng.choice(split.public, size=n, replace=False))
    images, _ = subset(data, idx, train=True, size=size)
    logits = predict_logits(target, images, device=device)
    predicted = np.asarray(classes)[logits.argmax(1).numpy()]
    counts = np.array([(predicted == c).sum() for c in classes])
    if (counts >= per_class).all():
        chosen = _per_class_draw(predicted, classes, per_class, rng)
        return images[chosen], predicted[chosen]
    if len(images) < per_class:
        raise InputError(f"the public set has {len(images)} images; the control needs "
                         f"{per_class} per class")
    probs = torch.softmax(logits, dim=1)
    picks, labels = [], []
    for j, c in enumerate(classes):
        pool = np.flatnonzero(predicted == c)
        if pool.size >= per_class:
            pick = np.sort(rng.choice(pool, size=per_class, replace=False))
        else:
            order = probs[:, j].argsort(descending=True).numpy()
            extra = [i for i in order if predicted[i] != c][:per_class - pool.size]
            pick = np.r_[pool, extra].astype(np.int64)
        picks.append(pick)
        labels.append(np.full(len(pick), c))
    chosen = np.concatenate(picks)
    return images[chosen], np.concatenate(labels)


def real_test(data, split, classes, per_class: int, seed: int,
              size: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``per_class`` real test images of each private class with their true labels (all of
    them where a class has fewer: the face split's test images are R's few held-out images)."""
    rng = np.random.default_rng(seed)
    labels = data.test_labels[split.test].numpy()
    chosen = split.test[_per_class_draw(labels, classes, per_class, rng, at_most=True)]
    images, y = subset(data, chosen, train=False, size=size)
    return images, y.numpy()


def random_generator(generator: torch.nn.Module, target: torch.nn.Module, classes,
                     per_class: int, seed: int, candidates: int = 20, batch_size: int = 512,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """Samples of ``generator`` at random codes, no optimisation: of ``candidates`` ×
    ``per_class`` × len(classes) samples, the ``per_class`` most target-confident for each
    class (the PPA-style attack's candidate selection without its optimisation); the networks
    run on ``device``."""
    n = candidates * per_class * len(classes)
    latents = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    images = generate(generator, latents, batch_size, device)
    probs = torch.softmax(predict_logits(target, images, device=device), dim=1)
    chosen = torch.cat([probs[:, j].topk(per_class).indices for j in range(len(classes))])
    labels = np.repeat(np.asarray(classes), per_class)
    return images[chosen], labels
