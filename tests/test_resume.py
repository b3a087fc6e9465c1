"""Resumable stages: a stage cut short continues from its partial state to the same result."""
from __future__ import annotations

import pytest
import torch

from lib import artifacts
from lib.artifacts import ArtifactError, PartialState
from lib.models import ConvClassifier, Discriminator, Generator
from lib.training import train_classifier, train_gan


class Cut(Exception):
    """Stands for the end of a GPU lease."""


class CutAfter(PartialState):
    """Saves every time (every_s tiny) and stops the run after ``n`` saves."""

    def __init__(self, path, config, n):
        super().__init__(path, config, every_s=1e-9)
        self.n = n

    def save(self, state):
        super().save(state)
        self.n -= 1
        if self.n == 0:
            raise Cut()


def _data(n=48):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, torch.randint(0, 3, (n,), generator=g)


def _classifier(partial=None):
    torch.manual_seed(0)
    model = ConvClassifier("mcnn", 3, width=4)
    x, y = _data()
    history = train_classifier(model, x, y, epochs=4, lr=1e-2, batch_size=16, seed=3,
                               loss="focal", augment=True, partial=partial, progress=False)
    return model, history


def test_classifier_training_resumes_to_the_same_weights(tmp_path):
    path = tmp_path / "target.partial.safetensors"
    reference, ref_history = _classifier()
    with pytest.raises(Cut):
        _classifier(CutAfter(path, {"k": 1}, n=2))         # stopped after epoch 2
    assert path.is_file() and not artifacts.zipfile.is_zipfile(path)   # safetensors, no pickle
    resumed, history = _classifier(PartialState(path, {"k": 1}, every_s=1e-9))
    assert history == ref_history
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert not path.exists()                                 # cleared once finished


def _gan(partial=None, extra=None):
    torch.manual_seed(0)
    G, D = Generator(z_dim=8, width=4), Discriminator(4)
    images = _data(32)[0]
    calls = extra if extra is not None else []

    def extra_loss(fake, step):
        calls.append(step)
        return fake.mean() * 0.1, {"mean": fake.mean().item()}

    G_ema, history = train_gan(G, D, images, steps=6, batch_size=8, lr=1e-3, seed=5,
                               r1_every=2, extra_generator_loss=extra_loss, log_every=1,
                               partial=partial, extra_state={"calls": calls}, progress=False)
    return G_ema, history, calls


def test_gan_training_resumes_to_the_same_generator(tmp_path):
    path = tmp_path / "gan.partial.safetensors"
    reference, ref_history, ref_calls = _gan()
    with pytest.raises(Cut):
        _gan(CutAfter(path, {"g": 1}, n=3))
    resumed, history, calls = _gan(PartialState(path, {"g": 1}, every_s=1e-9), extra=[])
    assert history == ref_history and calls == ref_calls == list(range(6))
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_partial_state_of_another_config_is_refused(tmp_path):
    path = tmp_path / "x.partial.safetensors"
    PartialState(path, {"epochs": 3}, 1).save({"w": torch.ones(2), "step": 1, "h": [0.5, None]})
    got = PartialState(path, {"epochs": 3}, 1).load()
    assert torch.equal(got["w"], torch.ones(2)) and got["step"] == 1 and got["h"] == [0.5, None]
    with pytest.raises(ArtifactError, match="another config; delete it"):
        PartialState(path, {"epochs": 4}, 1).load()
    assert PartialState(path, {"epochs": 3}, 0).load() is None     # off: nothing is read


def test_a_projection_cut_after_a_batch_resumes_to_the_same_codes(tmp_path):
    """The oracle projection saves its codes after every batch; cut after the first of three
    batches and resumed, it gives the uncut codes, images and distances bit for bit."""
    from lib.metrics.leaks import project

    torch.manual_seed(0)
    G = Generator(z_dim=8, width=4)
    distance = type("Squared", (torch.nn.Module,), {"forward": lambda self, x, y:
                                                    (x - y).pow(2).flatten(1).sum(1)})()
    targets = torch.rand(5, 1, 32, 32) * 2 - 1
    settings = dict(steps=3, restarts=2, seed=4, batch_size=4)          # 10 codes: 3 batches
    uncut = project(G, distance, targets, **settings)
    with pytest.raises(Cut):
        project(G, distance, targets, **settings,
                partial=CutAfter(tmp_path / "p.partial.safetensors", {"a": 1}, 1))
    assert PartialState(tmp_path / "p.partial.safetensors", {"a": 1}, 60).load()["next"] == 4
    resumed = project(G, distance, targets, **settings,
                      partial=PartialState(tmp_path / "p.partial.safetensors", {"a": 1}, 60))
    assert all(torch.equal(a, b) for a, b in zip(uncut, resumed))


def test_a_metric_build_cut_after_a_reference_code_resumes_to_the_same_eigenpairs(tmp_path):
    """The natural-gradient metric saves its eigenpairs after each reference code; cut after
    the first of three and resumed, it equals the uncut build bit for bit."""
    from lib.metrics.distances import PerceptualDistance
    from lib.ngd import build_reference_metric

    torch.manual_seed(0)
    distance = PerceptualDistance(ConvClassifier("mcnn", 3, width=4).eval())
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    uncut = build_reference_metric(distance, images, 2, seed=1)
    path = tmp_path / "m.partial.safetensors"
    with pytest.raises(Cut):
        build_reference_metric(distance, images, 2, seed=1, partial=CutAfter(path, {"m": 1}, 1))
    assert list(PartialState(path, {"m": 1}, 60).load()["done"]) == ["0"]
    resumed = build_reference_metric(distance, images, 2, seed=1,
                                     partial=PartialState(path, {"m": 1}, 60))
    assert torch.equal(uncut.eigvals, resumed.eigvals)
    assert torch.equal(uncut.eigvecs, resumed.eigvecs)
