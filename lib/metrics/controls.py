"""Controls that calibrate DDCS: what an attacker gets without inverting the target.

(a) ``public_by_target``: public images labelled by the target's argmax — an attacker with
public data and query access, no inversion; ``random_generator``: the GAN prior's samples at
random codes, the most target-confident per class — the attack's starting point, no
optimisation. (b) ``real_test``: real test images of the private classes
with their true labels — knowledge of the class, not of the training samples. Attack results
are read against these.

Both drawn controls stream: candidates are generated (or loaded) and labelled a chunk at a
time, so a draw never holds its ``candidates`` × ``per_class`` × classes images at once
(200,000 at the paper profile). The chunks are whole multiples of the batches of
``lib.inference`` (``chunk_rows``), so every image and every probability is the one the
whole-set pass computes, and the final choice is ``torch.topk`` over the whole column of
probabilities (its own order among tied values; the ``random_generator`` columns are read back
from a temporary file, 4 bytes per candidate and class): the streamed draw equals the
whole-set draw, bit for bit. ``random_generator`` holds its candidates' images while it draws
only when they fit in ``HOLD_BYTES`` (40 MB at the cpu profile); otherwise it keeps none and
generates the chosen ones again, in the same batches, so the same images. It can hand its set
to the judge from a file (``spill``).
"""
from __future__ import annotations

import math
import tempfile

import numpy as np
import torch

from ..data.images import ImageFile, LazyImages, subset
from ..errors import InputError
from ..inference import generate, predict_logits

LOGITS_BATCH = 1024     # ``predict_logits``' default batch, which the controls use
CHUNK_AT_LEAST = 4096   # candidates per streamed chunk, at least
SPILL_BYTES = 1 << 30   # a drawn set larger than this is kept in a temporary file
HOLD_BYTES = 1 << 28    # random_generator holds its candidates' images up to this size

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


def chunk_rows(*batch_sizes: int, at_least: int = CHUNK_AT_LEAST) -> int:
    """Rows per streamed chunk: the smallest multiple of every batch size in ``batch_sizes``
    that is ≥ ``at_least`` (so a chunk's batches are the whole-set pass's batches)."""
    if any(b < 1 for b in batch_sizes):
        raise InputError(f"batch sizes must be ≥ 1, got {batch_sizes}")
    step = math.lcm(*batch_sizes)
    return step * max(1, math.ceil(at_least / step))


def _check_chunk(chunk: int, *batch_sizes: int) -> int:
    step = math.lcm(*batch_sizes)
    if chunk < 1 or chunk % step:
        raise InputError(f"chunk ({chunk}) must be a positive multiple of {step} (the batch "
                         f"sizes {batch_sizes}), or the streamed draw would not equal the "
                         "whole-set one")
    return chunk


def public_by_target(data, split, target: torch.nn.Module, classes, per_class: int,
                     seed: int, size: int | None = None, candidates: int = 20,
                     device: str | torch.device = "cpu",
                     chunk: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``per_class`` public images per private class, labelled by the target's argmax (run
    on ``device``). A class that the target gives fewer public images (many identities, few
    public images) is filled with the public images most probable for it under the target.
    The candidates are loaded and labelled ``chunk`` at a time (a multiple of
    ``LOGITS_BATCH``); only the chosen images are loaded again."""
    rng = np.random.default_rng(seed)
    n = min(len(split.public), candidates * per_class * len(classes))
    idx = np.sort(rng.choice(split.public, size=n, replace=False))
    step = _check_chunk(chunk or chunk_rows(LOGITS_BATCH), LOGITS_BATCH)
    logits = torch.cat([predict_logits(target, subset(data, idx[lo:lo + step], size=size)[0],
                                       device=device) for lo in range(0, n, step)])
    predicted = np.asarray(classes)[logits.argmax(1).numpy()]
    counts = np.array([(predicted == c).sum() for c in classes])
    if (counts >= per_class).all():
        chosen = _per_class_draw(predicted, classes, per_class, rng)
        return subset(data, idx[chosen], size=size)[0], predicted[chosen]
    if n < per_class:
        raise InputError(f"the public set has {n} images; the control needs "
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
    return subset(data, idx[chosen], size=size)[0], np.concatenate(labels)


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
                     device: str | torch.device = "cpu", chunk: int | None = None,
                     spill: bool | None = None) -> tuple[torch.Tensor | LazyImages, np.ndarray]:
    """Samples of ``generator`` at random codes, no optimisation: of ``candidates`` ×
    ``per_class`` × len(classes) samples, the ``per_class`` most target-confident for each
    class (the PPA-style attack's candidate selection without its optimisation); the networks
    run on ``device``.

    Two streamed passes. First every candidate is generated and labelled ``chunk`` at a time
    (a multiple of ``batch_size`` and of ``LOGITS_BATCH``) and its class probabilities are
    kept, in a temporary file, class by class within each chunk; each class's choice is
    ``torch.topk`` over its whole column read back from it. Then the batches of
    ``batch_size`` that hold a chosen candidate are taken from the held chunks when every
    candidate's image fits in ``HOLD_BYTES``, else generated again — the same codes in the
    same batches, so the same images — and the chosen ones written out; in that case no image
    but one chunk's is held while drawing. ``spill``: the chosen set goes to a temporary file and
    comes back as a ``LazyImages`` (default: when it is larger than ``SPILL_BYTES``), else
    a tensor."""
    n = candidates * per_class * len(classes)
    step = _check_chunk(chunk or chunk_rows(batch_size, LOGITS_BATCH), batch_size, LOGITS_BATCH)
    latents = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    sizes: list[int] = []
    held: list[torch.Tensor] = []          # every chunk's images, when they fit in HOLD_BYTES
    with tempfile.TemporaryFile() as spill_file:
        for lo in range(0, n, step):
            images = generate(generator, latents[lo:lo + step], batch_size, device)
            probs = torch.softmax(predict_logits(target, images, device=device), dim=1)
            probs.T.contiguous().numpy().tofile(spill_file)
            sizes.append(len(probs))
            if n * images[0].numel() * images.element_size() <= HOLD_BYTES:
                held.append(images)
            del images
        chosen = torch.cat([_column(spill_file, sizes, len(classes), j).topk(per_class).indices
                            for j in range(len(classes))]).tolist()
    slots: dict[int, list[int]] = {}
    for i, row in enumerate(chosen):
        slots.setdefault(row, []).append(i)

    def batch_at(first: int) -> torch.Tensor:
        """The batch of ``batch_size`` candidates from row ``first``: held, or made again."""
        if held:                           # a chunk is whole batches: none straddles two
            return held[first // step][first % step:first % step + batch_size]
        return generate(generator, latents[first:first + batch_size], batch_size, device)

    out = None
    for first in sorted({row - row % batch_size for row in slots}):
        images = batch_at(first)
        if out is None:
            image_bytes = images[0].numel() * images.element_size()
            on_disk = spill if spill is not None else len(chosen) * image_bytes > SPILL_BYTES
            out = (ImageFile(len(chosen), images.shape[1:], images.dtype) if on_disk
                   else torch.empty((len(chosen), *images.shape[1:]), dtype=images.dtype))
        for row in [r for r in range(first, first + len(images)) if r in slots]:
            for i in slots[row]:
                out[i] = images[row - first]
    return (out.images() if isinstance(out, ImageFile) else out,
            np.repeat(np.asarray(classes), per_class))


def _column(spill, sizes: list[int], n_classes: int, j: int) -> torch.Tensor:
    """Class ``j``'s probabilities of every candidate from the chunk-by-chunk, class-major
    float32 file ``spill``."""
    column, start, offset = np.empty(sum(sizes), dtype=np.float32), 0, 0
    for size in sizes:
        spill.seek(offset + j * size * 4)
        spill.readinto(memoryview(column[start:start + size]).cast("B"))
        start, offset = start + size, offset + n_classes * size * 4
    return torch.from_numpy(column)
