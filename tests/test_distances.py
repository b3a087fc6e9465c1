"""LPIPS-style distance: embedding = direct formula; gradients; LPIPS-VGG from local files."""
from __future__ import annotations

import pytest
import torch

from lib.metrics.distances import (LPIPS_VGG_WEIGHTS_FILE, PerceptualDistance, _VGG_SLICES,
                                   lpips_vgg, pairwise_sq_distances)
from lib.models import ConvClassifier


def small_distance(weights=None) -> PerceptualDistance:
    torch.manual_seed(0)
    return PerceptualDistance(ConvClassifier("mcnn", 5, width=4), weights).double()


@pytest.mark.parametrize("weighted", [False, True])
def test_embedding_equals_direct_formula(weighted):
    g = torch.Generator().manual_seed(1)
    weights = [torch.rand(c, generator=g, dtype=torch.float64) for c in (4, 8, 16)] if weighted else None
    d = small_distance(weights)
    x = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    y = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    direct = d(x, y)
    via_embedding = (d.embed(x) - d.embed(y)).pow(2).sum(1)
    assert torch.allclose(direct, via_embedding, rtol=1e-10)
    assert torch.allclose(pairwise_sq_distances(d.embed(x), d.embed(y)).diagonal(), direct,
                          rtol=1e-9)


def test_pairwise_equals_brute_force():
    a, b = torch.randn(7, 11), torch.randn(5, 11)
    fast = pairwise_sq_distances(a, b, chunk=3)
    slow = torch.stack([torch.stack([(ai.double() - bj.double()).pow(2).sum() for bj in b]) for ai in a])
    assert torch.allclose(fast, slow, rtol=1e-10) and (fast >= 0).all()
    assert pairwise_sq_distances(a, a).diagonal().abs().max() < 1e-9


def test_gradients_reach_the_input_only_and_twice():
    d = small_distance()
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    (g,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
    assert g.abs().sum() > 0
    v = torch.randn_like(x)
    (hv,) = torch.autograd.grad((g * v).sum(), x)  # a Hessian-vector product
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in d.network.parameters())


def test_stays_in_eval_mode():
    d = small_distance().train()
    assert not d.network.training


def test_negative_or_mismatched_weights():
    with pytest.raises(ValueError, match="≥ 0"):
        small_distance([torch.tensor([-1.0]), 1.0, 1.0])
    d = small_distance([1.0, 1.0])
    with pytest.raises(ValueError, match="2 layer weights for 3"):
        d.embed(torch.randn(1, 1, 32, 32, dtype=torch.float64))


def test_missing_vgg_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=LPIPS_VGG_WEIGHTS_FILE):
        lpips_vgg(tmp_path)


def test_lpips_vgg_matches_the_lpips_package(tmp_path):
    """Same VGG weights (random: nothing is downloaded) → same distance as lpips itself."""
    import lpips
    import torchvision
    import warnings

    with warnings.catch_warnings():  # lpips uses torchvision's deprecated pretrained= argument
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    state = {f"features.{k}": v for k, v in torchvision.models.vgg16().features.state_dict().items()}
    for s, (start, _) in enumerate(_VGG_SLICES, 1):
        for name, value in getattr(ref.net, f"slice{s}").state_dict().items():
            idx, param = name.split(".")
            state[f"features.{idx}.{param}"] = value
            assert int(idx) >= start
    torch.save(state, tmp_path / LPIPS_VGG_WEIGHTS_FILE)
    ours = lpips_vgg(tmp_path, resize=None).eval()
    x, y = torch.rand(3, 1, 32, 32) * 2 - 1, torch.rand(3, 1, 32, 32) * 2 - 1
    expected = ref(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1), normalize=False).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-4, atol=1e-7)
    emb = (ours.embed(x) - ours.embed(y)).pow(2).sum(1)
    assert torch.allclose(emb, expected, rtol=1e-4, atol=1e-7)
