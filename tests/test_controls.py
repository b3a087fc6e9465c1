"""The drawn controls stream their candidates a chunk at a time and equal the whole-set draw,
bit for bit, ties among saturated probabilities included."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from lib.data.images import LazyImages, subset
from lib.errors import InputError
from lib.inference import generate, predict_logits
from lib.metrics.controls import chunk_rows, public_by_target, random_generator


class TinyGenerator(nn.Module):
    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3 * 8 * 8)

    def forward(self, z):
        return torch.tanh(self.net(z)).view(-1, 3, 8, 8)


def saturating_target(classes: int, scale: float) -> nn.Module:
    """A linear classifier whose logits are scaled by ``scale``: large scales saturate the
    softmax at exactly 1.0, so many candidates tie."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes))
    with torch.no_grad():
        net[1].weight.mul_(scale)
    return net


def whole_set_random_generator(generator, target, classes, per_class, seed, candidates,
                               batch_size):
    """The draw as it was before it streamed: every candidate generated and labelled at once."""
    n = candidates * per_class * len(classes)
    latents = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    images = generate(generator, latents, batch_size)
    probs = torch.softmax(predict_logits(target, images), dim=1)
    chosen = torch.cat([probs[:, j].topk(per_class).indices for j in range(len(classes))])
    return images[chosen], np.repeat(np.asarray(classes), per_class)


@pytest.mark.parametrize("scale", [1.0, 400.0])
def test_streamed_random_generator_equals_the_whole_set_draw(scale):
    torch.manual_seed(0)
    generator, target = TinyGenerator(), saturating_target(3, scale)
    classes, per_class, candidates = [2, 5, 7], 20, 40          # 2,400 candidates: 3 chunks
    want, want_labels = whole_set_random_generator(generator, target, classes, per_class, 11,
                                                   candidates, 64)
    got, labels = random_generator(generator, target, classes, per_class, 11, candidates,
                                   batch_size=64, chunk=1024)
    if scale > 1:                                       # the instrument: ties do occur here
        probs = torch.softmax(predict_logits(target, got), dim=1)
        assert (probs.max(1).values == 1.0).sum() > per_class
    assert torch.equal(got, want)
    assert np.array_equal(labels, want_labels)
    spilled, spilled_labels = random_generator(generator, target, classes, per_class, 11,
                                               candidates, batch_size=64, chunk=1024, spill=True)
    assert isinstance(spilled, LazyImages) and len(spilled) == len(want)
    assert torch.equal(spilled.tensor(), want) and np.array_equal(spilled_labels, want_labels)


def test_held_candidates_give_the_draw_of_generating_the_chosen_again(monkeypatch):
    """Held (the default at this size) or made again (``HOLD_BYTES`` below the set): the same
    images bit for bit; held, the generator runs once over the candidates."""
    from lib.metrics import controls
    torch.manual_seed(0)
    generator, target = TinyGenerator(), saturating_target(3, 400.0)
    classes, per_class, candidates = [2, 5, 7], 20, 40          # 2,400 candidates: 3 chunks
    batches = []
    forward = generator.forward
    generator.forward = lambda z: (batches.append(len(z)), forward(z))[1]     # counts rows
    held, held_labels = random_generator(generator, target, classes, per_class, 11, candidates,
                                         batch_size=64, chunk=1024)
    once = sum(batches)
    batches.clear()
    monkeypatch.setattr(controls, "HOLD_BYTES", 0)
    again, again_labels = random_generator(generator, target, classes, per_class, 11,
                                           candidates, batch_size=64, chunk=1024)
    assert once == 2400 and sum(batches) > 2400                  # the chosen made again
    assert torch.equal(held, again) and np.array_equal(held_labels, again_labels)


def test_chunk_must_be_a_multiple_of_the_batches():
    assert chunk_rows(512, 1024) == 4096 and chunk_rows(300, 1024) == 76800
    with pytest.raises(InputError, match="multiple of 1024"):
        random_generator(TinyGenerator(), saturating_target(2, 1.0), [0, 1], 2, 0, chunk=1000)


def _public_data(n: int = 2600):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, 12, 12), dtype=np.uint8))
    data = SimpleNamespace(train_images=images, train_labels=torch.zeros(n, dtype=torch.long),
                           image_size=8)
    return data, SimpleNamespace(public=np.arange(n))


def whole_set_public_by_target(data, split, target, classes, per_class, seed, candidates):
    """Before streaming: every candidate loaded, labelled, the chosen ones indexed."""
    rng = np.random.default_rng(seed)
    n = min(len(split.public), candidates * per_class * len(classes))
    idx = np.sort(rng.choice(split.public, size=n, replace=False))
    images, _ = subset(data, idx)
    logits = predict_logits(target, images)
    predicted = np.asarray(classes)[logits.argmax(1).numpy()]
    probs = torch.softmax(logits, dim=1)
    picks, labels = [], []
    for j, c in enumerate(classes):
        pool = np.flatnonzero(predicted == c)
        if pool.size >= per_class:
            picks.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
        else:
            order = probs[:, j].argsort(descending=True).numpy()
            extra = [i for i in order if predicted[i] != c][:per_class - pool.size]
            picks.append(np.r_[pool, extra].astype(np.int64))
        labels.append(np.full(len(picks[-1]), c))
    return images[np.concatenate(picks)], np.concatenate(labels)


@pytest.mark.parametrize("classes", [[0, 1, 2], list(range(40))])
def test_streamed_public_by_target_equals_the_whole_set_draw(classes):
    """Three classes: enough predicted per class (the random draw); forty: some classes are
    filled with the most probable others (the face split's case)."""
    data, split = _public_data()
    target = saturating_target(len(classes), 1.0)
    per_class = 20 if len(classes) == 3 else 30
    want, want_labels = whole_set_public_by_target(data, split, target, classes, per_class, 4, 20)
    got, labels = public_by_target(data, split, target, classes, per_class, 4, chunk=1024)
    assert torch.equal(got, want) and np.array_equal(labels, want_labels)


def test_a_drawn_set_larger_than_the_spill_size_is_kept_in_a_file(monkeypatch):
    from lib.metrics import controls
    generator, target = TinyGenerator(), saturating_target(2, 1.0)
    held, _ = random_generator(generator, target, [0, 1], 5, 3, candidates=4, batch_size=8,
                               chunk=1024)
    assert isinstance(held, torch.Tensor)                   # 10 images of 768 bytes: held
    monkeypatch.setattr(controls, "SPILL_BYTES", 10 * 3 * 8 * 8 * 4 - 1)
    spilled, _ = random_generator(generator, target, [0, 1], 5, 3, candidates=4, batch_size=8,
                                  chunk=1024)
    assert isinstance(spilled, LazyImages) and torch.equal(spilled.tensor(), held)
