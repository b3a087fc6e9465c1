"""The GAN prior (losses, R1, EMA, training) and the transfer framework (lib.transfer)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib import ngd, transfer
from lib.models import ConvClassifier, Discriminator, Generator
from lib.artifacts import load_module_tensors, module_tensors
from lib.augment import discriminator_view
from lib.config import resolve
from lib.errors import InputError
from lib.training import (discriminator_loss, ema_beta, ema_residual, ema_schedule,
                          generator_loss, r1_penalty, standing_statistics, train_gan, update_ema)


def _tiny_gan(seed: int = 0):
    torch.manual_seed(seed)
    return Generator(z_dim=8, width=4), Discriminator(width=4)


def _tiny_target(seed: int = 1):
    torch.manual_seed(seed)
    return ConvClassifier("mcnn", 5, width=4).eval()


def _public(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _settings(**changes) -> transfer.TransferSettings:
    base = transfer.TransferSettings(steps=3, batch_size=8, lr=1e-3, entropy_weight=1.0,
                                     ngd_rank=4, ngd_codes=2, monitor_samples=16,
                                     monitor_every=2, r1_every=2)
    return base.replace(**changes)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


# ------------------------------------------------------------------------------ GAN parts
def test_generator_and_discriminator_shapes():
    G, D = _tiny_gan()
    z = G.sample_latents(5, torch.Generator().manual_seed(0))
    x = G.eval()(z)
    assert x.shape == (5, 1, 32, 32) and x.abs().max() <= 1
    assert D(x).shape == (5,)
    assert G.sample_latents(3, truncation=0.0).abs().max() == 0


def test_gan_losses_against_hand_computation():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 0.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    d = (sp(-0.0) + sp(-2.0)) / 2 + (sp(-1.0) + sp(0.0)) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert generator_loss(fake).item() == pytest.approx((sp(1.0) + sp(0.0)) / 2, rel=1e-6)


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    D = lambda x: lin(x).squeeze(1)  # noqa: E731

    class Wrap(nn.Module):
        def forward(self, x):
            return D(x)

    penalty = r1_penalty(Wrap(), torch.randn(4, 3, 2, 2))
    assert penalty.item() == pytest.approx(lin[1].weight.pow(2).sum().item(), rel=1e-6)
    assert penalty.requires_grad  # differentiable in D's weights


def test_ema_update_and_half_life():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = 0.9 * a.weight.detach() + 0.1 * b.weight.detach()
    update_ema(a, b, 0.9)
    assert torch.allclose(a.weight, expected)
    beta = ema_beta(64, 10.0)
    assert beta ** (10_000 / 64) == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_the_transfer_ema_keeps_at_most_one_percent_of_the_prior(profile):
    """A parameter that is 1 in the prior and 0 in G from the first step on: after the
    transfer's updates its EMA keeps ≤ 1% of the prior; without the ramp-up the
    same run keeps more (the cpu run: 0.5^(19.2/10) ≈ 26%), so the test can fail."""
    settings = transfer.TransferSettings.from_config(resolve(profile), "vanilla")
    residuals = {}
    for rampup in (settings.ema_rampup, None):
        prior, tuned = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        nn.init.ones_(prior.weight)
        nn.init.zeros_(tuned.weight)
        for beta in ema_schedule(settings.steps, settings.batch_size, settings.ema_kimg, rampup):
            update_ema(prior, tuned, beta)
        residuals[rampup] = prior.weight.item()
        assert residuals[rampup] == pytest.approx(
            ema_residual(settings.steps, settings.batch_size, settings.ema_kimg, rampup), rel=1e-5, abs=1e-9)
    assert settings.ema_rampup is not None and residuals[settings.ema_rampup] <= 0.01
    assert residuals[None] > 0.01
    if profile == "cpu":
        assert residuals[None] == pytest.approx(0.5 ** (19.2 / 10), rel=1e-6)


def test_train_gan_with_the_ramp_up_tracks_g():
    """train_gan runs the ramped schedule: the first step's β is 0 and the next ones tiny, so
    after a few steps the EMA equals G to within ~1e-6 of its moves; a fixed 10-kimg half-life
    leaves the EMA near the starting weights instead."""
    assert ema_beta(8, 10.0, 0, 0.05) == 0.0
    out = {}
    for rampup in (0.05, None):
        G, D = _tiny_gan()
        G_ema, _ = train_gan(G, D, _public(), steps=3, batch_size=8, lr=1e-2, seed=5,
                             ema_rampup=rampup, progress=False)
        out[rampup] = max((a - b).abs().max().item()
                          for a, b in zip(G_ema.parameters(), G.parameters()))
    assert out[0.05] < 1e-4 < out[None]


def test_the_ema_ramp_up_is_checked():
    cfg = {**resolve("smoke"), "transfer_ema_rampup": -0.1}
    with pytest.raises(InputError, match="transfer_ema_rampup"):
        transfer.TransferSettings.from_config(cfg, "vanilla").check()


def test_ema_leaves_the_batch_norm_statistics_alone():
    G, _ = _tiny_gan()
    other, _ = _tiny_gan(seed=4)
    other.train()(torch.randn(32, 8))              # other's running statistics move
    before = [b.clone() for b in G.buffers()]
    update_ema(G, other, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, G.buffers()))


def _with_own_statistics(G: Generator, n: int = 4096) -> Generator:
    """G with batch-norm statistics from a large batch of its own activations (the truth)."""
    import copy

    G = copy.deepcopy(G)
    for m in G.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        G.train()(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(123)))
    return G.eval()


def test_standing_statistics_give_the_averaged_weights_their_own_statistics():
    """The EMA generator averages the weights of a generator that moved; copying the moving
    generator's statistics (the old update) gives the wrong output, standing statistics the
    right one: the output under the exact statistics of the averaged weights' activations."""
    import copy

    old, _ = _tiny_gan(seed=0)
    new, _ = _tiny_gan(seed=1)                      # the generator after it moved
    new = _with_own_statistics(new)
    ema = _with_own_statistics(old)
    for p_ema, p_new in zip(ema.parameters(), new.parameters()):
        p_ema.data.lerp_(p_new.data, 0.5)           # the averaged weights
    copied = copy.deepcopy(ema)
    for b_ema, b_new in zip(copied.buffers(), new.buffers()):
        b_ema.copy_(b_new)                          # the old update_ema
    truth = _with_own_statistics(ema)
    standing = standing_statistics(copy.deepcopy(ema), seed=0)
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = truth(z)
        err_copied = (copied.eval()(z) - want).abs().mean().item()
        err_standing = (standing(z) - want).abs().mean().item()
    assert not standing.training
    assert err_standing < 0.01 and err_copied > 10 * err_standing


def test_standing_statistics_are_deterministic_and_leave_other_networks_alone():
    G, D = _tiny_gan()
    a = standing_statistics(G, seed=3)
    b = standing_statistics(_tiny_gan()[0], seed=3)
    assert _same_weights(a, b) and all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
    assert standing_statistics(D, seed=3) is D        # no batch norm: unchanged


def test_discriminator_view_is_differentiable():
    x = torch.randn(4, 1, 32, 32, requires_grad=True)
    torch.manual_seed(0)
    discriminator_view()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_train_gan_is_deterministic_and_logs():
    outs = []
    for _ in range(2):
        G, D = _tiny_gan()
        G_ema, hist = train_gan(G, D, _public(), steps=4, batch_size=8, lr=1e-3, seed=5,
                                r1_every=2, augment=True, log_every=1, progress=False)
        outs.append((G, G_ema, D, hist))
    assert _same_weights(outs[0][0], outs[1][0]) and _same_weights(outs[0][1], outs[1][1])
    assert _same_weights(outs[0][2], outs[1][2])
    assert outs[0][3]["step"] == [0, 1, 2, 3]
    assert all(math.isfinite(v) for v in outs[0][3]["d_loss"])
    G0, _ = _tiny_gan()
    assert not _same_weights(outs[0][0], G0)  # it trained


def test_pack_unpack_round_trip():
    G, D = _tiny_gan()
    G2, D2 = _tiny_gan(seed=9)
    load_module_tensors(module_tensors({"G": G, "D": D}), {"G": G2, "D": D2})
    assert _same_weights(G, G2) and _same_weights(D, D2)


# ------------------------------------------------------------------------------ objectives
def test_entropy_loss_against_hand_computation():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])   # p = (.5,.5), (.75,.25)
    h1 = math.log(2)
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert transfer.entropy_loss(logits).item() == pytest.approx(h1 + h2, rel=1e-6)
    assert transfer.entropy_loss(logits, "mean").item() == pytest.approx((h1 + h2) / 2,
                                                                          rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        transfer.entropy_loss(logits, "max")


def test_spread_loss_penalises_a_collapsed_batch():
    confident_same = torch.tensor([[20.0, 0, 0], [20.0, 0, 0], [20.0, 0, 0]])
    confident_spread = torch.tensor([[20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]])
    assert transfer.spread_loss(confident_same).item() == pytest.approx(0.0, abs=1e-6)
    assert transfer.spread_loss(confident_spread).item() == pytest.approx(-3 * math.log(3),
                                                                          rel=1e-5)
    # the plain entropy term cannot tell them apart
    assert transfer.entropy_loss(confident_same).item() == pytest.approx(
        transfer.entropy_loss(confident_spread).item(), abs=1e-6)
    with pytest.raises(ValueError, match="objective"):
        transfer.target_objective(confident_same, "nope")


def test_surrogate_loss_gives_the_vector_jacobian_product():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 6))
    z = torch.randn(4, 3)
    direction = torch.randn(4, 6)
    params = tuple(G.parameters())
    grads = torch.autograd.grad(transfer.surrogate_loss(G(z), direction), params)

    def images_of(*ps):
        return torch.func.functional_call(G, dict(zip([n for n, _ in G.named_parameters()],
                                                      ps)), (z,))

    _, vjp = torch.autograd.functional.vjp(images_of, params, direction)
    for g, v in zip(grads, vjp):
        assert torch.allclose(g, v, atol=1e-6)


def test_monitor_flags_a_collapsed_generator():
    class AlwaysZero(nn.Module):
        def forward(self, x):
            return torch.stack([torch.full((len(x),), 5.0)] + [torch.zeros(len(x))] * 4, 1)

    G, _ = _tiny_gan()
    assert G.training
    latents = torch.randn(10, 8)
    out = transfer.monitor_generator(G, AlwaysZero(), latents, 5, collapse_max_share=0.5)
    assert out["class_shares"][0] == 1.0 and out["collapsed"] and out["max_share"] == 1.0
    assert G.training                      # its mode is restored after the eval-mode pass


# ------------------------------------------------------------------------------ fine-tuning
def _fine_tune(mode, settings=None, **kw):
    G, D = _tiny_gan()
    return transfer.fine_tune(mode, G, D, _tiny_target(), _public(), settings or _settings(),
                              seed=11, **kw)


def _identity_metric(n_codes: int = 2) -> ngd.ReferenceMetric:
    eye = torch.eye(1024)
    return ngd.ReferenceMetric(eigvals=torch.ones(n_codes, 1024),
                               eigvecs=eye.expand(n_codes, 1024, 1024).clone())


def test_vanilla_is_reproducible_and_leaves_inputs_alone():
    G, D = _tiny_gan()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    a = transfer.fine_tune("vanilla", G, D, _tiny_target(), _public(), _settings(), seed=11)
    b = _fine_tune("vanilla")
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert _same_weights(a.generator, b.generator) and _same_weights(a.generator_ema,
                                                                      b.generator_ema)
    assert _same_weights(a.discriminator, b.discriminator)
    assert [m["step"] for m in a.monitor] == [0, 2, 3]


def test_modes_differ_only_where_they_should():
    vanilla = _fine_tune("vanilla")
    zero_weight = _fine_tune("entropy", _settings(entropy_weight=0.0))
    assert _same_weights(vanilla.generator, zero_weight.generator)
    assert _same_weights(vanilla.discriminator, zero_weight.discriminator)
    entropy = _fine_tune("entropy")
    assert not _same_weights(vanilla.generator, entropy.generator)
    # the natural gradient with an identity metric is the plain gradient
    identity = _fine_tune("entropy+ngd", metric=_identity_metric())
    for x, y in zip(entropy.generator.state_dict().values(),
                    identity.generator.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6)
    assert "target_entropy" in entropy.history and "direction_norm" in identity.history


def test_natural_gradient_changes_the_update():
    entropy = _fine_tune("entropy")
    target = _tiny_target()
    from lib.metrics.distances import PerceptualDistance

    ngd_run = _fine_tune("entropy+ngd", distance=PerceptualDistance(target))
    assert not _same_weights(entropy.generator, ngd_run.generator)
    assert all(math.isfinite(v) for v in ngd_run.history["direction_norm"])


def test_fine_tune_refuses_bad_settings():
    with pytest.raises(ValueError, match="unknown transfer mode"):
        _fine_tune("ngd")
    with pytest.raises(ValueError, match="metric"):
        _fine_tune("entropy+ngd")
    with pytest.raises(ValueError, match="damping"):
        _fine_tune("entropy+ngd", _settings(ngd_mode="per-sample"))
    with pytest.raises(ValueError, match="entropy_weight"):
        _fine_tune("entropy", _settings(entropy_weight=-1.0))


def test_per_sample_mode_runs_with_damping():
    from lib.metrics.distances import PerceptualDistance

    out = _fine_tune("entropy+ngd", _settings(ngd_mode="per-sample", ngd_damping=1e-3,
                                               ngd_refresh_every=2, steps=2),
                     distance=PerceptualDistance(_tiny_target()))
    assert all(math.isfinite(v) for v in out.history["direction_norm"])


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_settings_from_every_profile(profile):
    from lib.config import resolve

    settings = transfer.TransferSettings.from_config(resolve(profile))
    settings.check()
    assert settings.steps > 0 and settings.ngd_mode == "faithful"


def test_random_generator_control_picks_the_most_confident_per_class():
    from lib.metrics.controls import random_generator

    class ByMean(nn.Module):   # class 1 when the image is bright, class 0 when dark
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-10 * m, 10 * m], 1)

    G, _ = _tiny_gan()
    images, labels = random_generator(G, ByMean(), [3, 7], per_class=4, seed=0, candidates=5)
    assert images.shape == (8, 1, 32, 32) and labels.tolist() == [3] * 4 + [7] * 4
    means = images.mean(dim=(1, 2, 3))
    assert means[:4].max() <= means[4:].min()   # the darkest for class 3, the brightest for 7


def test_the_damped_mode_reads_its_own_keys_and_keeps_the_complement():
    from lib.config import resolve

    cfg = resolve("cpu", {"ngd_damped_entropy_weight": 0.3, "ngd_damped_gamma": 0.05})
    damped = transfer.TransferSettings.from_config(cfg, "entropy+ngd-damped")
    assert damped.ngd_form == "damped" and damped.entropy_weight == 0.3
    assert damped.ngd_damped_gamma == 0.05
    assert transfer.TransferSettings.from_config(cfg, "entropy+ngd").ngd_form == "paper"
    metric = ngd.ReferenceMetric(torch.tensor([[2.0, 1.0]]), torch.eye(1024)[:, :2][None])
    grad = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    inside = metric.precondition(grad)                                  # top-2 space only
    full = damped.precondition(metric, grad)                             # + complement / γ
    assert torch.allclose(full.flatten(1)[:, 2:], grad.flatten(1)[:, 2:] / 0.05)
    assert (inside.flatten(1)[:, 2:] == 0).all()
    out = _fine_tune("entropy+ngd-damped", metric=_identity_metric(), settings=_settings())
    assert all(math.isfinite(v) for v in out.history["direction_norm"])


def test_entropy_weight_is_in_the_authors_units():
    """The authors sum over a per-GPU batch of 16 (DDP averages over ranks): λ_authors = 1 is
    0.25 in a sum over 64, 1 in a sum over 16, 16 on a batch mean."""
    assert transfer.effective_entropy_weight(1.0, 64) == 0.25
    assert transfer.effective_entropy_weight(1.0, 16) == 1.0
    assert transfer.effective_entropy_weight(0.5, 64, "mean") == 8.0
    assert _settings(entropy_weight=1.0, batch_size=64).effective_entropy_weight == 0.25
    with pytest.raises(ValueError, match="reduction"):
        transfer.effective_entropy_weight(1.0, 64, "max")


def test_choose_weight_follows_the_stated_rule():
    rows = [{"weight": 0.01, "final_entropy": 0.8, "collapsed_any": False},
            {"weight": 0.1, "final_entropy": 0.5, "collapsed_any": False},
            {"weight": 1.0, "final_entropy": 0.1, "collapsed_any": True}]
    chosen = transfer.choose_weight(rows)
    assert chosen["weight"] == 0.1 and not chosen["all_collapsed"]   # lowest safe entropy
    tie = rows[:1] + [{"weight": 0.003, "final_entropy": 0.8, "collapsed_any": False}]
    assert transfer.choose_weight(tie)["weight"] == 0.003             # ties: the smaller weight
    collapsed = [dict(r, collapsed_any=True) for r in rows]
    worst = transfer.choose_weight(collapsed)
    assert worst["weight"] == 0.01 and worst["all_collapsed"]
    with pytest.raises(ValueError):
        transfer.choose_weight([])


def test_generator_and_discriminator_at_the_face_sizes():
    for size in (56, 64, 112, 128):
        G, D = Generator(z_dim=8, width=4, channels=3, size=size), Discriminator(4, 3, size)
        x = G(torch.randn(2, 8))
        assert x.shape == (2, 3, size, size) and D(x).shape == (2,)
        assert G.arch_spec["size"] == size and Generator(**G.arch_spec).arch_spec == G.arch_spec
    with pytest.raises(ValueError, match="one of \\[32, 56, 64, 112, 128\\]"):
        Generator(size=48)


def test_32px_checkpoint_layout_is_unchanged():
    """Checkpoints written before the size option load as they are (same keys and shapes)."""
    G, D = Generator(z_dim=8, width=4), Discriminator(width=4)
    assert "size" not in G.arch_spec and "size" not in D.arch_spec
    g_keys = {k: tuple(v.shape) for k, v in G.state_dict().items() if not k.endswith("tracked")}
    assert g_keys["stem.0.weight"] == (16 * 16, 8) and g_keys["blocks.0.weight"] == (16, 8, 4, 4)
    assert g_keys["blocks.3.weight"] == (8, 4, 4, 4) and g_keys["blocks.6.weight"] == (4, 1, 4, 4)
    d_keys = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    assert d_keys == {"net.0.weight": (4, 1, 4, 4), "net.0.bias": (4,), "net.2.weight": (8, 4, 4, 4),
                      "net.2.bias": (8,), "net.4.weight": (16, 8, 4, 4), "net.4.bias": (16,),
                      "net.7.weight": (1, 256), "net.7.bias": (1,)}


def test_sweep_attack_table_and_figure():
    """C2's metrics across a (constructed) sweep: a row per mode × λ × metric with `vanilla`
    beside; a sweep without them gives an empty table."""
    from lib.plotting import sweep_attack_figure
    from lib.stages.transfer import sweep_attack_table

    def row(weight, value, collapsed=False):
        return {"weight": weight, "collapsed_any": collapsed,
                "attack": {"ddcs_best_d_P": value, "coverage": value / 2, "fid_e": 10 - value}}

    sweep = {"modes": {"entropy": {"rows": [row(0.01, 1.0), row(0.1, 2.0, True)],
                                   "chosen": {"weight": 0.01}}},
             "vanilla": {"attack": {"ddcs_best_d_P": 1.5, "coverage": 0.7, "fid_e": 8.0}}}
    table = sweep_attack_table(sweep)
    assert len(table) == 6 and set(table.metric) == {"ddcs_best_d_P", "coverage", "fid_e"}
    first = table.query("weight == 0.01 and metric == 'coverage'").iloc[0]
    assert first.value == 0.5 and first.vanilla == 0.7 and first.chosen and not first.collapsed
    assert len(sweep_attack_figure(table).axes) == 3
    for r in sweep["modes"]["entropy"]["rows"]:
        del r["attack"]
    assert sweep_attack_table(sweep).empty
