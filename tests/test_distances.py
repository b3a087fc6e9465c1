"""LPIPS-style distance: embedding = direct formula; gradients; LPIPS-VGG from local files."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.errors import InputError
from lib.metrics.distances import (LPIPS_VGG_WEIGHTS_FILE, NORM_EPS, PerceptualDistance,
                                   _VGG_SLICES, lpips_head_weights, lpips_vgg,
                                   pairwise_sq_distances)
from lib.models import ConvClassifier

CHANNELS = (4, 8, 16)  # ConvClassifier("mcnn", width=4): 4, 8, 16 channels at 16², 8², 4²


def small_distance(weights=None, **kwargs) -> PerceptualDistance:
    torch.manual_seed(0)
    return PerceptualDistance(ConvClassifier("mcnn", 5, width=4), weights, **kwargs).double()


def images(n: int, seed: int, size: int = 32, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g, dtype=torch.float64) * 2 - 1


def random_weights(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(c, generator=g, dtype=torch.float64) for c in CHANNELS]


def naive_distance(net: nn.Module, x: torch.Tensor, y: torch.Tensor, weights) -> torch.Tensor:
    """The formula written out independently: per layer, per position, per channel."""
    total = torch.zeros(len(x), dtype=x.dtype)
    for l, (fx, fy) in enumerate(zip(net.feature_maps(x), net.feature_maps(y))):
        n, c, h, w = fx.shape
        wl = torch.ones(c, dtype=x.dtype) if weights is None else torch.as_tensor(
            weights[l], dtype=x.dtype).expand(c)
        nx = torch.linalg.vector_norm(fx, dim=1, keepdim=True) + NORM_EPS
        ny = torch.linalg.vector_norm(fy, dim=1, keepdim=True) + NORM_EPS
        diff = (fx / nx - fy / ny).pow(2)                                  # (N, C, H, W)
        total += torch.einsum("nchw,c->n", diff, wl) / (h * w)
    return total


# ---------------------------------------------------------------------------- the formula
@pytest.mark.parametrize("kind", ["uniform", "per-channel", "per-layer"])
def test_embedding_equals_direct_formula(kind):
    weights = {"uniform": None, "per-channel": random_weights(),
               "per-layer": [0.5, 2.0, torch.tensor(3.0)]}[kind]
    d = small_distance(weights)
    x, y = images(5, 1), images(5, 2)
    direct = d(x, y)
    via_embedding = (d.embed(x) - d.embed(y)).pow(2).sum(1)
    assert direct.shape == (5,) and (direct > 0).all()
    assert torch.allclose(direct, via_embedding, rtol=1e-10)
    with torch.no_grad():
        assert torch.allclose(direct, naive_distance(d.network, x, y, weights), rtol=1e-10)
    assert torch.allclose(pairwise_sq_distances(d.embed(x), d.embed(y)).diagonal(), direct,
                          rtol=1e-9)


def test_embedding_dimension_and_layer_selection():
    d = small_distance()
    x, y = images(3, 3), images(3, 4)
    assert d.embed(x).shape == (3, 4 * 16 * 16 + 8 * 8 * 8 + 16 * 4 * 4)
    singles = [small_distance(layers=[i])(x, y) for i in range(3)]
    assert torch.allclose(d(x, y), sum(singles), rtol=1e-12)
    picked = small_distance([2.0, random_weights()[2]], layers=[0, 2])
    expected = 2.0 * singles[0] + small_distance([random_weights()[2]], layers=[2])(x, y)
    assert torch.allclose(picked(x, y), expected, rtol=1e-12)
    assert torch.allclose((picked.embed(x) - picked.embed(y)).pow(2).sum(1), expected,
                          rtol=1e-10)


def test_input_transform_is_applied_first():
    plain, doubled = small_distance(), small_distance(input_transform=lambda t: 2 * t)
    x, y = images(2, 5), images(2, 6)
    assert torch.allclose(doubled(x, y), plain(2 * x, 2 * y), rtol=1e-12)


def test_embed_batched_equals_embed():
    d = small_distance(random_weights())
    x = images(7, 7)
    full = d.embed(x)
    batched = d.embed_batched(x.float(), batch_size=3, dtype=torch.float64)  # cast to the net
    assert batched.dtype == torch.float64 and batched.shape == full.shape
    assert torch.allclose(batched, d.embed(x.float().double()), rtol=1e-12)
    assert d.embed_batched(x, batch_size=256).dtype == torch.float32


def test_pairwise_equals_brute_force():
    a, b = torch.randn(7, 11), torch.randn(5, 11)
    fast = pairwise_sq_distances(a, b, chunk=3)
    slow = torch.stack([torch.stack([(ai.double() - bj.double()).pow(2).sum() for bj in b])
                        for ai in a])
    assert fast.dtype == torch.float64 and fast.shape == (7, 5)
    assert torch.allclose(fast, slow, rtol=1e-10) and (fast >= 0).all()
    assert pairwise_sq_distances(a, a).diagonal().abs().max() < 1e-9
    assert pairwise_sq_distances(a[:0], b).shape == (0, 5)


def test_distance_to_itself_is_zero():
    d = small_distance(random_weights())
    x = images(4, 8)
    assert d(x, x).abs().max() == 0
    e = d.embed(x)
    assert pairwise_sq_distances(e, e).diagonal().max() < 1e-12


# ---------------------------------------------------------------------------- gradients
def test_gradients_reach_the_input_only_and_twice():
    d = small_distance(random_weights())
    x = images(2, 9).requires_grad_()
    y = images(2, 10)
    d(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in d.network.parameters())

    x.grad = None
    (g,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
    v = torch.randn_like(x)
    (hv,) = torch.autograd.grad((g * v).sum(), x)  # a Hessian-vector product
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    # the embedding path gives the same gradient
    (g_emb,) = torch.autograd.grad((d.embed(x) - d.embed(y)).pow(2).sum(), x)
    assert torch.allclose(g_emb, g.detach(), rtol=1e-8, atol=1e-14)
    assert all(p.grad is None for p in d.network.parameters())


def test_zero_feature_vectors_give_finite_gradients():
    """LPIPS's sqrt(Σ f²) has a 0/0 derivative at f = 0; ours stays finite (and equal in value)."""
    class Identity(nn.Module):
        def feature_maps(self, x):
            return [x.repeat(1, 3, 1, 1)]

    d = PerceptualDistance(Identity())
    x = images(2, 11, size=4)
    x[:, :, 0, 0] = 0.0
    x.requires_grad_()
    y = images(2, 12, size=4)
    (g,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch.ones_like(g)).sum(), x)
    assert torch.isfinite(g).all() and torch.isfinite(hv).all()
    with torch.no_grad():
        assert torch.allclose(d(x, y), naive_distance(Identity(), x, y, None), rtol=1e-12)


def test_network_is_frozen_and_stays_in_eval_mode():
    d = small_distance().train()
    assert not d.network.training
    assert not any(p.requires_grad for p in d.network.parameters())


# ---------------------------------------------------------------------------- errors
def test_negative_or_mismatched_weights():
    with pytest.raises(ValueError, match="layer 0 has negative weights"):
        small_distance([torch.tensor([-1.0, 1.0, 1.0, 1.0]), 1.0, 1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        small_distance([float("nan"), 1.0, 1.0])
    with pytest.raises(ValueError, match="pass None for uniform"):
        small_distance([])
    x = images(1, 13)
    with pytest.raises(ValueError, match="2 layer weights for 3 feature maps"):
        small_distance([1.0, 1.0]).embed(x)
    with pytest.raises(ValueError, match="layer 1 has 5 weights but its feature map has 8"):
        small_distance([1.0, torch.ones(5), 1.0]).embed(x)
    with pytest.raises(ValueError, match=r"layer indices \[3\] out of range"):
        small_distance(layers=[0, 3])(x, x)
    with pytest.raises(ValueError, match="differ in shape"):
        small_distance()(x, images(2, 14))
    with pytest.raises(ValueError, match="same number of columns"):
        pairwise_sq_distances(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no feature_maps"):
        PerceptualDistance(nn.Linear(2, 2))


def test_missing_vgg_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        lpips_vgg(tmp_path)
    message = str(err.value)
    assert LPIPS_VGG_WEIGHTS_FILE in message
    assert str(tmp_path / LPIPS_VGG_WEIGHTS_FILE) in message
    assert "vgg16(weights='IMAGENET1K_V1')" in message


def test_unusable_vgg_file_is_a_clear_error(tmp_path):
    (tmp_path / LPIPS_VGG_WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch state dict"):
        lpips_vgg(tmp_path)
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / LPIPS_VGG_WEIGHTS_FILE)
    with pytest.raises(ValueError, match="does not hold torchvision's VGG16"):
        lpips_vgg(tmp_path)


# ---------------------------------------------------------------------------- LPIPS-VGG
@pytest.fixture(scope="module")
def lpips_reference(tmp_path_factory):
    """lpips.LPIPS with a random VGG (nothing downloaded) and its VGG as our weights file."""
    import lpips
    import torch.hub
    import torchvision.models._api as tv_api

    def no_download(*args, **kwargs):
        raise ConnectionRefusedError("download attempted")

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lpips passes torchvision's deprecated pretrained=
        mp.setattr(torch.hub, "load_state_dict_from_url", no_download)
        mp.setattr(torch.hub, "download_url_to_file", no_download)
        mp.setattr(tv_api, "load_state_dict_from_url", no_download)
        try:
            torch.manual_seed(0)
            ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
        except ConnectionRefusedError:
            pytest.skip("lpips.LPIPS(net='vgg', pnet_rand=True) tried to download weights")
    state = {}
    for s, (start, stop) in enumerate(_VGG_SLICES, 1):
        for name, value in getattr(ref.net, f"slice{s}").state_dict().items():
            idx, param = name.split(".")
            assert start <= int(idx) < stop
            state[f"features.{idx}.{param}"] = value.clone()
    folder = tmp_path_factory.mktemp("vgg")
    torch.save(state, folder / LPIPS_VGG_WEIGHTS_FILE)
    return ref, folder


def test_lpips_head_weights_are_the_packages():
    heads = lpips_head_weights()
    assert [len(h) for h in heads] == [64, 128, 256, 512, 512]
    assert all((h >= 0).all() for h in heads)


def test_lpips_vgg_matches_the_lpips_package(lpips_reference):
    """Same VGG weights (random: nothing is downloaded) → same distance as lpips itself."""
    ref, folder = lpips_reference
    ours = lpips_vgg(folder, resize=None)
    x, y = images(3, 15).float(), images(3, 16).float()
    with torch.no_grad():
        expected = ref(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1), normalize=False).flatten()
        assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=0)
        emb = pairwise_sq_distances(ours.embed(x), ours.embed(y)).diagonal().float()
        assert torch.allclose(emb, expected, rtol=1e-4, atol=0)  # float32 embeddings
        # 3-channel input goes through unchanged; float64 agrees to rounding
        xc, yc = images(2, 17, channels=3), images(2, 18, channels=3)
        expected64 = copy.deepcopy(ref).double()(xc, yc, normalize=False).flatten()
        assert torch.allclose(ours.double()(xc, yc), expected64, rtol=1e-10, atol=0)


def test_lpips_vgg_resizes_bilinearly(lpips_reference):
    ref, folder = lpips_reference
    ours = lpips_vgg(folder, resize=48)
    x, y = images(2, 19).float(), images(2, 20).float()

    def up(t):
        return F.interpolate(t.repeat(1, 3, 1, 1), size=(48, 48), mode="bilinear",
                             align_corners=False)

    with torch.no_grad():
        expected = ref(up(x), up(y), normalize=False).flatten()
        assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\)"):
        ours(images(1, 21, channels=2).float(), images(1, 22, channels=2).float())


def test_natural_gradient_metric_on_lpips_vgg(lpips_reference):
    """The paper profile's d_P (LPIPS-VGG) goes through the same Lanczos metric path as the
    CPU protocol's d_P: the top eigenpairs satisfy H v = λ v for LPIPS-VGG's Hessian."""
    from lib import ngd

    _, folder = lpips_reference
    distance = lpips_vgg(folder, resize=None).double()
    image = images(1, 21).double()                     # (1, 1, 16, 16), grey → RGB inside
    vals, vecs = ngd.metric_at(distance, image, k=2)
    hvp = ngd.hessian_vector_product(distance, image[0])
    assert (vals[0] > 0).all()
    for j in range(2):
        v = vecs[0][:, j]
        residual = (hvp(v) - vals[0][j] * v).norm() / vals[0][j]
        assert residual < 1e-4 and abs(v.norm().item() - 1) < 1e-8


def test_against_fixed_targets_equals_the_pair_formula_bit_for_bit():
    """``d.against(y)(x)`` is ``d(x, y)``: values and the gradient in x, bit for bit (float32,
    per-channel weights), with y embedded once; a batch of another shape is refused."""
    torch.manual_seed(0)
    weights = [w.float() for w in random_weights()]
    d = PerceptualDistance(ConvClassifier("mcnn", 5, width=4), weights)
    x, y = images(6, 1).float(), images(6, 2).float()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    direct, fixed = d(x1, y), d.against(y)(x2)
    assert torch.equal(direct, fixed)
    direct.sum().backward(), fixed.sum().backward()
    assert torch.equal(x1.grad, x2.grad)
    with pytest.raises(InputError, match="differ in shape"):
        d.against(y)(x[:3])


def test_the_projection_embeds_its_targets_once_with_the_same_codes():
    """The oracle projection evaluates d(G(z), targets) at every step; with
    ``PerceptualDistance.against`` the targets' feature maps are computed once per batch, and
    the codes, images and distances equal those of a distance without it bit for bit."""
    from lib.metrics.leaks import project
    from lib.models import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=8, width=4)
    d = PerceptualDistance(ConvClassifier("mcnn", 5, width=4))
    plain = type("Plain", (nn.Module,), {"forward": lambda self, a, b: d(a, b)})()
    targets = torch.rand(5, 1, 32, 32) * 2 - 1
    settings = dict(steps=4, restarts=2, seed=3, batch_size=4)          # 10 codes: 3 batches
    calls = []
    original = d.feature_maps
    d.feature_maps = lambda t: calls.append(len(t)) or original(t)
    fast = project(G, d, targets, **settings)
    n_fast = len(calls)
    calls.clear()
    slow = project(G, plain, targets, **settings)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))
    # per batch: the steps, the best distances and (once, or at every call) the targets
    assert (n_fast, len(calls)) == (3 * (4 + 2), 3 * 2 * (4 + 1))
