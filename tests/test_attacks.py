"""The PPA-style and GMI-style attacks on tiny networks (lib.attacks)."""
from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from torch import nn

from lib.attacks.gmi import gmi_attack
from lib.attacks.interface import ATTACKS, attack_parts, run_attack
from lib.attacks.ppa import (poincare_loss, ppa_attack, robust_confidence, select_candidates,
                             select_final)
from lib.stages.attacks import regenerate
from lib.models import ConvClassifier, Discriminator, Generator
from lib.config import resolve
from lib.seeding import derive_seed

N_CLASSES = 3
PPA = dict(pool=60, candidates_per_class=8, final_per_class=4, steps=10, lr=0.1,
           truncation=1.0, n_aug_final=4)
GMI = dict(per_class=4, steps=10, lr=0.05, restarts=2, lambda_id=100.0)


def tiny_nets(seed: int = 0) -> tuple[Generator, ConvClassifier, Discriminator]:
    """Untrained G, T, D whose batch-norm statistics are set from one batch (responsive)."""
    torch.manual_seed(seed)
    G, T, D = Generator(z_dim=8, width=4), ConvClassifier("mcnn", N_CLASSES, width=4), \
        Discriminator(width=4)
    for m in list(G.modules()) + list(T.modules()):
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None                       # cumulative: the stats of the one batch
    with torch.no_grad():
        T.train()(G.train()(torch.randn(64, 8)))
    return G.eval(), T.eval(), D.eval()


# ----------------------------------------------------------------------------- the loss
def test_poincare_loss_matches_hand_computation():
    xi = 1e-4
    # u = [2, -1, 1] / 4; v = [1 - xi, 0, 0]
    u = [0.5, -0.25, 0.25]
    v = [1 - xi, 0.0, 0.0]
    diff = sum((a - b) ** 2 for a, b in zip(u, v))
    expected = math.acosh(1 + 2 * diff / ((1 - sum(a * a for a in u)) * (1 - (1 - xi) ** 2)))
    got = poincare_loss(torch.tensor([[2.0, -1.0, 1.0]], dtype=torch.float64),
                        torch.tensor([0]), xi=xi)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_poincare_loss_is_nonnegative_and_smaller_toward_the_class():
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.arange(50) % 5
    assert (poincare_loss(logits, targets) >= 0).all()
    right = torch.tensor([[4.0, 1.0, 0.5]])
    wrong = torch.tensor([[0.5, 1.0, 4.0]])
    assert poincare_loss(right, torch.tensor([0])) < poincare_loss(wrong, torch.tensor([0]))


# ----------------------------------------------------------------------------- selection
def test_select_candidates_and_final_pick_the_highest():
    conf = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.95]])
    assert select_candidates(conf, 2).tolist() == [[0, 2], [3, 1]]
    assert select_candidates(conf, 1).tolist() == [[0], [3]]
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.9], [0.8, 0.2, 0.6, 0.4]])
    assert select_final(scores, 2).tolist() == [[3, 1], [0, 2]]
    with pytest.raises(ValueError, match="pool"):
        select_candidates(conf, 5)
    with pytest.raises(ValueError, match="keep"):
        select_final(scores, 5)


def test_robust_confidence_is_a_probability_of_shape_c_k():
    G, T, _ = tiny_nets()
    latents = torch.randn(N_CLASSES, 4, 8, generator=torch.Generator().manual_seed(1))
    conf = robust_confidence(G, T, latents, torch.arange(N_CLASSES), n_aug=3, seed=0)
    assert conf.shape == (N_CLASSES, 4)
    assert ((conf >= 0) & (conf <= 1)).all()
    assert torch.equal(conf, robust_confidence(G, T, latents, torch.arange(N_CLASSES), 3, 0))
    one = robust_confidence(G, T, latents, torch.arange(N_CLASSES), n_aug=1, seed=0)
    assert not torch.equal(conf, one)               # averaged over several views


# ----------------------------------------------------------------------------- the attacks
def test_ppa_lowers_its_loss_and_returns_every_key():
    G, T, _ = tiny_nets()
    # the untrained tiny target's loss is nearly flat: 30 steps lower it for every seed tried
    out = ppa_attack(G, T, N_CLASSES, seed=0, **{**PPA, "steps": 30})
    assert out["final_loss"] < out["initial_loss"]
    assert len(out["loss_curve"]) == 30
    n = N_CLASSES * PPA["final_per_class"]
    assert out["latents"].shape == (n, 8) and out["images"].shape == (n, 1, 32, 32)
    assert out["labels"].tolist() == [c for c in range(N_CLASSES)
                                      for _ in range(PPA["final_per_class"])]
    assert ((out["confidence"] >= 0) & (out["confidence"] <= 1)).all()
    # the networks are left as they were: frozen only during the attack
    assert all(p.requires_grad for p in G.parameters())
    assert all(p.requires_grad for p in T.parameters())


def test_gmi_lowers_its_loss():
    G, T, D = tiny_nets()
    out = gmi_attack(G, D, T, N_CLASSES, seed=0, **GMI)
    assert out["final_loss"] < out["initial_loss"]
    assert out["loss_curve"][-1] < out["loss_curve"][0]
    assert out["latents"].abs().max() <= 3.0
    assert out["labels"].tolist() == [c for c in range(N_CLASSES) for _ in range(4)]


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_are_reproducible_and_regenerate_exactly(name):
    G, T, D = tiny_nets()

    def attack(seed):
        if name == "ppa":
            return ppa_attack(G, T, N_CLASSES, seed=seed, **{**PPA, "steps": 3})
        return gmi_attack(G, D, T, N_CLASSES, seed=seed, **{**GMI, "steps": 3})

    a, b, c = attack(0), attack(0), attack(1)
    assert torch.equal(a["latents"], b["latents"]) and torch.equal(a["images"], b["images"])
    assert not torch.equal(a["latents"], c["latents"])
    assert torch.equal(regenerate(G, a["latents"]), a["images"])


# ----------------------------------------------------------------------------- run_attack
@pytest.mark.parametrize("name", ATTACKS)
def test_run_attack_reads_the_profile(name):
    G, T, D = tiny_nets()
    cfg = resolve("smoke")
    per_class = cfg["recon_per_class"]
    out = run_attack(name, G, T, N_CLASSES, cfg, 0, discriminator=D)
    assert out["labels"].tolist() == [c for c in range(N_CLASSES) for _ in range(per_class)]
    assert len(out["latents"]) == len(out["images"]) == N_CLASSES * per_class
    assert len(out["loss_curve"]) == cfg["attack_steps" if name == "ppa" else "gmi_steps"]


def test_run_attack_errors_name_the_fix():
    G, T, _ = tiny_nets()
    cfg = resolve("smoke")
    with pytest.raises(ValueError, match="valid: ppa, gmi"):
        run_attack("nope", G, T, N_CLASSES, cfg, 0)
    with pytest.raises(ValueError, match="discriminator"):
        run_attack("gmi", G, T, N_CLASSES, cfg, 0)
    with pytest.raises(ValueError, match="attack_candidates"):
        run_attack("ppa", G, T, N_CLASSES, resolve("smoke", {"attack_candidates": 5}), 0)
    with pytest.raises(ValueError, match="n_classes"):
        ppa_attack(G, T, N_CLASSES + 1, seed=0, **PPA)


def test_the_attacker_knows_no_private_data():
    forbidden = {"evaluator", "private", "reference", "judge", "split", "data"}
    for fn in (run_attack, ppa_attack, gmi_attack):
        assert not forbidden & set(inspect.signature(fn).parameters), fn.__name__


# ----------------------------------------------------------------------------- saved runs
def _context_with_a_transferred_generator(tmp_path, overrides=None):
    """A smoke context whose run folder holds a (tiny, untrained) vanilla seed-0 generator."""
    from lib import config
    from lib.artifacts import module_tensors
    from lib.run import context

    ctx = context.setup("smoke", str(tmp_path / "run"), 0, "cpu", overrides or {},
                         notebook="test", show_config=False)
    G, _, D = tiny_nets()
    n_classes = len(ctx.cfg["private_classes"])
    torch.manual_seed(1)
    T = ConvClassifier("mcnn", n_classes, width=4).eval()
    ctx.save_tensors("models/target.safetensors",
                     {f"model.{k}": v for k, v in T.state_dict().items()}, {"arch": T.arch_spec})
    ctx.save_tensors("models/transfer/vanilla_seed0.safetensors",
                     module_tensors({"G": G, "G_ema": copy.deepcopy(G), "D": D}),
                     {"config": config.transfer_config(ctx.cfg), "changes": {}, "mode": "vanilla",
                      "seed": 0, "generator": G.arch_spec, "discriminator": D.arch_spec,
                      "history": [], "monitor": [], "seconds": 0.0})
    return ctx, G, T


@pytest.mark.parametrize("name", ATTACKS)
def test_require_attack_saves_reuses_and_regenerates(tmp_path, name):
    from lib.stages.attacks import attack_stem, require_attack

    ctx, G, T = _context_with_a_transferred_generator(tmp_path)
    run, info = require_attack(ctx, name, "vanilla", 0, target=T)
    assert not info["reused"]
    per_class, classes = ctx.cfg["recon_per_class"], list(ctx.cfg["private_classes"])
    assert run.original_labels.tolist() == [c for c in classes for _ in range(per_class)]
    stem = attack_stem(name, "vanilla", 0)
    assert ctx.exists(f"attacks/{stem}.safetensors")
    assert len(list(ctx.path(f"attacks/{stem}").glob("*.png"))) == len(classes)
    again, info = require_attack(ctx, name, "vanilla", 0, target=T)
    assert info["reused"]
    assert torch.equal(again.latents, run.latents) and torch.equal(again.images, run.images)
    assert torch.equal(again.confidence, run.confidence)
    assert again.loss_curve == pytest.approx(run.loss_curve)


def test_require_attack_refuses_another_config(tmp_path):
    from lib.errors import ArtifactError
    from lib.run import context
    from lib.stages.attacks import require_attack

    ctx, G, T = _context_with_a_transferred_generator(tmp_path)
    require_attack(ctx, "ppa", "vanilla", 0, target=T)
    other = context.setup("smoke", str(ctx.run_dir), 0, "cpu", {"attack_steps": 3},
                           notebook="test", show_config=False)
    with pytest.raises(ArtifactError, match="another config"):
        require_attack(other, "ppa", "vanilla", 0, target=T)


def test_attack_seeds_and_stems():
    from lib.config import attack_seeds
    from lib.stages.attacks import attack_stem

    cfg = resolve("cpu")
    assert attack_seeds(cfg, "ppa") == list(cfg["seeds"]) and len(cfg["seeds"]) >= 3
    assert attack_seeds(cfg, "gmi") == list(cfg["seeds"])[:cfg["gmi_vanilla_seeds"]]
    assert attack_seeds(cfg, "gmi", "entropy") == list(cfg["seeds"])[:cfg["gmi_seeds"]]
    cpu = resolve("cpu")
    assert attack_seeds(cpu, "ppa", "entropy+ngd") == [0, 1, 2, 3, 4]
    assert attack_seeds(cpu, "gmi", "vanilla") == [0, 1, 2, 3, 4]
    assert attack_seeds(cpu, "gmi", "entropy") == attack_seeds(cpu, "gmi", "entropy+ngd") == [0, 1]
    assert attack_stem("ppa", "entropy+ngd", 2) == "ppa_entropy-ngd_seed2"
    with pytest.raises(ValueError, match="valid: ppa, gmi"):
        attack_stem("mia", "vanilla", 0)


def test_cpu_attacks_make_at_least_as_many_reconstructions_as_private_samples():
    cfg = resolve("cpu")
    assert cfg["recon_per_class"] >= cfg["private_per_class"]
    assert cfg["attack_candidates"] >= cfg["recon_per_class"]


@pytest.mark.parametrize("name", ["ppa", "gmi"])
def test_each_reconstruction_keeps_its_starting_code(name):
    """Claim C1c compares a reconstruction with its starting point: with no optimisation step
    the two are the same code; with steps they differ, and the start is one of the codes the
    attack drew (PPA: its pool; GMI: the kept restart's random codes)."""
    G, T, D = tiny_nets()
    if name == "ppa":
        still = ppa_attack(G, T, N_CLASSES, seed=3, **{**PPA, "steps": 0})
        moved = ppa_attack(G, T, N_CLASSES, seed=3, **PPA)
        pool = G.sample_latents(PPA["pool"], torch.Generator().manual_seed(derive_seed(3, "pool")))
        assert all((pool == z).all(1).any() for z in moved["start_latents"])
    else:
        still = gmi_attack(G, D, T, N_CLASSES, seed=3, **{**GMI, "steps": 0})
        moved = gmi_attack(G, D, T, N_CLASSES, seed=3, **GMI)
    assert torch.equal(still["latents"], still["start_latents"])
    assert moved["start_latents"].shape == moved["latents"].shape
    assert not torch.equal(moved["latents"], moved["start_latents"])


# ----------------------------------------------------------------------------- per-class streams
SMALL = {"attack_pool": 40, "attack_candidates": 6, "recon_per_class": 4, "attack_steps": 3,
         "attack_final_aug": 2, "gmi_steps": 3, "gmi_restarts": 2}


@pytest.mark.parametrize("name", ATTACKS)
def test_a_class_gets_the_same_result_whichever_other_classes_are_attacked(name):
    """Each class draws from a stream of its own, with its own forward passes and optimiser:
    attacking a subset of the classes (one process's share) gives each class exactly its part
    of the whole attack, and merging the parts gives the whole attack bit for bit."""
    from lib.attacks.interface import attack_parts, finish_attack
    from lib.attacks.parts import PART_KEYS

    G, T, D = tiny_nets()
    cfg = resolve("smoke", SMALL)
    whole = attack_parts(name, G, T, N_CLASSES, cfg, 5, range(N_CLASSES), discriminator=D)
    alone = attack_parts(name, G, T, N_CLASSES, cfg, 5, [2], discriminator=D)
    pair = attack_parts(name, G, T, N_CLASSES, cfg, 5, [1, 0], discriminator=D)
    assert set(alone) == {2} and set(pair) == {0, 1}
    for c, part in {**alone, **pair}.items():
        for key in PART_KEYS:
            assert torch.equal(part[key], whole[c][key]), (c, key)
    merged = finish_attack({**alone, **pair}, G, N_CLASSES)
    full = run_attack(name, G, T, N_CLASSES, cfg, 5, discriminator=D)
    for key in ("latents", "start_latents", "labels", "confidence", "images"):
        assert torch.equal(merged[key], full[key]), key
    assert merged["loss_curve"] == full["loss_curve"]
    assert (merged["initial_loss"], merged["final_loss"]) == (full["initial_loss"],
                                                              full["final_loss"])
    with pytest.raises(ValueError, match=r"classes \[1\] are missing"):
        finish_attack({**alone, 0: whole[0]}, G, N_CLASSES)


def test_the_classes_draw_different_views_and_codes():
    """Per-class streams differ: two classes of GMI start from different codes."""
    from lib.attacks.gmi import gmi_attack_parts

    G, T, D = tiny_nets()
    parts = gmi_attack_parts(G, D, T, N_CLASSES, [0, 1], seed=0, **{**GMI, "steps": 0})
    assert not torch.equal(parts[0]["start_latents"], parts[1]["start_latents"])


@pytest.mark.parametrize("name", ATTACKS)
def test_an_attack_cut_after_some_classes_resumes_to_the_same_bytes(tmp_path, monkeypatch, name):
    """With partial saves on, each finished class is saved at once; a run stopped after two
    classes (a command's time limit) resumes at the third, and its saved run equals an uncut
    run's byte for byte; the partial file is gone afterwards."""
    from lib import artifacts
    from lib.stages import attacks as stage

    on = {"checkpoint_every_s": 60}
    ctx, _, T = _context_with_a_transferred_generator(tmp_path / "uncut", on)
    stage.require_attack(ctx, name, "vanilla", 0, target=T)
    stem = stage.attack_stem(name, "vanilla", 0)
    uncut = ctx.path(f"attacks/{stem}.safetensors").read_bytes()

    class Cut(Exception):
        pass

    saves = []

    def save_then_cut(self, state):
        original_save(self, state)
        saves.append(sorted(state["parts"]))
        if len(saves) == 2:
            raise Cut()

    original_save = artifacts.PartialState.save
    cut, _, T = _context_with_a_transferred_generator(tmp_path / "cut", on)
    monkeypatch.setattr(artifacts.PartialState, "save", save_then_cut)
    with pytest.raises(Cut):
        stage.require_attack(cut, name, "vanilla", 0, target=T)
    partial = cut.path(f"attacks/{stem}.partial.safetensors")
    assert partial.is_file() and saves == [["0"], ["0", "1"]]
    monkeypatch.setattr(artifacts.PartialState, "save", original_save)
    done = []
    monkeypatch.setattr(stage, "attack_parts", lambda *a, **k: done.append(a[6]) or
                        attack_parts(*a, **k))
    stage.require_attack(cut, name, "vanilla", 0, target=T)
    assert done == [list(range(2, len(cut.cfg["private_classes"])))]   # only the rest ran
    assert cut.path(f"attacks/{stem}.safetensors").read_bytes() == uncut
    assert not partial.exists()
