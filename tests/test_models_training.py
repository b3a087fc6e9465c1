"""Classifier architectures, losses, training determinism, and the role stages."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import claims, config, seeding, training
from lib.data import dataset
from lib.errors import ArtifactError
from lib.inference import embed, embed_and_logits, predict_logits
from lib.metrics.fidelity import confusion_matrix, topk_accuracy
from lib.run import context
from lib.stages import classifiers
from lib.models import ARCHITECTURES, ConvClassifier


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_classifier_shapes(arch):
    model = ConvClassifier(arch, 7, width=4).eval()
    x = torch.randn(3, 1, 32, 32)
    maps = model.feature_maps(x)
    assert len(maps) == len(ARCHITECTURES[arch])
    assert maps[-1].shape == (3, 16, 4, 4)
    assert model.embed(x).shape == (3, model.embed_dim)
    assert model(x).shape == (3, 7)


def test_embed_and_logits_is_one_pass_with_the_numbers_of_two():
    model = ConvClassifier(next(iter(ARCHITECTURES)), n_classes=7, width=8).eval()
    images = torch.randn(37, 1, 32, 32)
    calls = []
    model.stages[0].register_forward_hook(lambda *_: calls.append(1))
    features, logits = embed_and_logits(model, images, batch_size=16)
    assert len(calls) == 3                                   # one pass: ceil(37 / 16) batches
    assert torch.equal(features, embed(model, images, batch_size=16))
    assert torch.equal(logits, predict_logits(model, images, batch_size=16))
    assert logits.shape == (37, 7) and features.is_contiguous() and logits.is_contiguous()


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        ConvClassifier("vgg", 3)


def test_focal_loss_gamma_zero_is_cross_entropy():
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(training.focal_loss(logits, y, 0.0), F.cross_entropy(logits, y))


def test_focal_loss_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    y = torch.tensor([0, 0])
    expected = (-(0.5 ** 2) * np.log(0.5) - (0.1 ** 2) * np.log(0.9)) / 2
    assert training.focal_loss(logits, y, 2.0).item() == pytest.approx(expected, rel=1e-6)


def toy_data(n=64):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 32, 32, generator=g) * 0.1
    x[y == 1, :, :16] += 1.0  # class 1: bright top half
    return x, y


def test_training_is_deterministic_and_learns():
    x, y = toy_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = ConvClassifier("mcnn", 2, width=4)
        hist = training.train_classifier(model, x, y, epochs=4, lr=1e-2, batch_size=16,
                                         seed=1, loss="focal", progress=False)
        runs.append((model, hist))
    (a, _), (b, _) = runs
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert runs[0][1]["loss"][-1] < runs[0][1]["loss"][0]
    logits = predict_logits(runs[0][0], x)
    assert topk_accuracy(logits, y) > 0.9


def test_training_rejects_bad_input():
    x, y = toy_data(8)
    with pytest.raises(ValueError, match="unknown loss"):
        training.train_classifier(ConvClassifier("mcnn", 2, 4), x, y, epochs=1, lr=1e-3,
                                  batch_size=4, seed=0, loss="hinge")
    with pytest.raises(ValueError, match="as many labels"):
        training.train_classifier(ConvClassifier("mcnn", 2, 4), x, y[:3], epochs=1, lr=1e-3,
                                  batch_size=4, seed=0)


def test_accuracy_and_confusion_by_hand():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    y = torch.tensor([0, 2, 0])
    assert topk_accuracy(logits, y, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, y, 2) == pytest.approx(2 / 3)
    cm = confusion_matrix(logits.argmax(1), y, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError):
        topk_accuracy(logits[:0], y[:0])


def test_derived_seeds_are_stable_and_distinct():
    assert seeding.derive_seed(0, "target") == seeding.derive_seed(0, "target")
    assert seeding.derive_seed(0, "target") != seeding.derive_seed(0, "evaluator")
    assert seeding.derive_seed(0, "target") != seeding.derive_seed(1, "target")


def test_roles_see_only_their_data(fmnist):
    cfg = config.resolve("smoke")
    _, split = dataset.load(cfg, fmnist)
    _, y_t, idx_t = classifiers.role_training_set("target", cfg, fmnist, split, 0)
    assert np.array_equal(idx_t, split.private) and set(y_t.tolist()) == set(range(5))
    _, _, idx_p = classifiers.role_training_set("perceptual", cfg, fmnist, split, 0)
    assert len(idx_p) == cfg["perc_train_limit"] and np.isin(idx_p, split.public).all()
    _, _, idx_e = classifiers.role_training_set("evaluator", cfg, fmnist, split, 0)
    assert not np.isin(idx_e, np.r_[split.private, split.reference]).any()
    with pytest.raises(ValueError, match="unknown role"):
        classifiers.role_training_set("judge", cfg, fmnist, split, 0)


def test_require_classifier_trains_then_reuses(tmp_runs, fmnist):
    ctx = context.setup("smoke", str(tmp_runs / "r"), 0, "auto", {"target_epochs": 1},
                         notebook="test", show_config=False)
    model, idx, info = classifiers.require_classifier(ctx, "target")
    assert not info["reused"] and len(idx) == 100
    again, idx2, info2 = classifiers.require_classifier(ctx, "target")
    assert info2["reused"] and np.array_equal(idx, idx2)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x), again(x))
    other = context.setup("smoke", str(tmp_runs / "r"), 0, "auto", {"target_epochs": 2},
                           notebook="test", show_config=False)
    with pytest.raises(ArtifactError, match="another config"):
        classifiers.require_classifier(other, "target")


def test_soundness_claim():
    cpu = claims.soundness_claim(0.86, 0.89, "cpu", 5, 10)
    assert not cpu["passed"] and cpu["criterion"] == "T ≥ 0.85 and E ≥ 0.90"
    assert claims.soundness_claim(0.85, 0.90, "cpu", 5, 10)["passed"]
    smoke = claims.soundness_claim(0.21, 0.11, "smoke", 5, 10)
    assert smoke["passed"] and "chance" in smoke["criterion"] and "T > 0.20" in smoke["criterion"]
    assert not claims.soundness_claim(0.2, 0.5, "smoke", 5, 10)["passed"]   # not above chance


@pytest.mark.parametrize("arch", ["vgg16_bn", "resnet18"])
def test_torchvision_classifiers_share_the_interface(arch):
    from lib.models import TorchvisionClassifier, build_classifier

    torch.manual_seed(0)
    model = build_classifier({"arch": arch, "n_classes": 7, "width": 64, "in_channels": 3,
                              "kernel_size": 3}).eval()
    assert isinstance(model, TorchvisionClassifier)
    x = torch.randn(2, 3, 32, 32)
    maps = model.feature_maps(x)
    assert len(maps) == (5 if arch == "vgg16_bn" else 4)
    assert model.embed(x).shape == (2, model.embed_dim) and model(x).shape == (2, 7)
    grey = TorchvisionClassifier(arch, 3, in_channels=1)
    assert grey(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="valid: vgg16_bn"):
        TorchvisionClassifier("alexnet", 3)


def test_vgg16_bn_with_the_papers_head():
    from lib.models import TorchvisionClassifier, build_classifier

    torch.manual_seed(0)
    net = TorchvisionClassifier("vgg16_bn", 7, head="flatten-bn", image_size=64).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert net(x).shape == (3, 7) and net.embed(x).shape == (3, 512 * 2 * 2)
    assert len(net.feature_maps(x)) == 5
    again = build_classifier(net.arch_spec)
    again.load_state_dict(net.state_dict())
    assert torch.equal(again.eval()(x), net(x))
    with pytest.raises(ValueError, match="flatten-bn needs vgg16_bn"):
        TorchvisionClassifier("resnet18", 7, head="flatten-bn", image_size=64)
    with pytest.raises(ValueError, match="valid heads"):
        TorchvisionClassifier("vgg16_bn", 7, head="mlp")


def test_a_seeded_stream_is_torch_manual_seeds_cpu_stream_and_leaves_the_callers_alone():
    """``lib.seeding.global_seed`` seeds only the CPU generator while CUDA is not initialised
    (torch.manual_seed would queue a traced seeding of every device type): the same draws."""
    from lib.seeding import global_seed
    torch.manual_seed(123)
    expected = torch.rand(5)
    before = torch.get_rng_state()
    with global_seed(123):
        assert torch.equal(torch.rand(5), expected)
    assert torch.equal(torch.get_rng_state(), before)
