"""Several processes on the CPU (lib.distributed, the ``stage`` commands): gloo, 2 processes.

One ``torch.multiprocessing`` launch checks the data-parallel steps, the resumption and who
writes; two ``torchrun`` launches check the sharded attack command end to end and a rank that
fails. The CPU kernel pins of ``conftest.py`` are in the environment the processes inherit.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from lib import distributed, paths
from lib.artifacts import PartialState, module_tensors, sha256_file
from lib.seeding import global_seed
from lib.training import _discriminator_step, _generator_step, train_classifier, train_gan
from lib.transfer import TargetTerm, TransferSettings

WORLD = 2
TORCHRUN = Path(sys.executable).with_name("torchrun")
SMALL = {"attack_pool": 40, "attack_candidates": 6, "recon_per_class": 4, "attack_steps": 3,
         "attack_final_aug": 2, "gmi_steps": 3, "gmi_restarts": 2}


# ----------------------------------------------------------------------------- tiny networks
class TinyG(nn.Module):
    """A generator without batch statistics: z (N, 4) → image (N, 1, 8, 8)."""
    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 64), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 8, 8)


def tiny_nets() -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(G, D, T, classifier), seeded, none with batch statistics."""
    with global_seed(0):
        return (TinyG(),
                nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1),
                              nn.Flatten(0)),
                nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False),
                nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)))


def batch() -> tuple[torch.Tensor, ...]:
    """One global batch of 8: real images, codes for D's step, codes for G's step, labels."""
    g = torch.Generator().manual_seed(1)
    return (torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.randn(8, 4, generator=g),
            torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g))


def classifier_run(world: distributed.World) -> nn.Module:
    """Two epochs of one global batch of 8 (no augmentation)."""
    model = tiny_nets()[3]
    x, _, _, y = batch()
    train_classifier(model, x, y, epochs=2, lr=0.05, batch_size=8, seed=3, augment=False,
                     progress=False, world=world)
    return model


def gan_step(world: distributed.World, rows: slice) -> tuple[nn.Module, nn.Module]:
    """One discriminator step (with R1) and one generator step with the entropy term of the
    transfer (λ_authors = 1, its weight for this process's share) on ``rows`` of the batch."""
    G, D, T, _ = tiny_nets()
    real, z_d, z_g, _ = batch()
    G_net = distributed.data_parallel(G, world, "cpu")
    D_net = distributed.data_parallel(D, world, "cpu")
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-2, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-2, betas=(0.5, 0.99))
    _discriminator_step(G, D_net, opt_d, real[rows], z_d[rows], nn.Identity(), r1_weight=8.0)
    settings = TransferSettings(steps=1, batch_size=8, lr=1e-2, monitor_every=10 ** 6)
    term = TargetTerm("entropy", settings, 0, T, copy.deepcopy(G), torch.zeros(1, 4), 3, None,
                      None, "cpu", world)
    term.view = nn.Identity()                 # the same view on one process and on two
    _generator_step(G_net, D, opt_g, z_g[rows], nn.Identity(), term, step=1)
    return G, D


class Cut(Exception):
    """Stands for the end of a GPU lease."""


class StopAt(PartialState):
    """Due at every step end; after ``n`` checkpoints every rank stops (a lease ending)."""

    def __init__(self, path, n: int) -> None:
        super().__init__(path, {"k": 1}, every_s=1e-9)
        self.n = n

    def due(self) -> bool:
        self.n -= 1
        if self.n < 0:
            raise Cut()
        return True


def gan_run(world: distributed.World, partial=None) -> tuple[nn.Module, dict]:
    """Six GAN steps of a global batch of 4 (lazy R1 every 2 steps)."""
    G, D, _, _ = tiny_nets()
    images = batch()[0]
    return train_gan(G, D, images, steps=6, batch_size=4, lr=1e-2, seed=5, r1_every=2,
                     log_every=1, partial=partial, progress=False, world=world)


def judge(world: distributed.World):
    """A judge of tiny networks on 20 random images (batches of 8), its features shared out
    over ``world``."""
    from lib.models import ConvClassifier
    from lib.stages.evaluation import StoredJudge

    with global_seed(0):
        E, P = ConvClassifier("mcnn", 3, width=4).eval(), ConvClassifier("mcnn", 3, width=4).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(40, 1, 32, 32, generator=g) * 2 - 1
    y = torch.arange(40) % 2
    return StoredJudge(E, P, (x[:20], y[:20], torch.arange(20)), (x[20:], y[20:], None), [0, 1],
                       n_permutations=10, batch_size=8, world=world)


def save_modules(path: Path, **modules: nn.Module) -> None:
    save_file(module_tensors(modules), str(path))


def run_folder(tmp: Path, overrides: dict) -> Path:
    """A smoke run folder (with its runner state) holding a tiny target and a tiny vanilla
    seed-0 generator: what the attack stage needs."""
    from lib import config
    from lib.models import ConvClassifier, Discriminator, Generator
    from lib.run import context

    ctx = context.setup("smoke", str(tmp), 0, "cpu", overrides, notebook="test",
                        show_config=False)
    (tmp / "runner_state.json").write_text(json.dumps(
        {"profile": "smoke", "overrides": overrides, "seed": 0, "notebooks": {}}))
    with global_seed(0):
        G, D = Generator(z_dim=8, width=4), Discriminator(width=4)
        T = ConvClassifier("mcnn", len(ctx.cfg["private_classes"]), width=4)
    with torch.no_grad():                           # batch statistics from one batch
        for m in list(G.modules()) + list(T.modules()):
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        T.train()(G.train()(torch.randn(64, 8, generator=torch.Generator().manual_seed(2))))
    G, T, D = G.eval(), T.eval(), D.eval()
    ctx.save_tensors("models/target.safetensors",
                     {**module_tensors({"model": T}), "train_indices": torch.arange(3)},
                     {"arch": T.arch_spec, "config": config.role_config("target", ctx.cfg)})
    ctx.save_tensors("models/transfer/vanilla_seed0.safetensors",
                     module_tensors({"G": G, "G_ema": copy.deepcopy(G), "D": D}),
                     {"config": config.transfer_config(ctx.cfg), "changes": {},
                      "mode": "vanilla", "seed": 0, "generator": G.arch_spec,
                      "discriminator": D.arch_spec, "history": [], "monitor": []})
    return tmp


# ----------------------------------------------------------------------------- the workers
def _worker(rank: int, tmp: str) -> None:
    """One of two gloo processes: every multi-process check of this file, results to ``tmp``."""
    from lib.run import context
    from lib.stages.attacks import require_attack

    out = Path(tmp)
    writes: list[str] = []
    replace = os.replace

    def logged(src, dst, *args, **kwargs):
        writes.append(str(dst))
        return replace(src, dst, *args, **kwargs)

    os.replace = logged                       # the atomic writer's last step
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=rank,
                            world_size=WORLD)
    world = distributed.init("cpu")
    assert (world.rank, world.size, world.backend) == (rank, WORLD, "gloo")
    classifier = classifier_run(world)
    G, D = gan_step(world, slice(4 * rank, 4 * rank + 4))
    uncut, history = gan_run(world)
    with pytest.raises(Cut):
        gan_run(world, StopAt(out / "gan.partial.safetensors", n=2))
    world.barrier()
    if world.main:
        shutil.copy(out / "gan.partial.safetensors", out / "gan.partial.w2.safetensors")
    world.barrier()
    resumed, resumed_history = gan_run(world, PartialState(out / "gan.partial.safetensors",
                                                           {"k": 1}, every_s=1e-9))
    ctx = context.setup("smoke", str(out / "attack_run"), 0, "cpu", SMALL, notebook="test",
                        show_config=False)
    run, _ = require_attack(ctx, "ppa", "vanilla", 0, world=world)
    features = judge(world).private
    if world.main:
        save_file({**features.embeddings, "penultimate": features.penultimate},
                  str(out / "features.safetensors"))
        save_modules(out / "steps.safetensors", classifier=classifier, G=G, D=D)
        save_modules(out / "gan.safetensors", uncut=uncut, resumed=resumed)
        (out / "histories.json").write_text(json.dumps([history, resumed_history]))
        save_file({"latents": run.latents}, str(out / "attack.safetensors"))
    (out / f"writes{rank}.json").write_text(json.dumps(writes))
    distributed.shutdown(world)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """The workers' results (one launch for every check that needs it)."""
    tmp = tmp_path_factory.mktemp("gloo")
    run_folder(tmp / "attack_run", SMALL)
    mp.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return tmp


# ----------------------------------------------------------------------------- data parallel
def test_a_data_parallel_step_equals_the_step_on_the_concatenated_batch(two_processes):
    """Classifier training (AdamW, one-cycle) and a GAN step with R1 and the transfer's
    entropy term: 2 ranks of 4 samples end where one process on the 8 samples does."""
    got = load_file(str(two_processes / "steps.safetensors"))
    G, D = gan_step(distributed.SINGLE, slice(0, 8))
    one = module_tensors({"classifier": classifier_run(distributed.SINGLE), "G": G, "D": D})
    assert got.keys() == one.keys()
    for key, value in one.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    start = module_tensors({"G": tiny_nets()[0]})
    assert not torch.equal(start["G.net.0.weight"], one["G.net.0.weight"])   # it did move


def test_the_entropy_weight_keeps_the_authors_units_on_any_number_of_processes():
    """λ_sum = 16·λ_authors / (the process's share of the batch): the authors' 4 GPUs × 16."""
    settings = TransferSettings(steps=1, batch_size=64, lr=1e-3, entropy_weight=1.0)
    assert settings.effective_entropy_weight == settings.process_entropy_weight(1) == 0.25
    assert settings.process_entropy_weight(4) == 1.0
    assert settings.replace(entropy_reduction="mean").process_entropy_weight(4) == 16.0
    with pytest.raises(ValueError, match="does not split"):
        distributed.local_batch(64, distributed.World(0, 3))


def test_sync_batchnorm_is_used_on_gpus_only():
    """SyncBatchNorm needs CUDA: its conversion is checked structurally."""
    from lib.models import Generator

    G = Generator(z_dim=8, width=4)
    params = [id(p) for p in G.parameters()]
    keys = list(G.state_dict())
    assert distributed.sync_batchnorm(G, "cpu") is G
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in G.modules())
    synced = distributed.sync_batchnorm(copy.deepcopy(G), "cuda")
    norms = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert list(synced.state_dict()) == keys                 # checkpoints keep their keys
    assert distributed.sync_batchnorm(G, "cuda") is G and [id(p) for p in G.parameters()] == params


# ----------------------------------------------------------------------------- resumption
def test_a_cut_run_resumes_on_as_many_processes_to_the_uncut_result(two_processes):
    got = load_file(str(two_processes / "gan.safetensors"))
    for key in [k for k in got if k.startswith("uncut.")]:
        assert torch.equal(got[key], got[key.replace("uncut.", "resumed.", 1)]), key
    history, resumed = json.loads((two_processes / "histories.json").read_text())
    assert history == resumed and history["step"] == list(range(6))


def test_a_cut_run_resumes_on_another_number_of_processes(two_processes):
    """A partial state of 2 processes continued by one: models, optimisers and history come
    back, the random streams start afresh (a valid run, not the uncut one)."""
    partial = two_processes / "gan.partial.w2.safetensors"
    saved = PartialState(partial, {"k": 1}, every_s=1e-9).load()
    assert saved["world_size"] == 2 and len(saved["ranks"]) == 2
    assert saved["values"]["position"] == 2
    G_ema, history = gan_run(distributed.SINGLE, PartialState(partial, {"k": 1}, every_s=1e-9))
    assert history["step"] == list(range(6)) and not partial.exists()
    uncut = load_file(str(two_processes / "gan.safetensors"))
    assert not torch.equal(module_tensors({"uncut": G_ema})["uncut.net.0.weight"],
                           uncut["uncut.net.0.weight"])


# ----------------------------------------------------------------------------- who writes
def test_only_rank_0_writes(two_processes):
    rank0 = json.loads((two_processes / "writes0.json").read_text())
    rank1 = json.loads((two_processes / "writes1.json").read_text())
    assert rank1 == []
    names = {Path(p).name for p in rank0}
    assert {"gan.partial.safetensors", "manifest.json", "ppa_vanilla_seed0.safetensors"} <= names


def test_the_sharded_attack_in_the_workers_equals_the_one_process_attack(two_processes, tmp_path):
    from lib.run import context
    from lib.stages.attacks import require_attack

    ctx = context.setup("smoke", str(run_folder(tmp_path / "one", SMALL)), 0, "cpu", SMALL,
                        notebook="test", show_config=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                  # as in the workers
    try:
        run, _ = require_attack(ctx, "ppa", "vanilla", 0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(load_file(str(two_processes / "attack.safetensors"))["latents"],
                       run.latents)


def test_the_shared_feature_extraction_equals_the_one_process_one(two_processes):
    """The judge's batches shared out over 2 ranks give the one-process features exactly."""
    got = load_file(str(two_processes / "features.safetensors"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                  # as in the workers
    try:
        one = judge(distributed.SINGLE).private
    finally:
        torch.set_num_threads(threads)
    assert set(got) == {*one.embeddings, "penultimate"}
    for key, value in {**one.embeddings, "penultimate": one.penultimate}.items():
        assert torch.equal(got[key], value), key


# ----------------------------------------------------------------------------- torchrun
def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ...`` with this process's environment."""
    return subprocess.run([str(TORCHRUN), "--standalone", f"--nproc_per_node={WORLD}",
                           "--monitor-interval=0.2", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_the_attack_command_under_torchrun_writes_the_one_process_files(tmp_path):
    """``torchrun -m lib.cli stage attack`` on 2 processes writes the files a one-process
    attack writes, byte for byte (the latents, labels, confidences, curves)."""
    from lib.run import context
    from lib.stages.attacks import require_attack

    shared = run_folder(tmp_path / "shared", SMALL)
    done = torchrun(["-m", "lib.cli", "stage", "attack", "--run-dir", str(shared), "--attack",
                     "ppa", "gmi", "--mode", "vanilla", "--seed", "0", "--device", "cpu"],
                    paths.repo_root())
    assert done.returncode == 0, done.stdout + done.stderr
    ctx = context.setup("smoke", str(run_folder(tmp_path / "one", SMALL)), 0, "cpu", SMALL,
                        notebook="test", show_config=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                  # torchrun's workers: one thread each
    try:
        for name in ("ppa", "gmi"):
            require_attack(ctx, name, "vanilla", 0)
    finally:
        torch.set_num_threads(threads)
    for name in ("ppa", "gmi"):
        rel = f"attacks/{name}_vanilla_seed0.safetensors"
        assert sha256_file(shared / rel) == sha256_file(ctx.path(rel)), rel
        assert len(list((shared / rel).parent.glob(f"{name}_vanilla_seed0/*.png"))) == 5


def test_a_failing_rank_fails_the_command_with_its_error_and_writes_nothing(tmp_path):
    folder = run_folder(tmp_path / "run", SMALL)
    before = {p for p in folder.rglob("*") if p.is_file()}
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(
        "import sys\n"
        "import torch.distributed as dist\n"
        "import lib.cli\n"
        "import lib.stages.attacks as attacks\n"
        "parts = attacks.attack_parts\n"
        "def failing(*args, **kwargs):\n"
        "    if dist.get_rank() == 1:\n"
        "        raise RuntimeError('injected failure on rank 1')\n"
        "    return parts(*args, **kwargs)\n"
        "attacks.attack_parts = failing\n"
        "sys.exit(lib.cli.main(sys.argv[1:]))\n")
    done = torchrun([str(script), "stage", "attack", "--run-dir", str(folder), "--attack", "ppa",
                     "--mode", "vanilla", "--seed", "0", "--device", "cpu"], paths.repo_root())
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "injected failure on rank 1" in output
    after = {p for p in folder.rglob("*") if p.is_file()}
    assert after == before, sorted(map(str, after - before))
