"""The floor of each notebook of the cpu run: the passes it cannot avoid, timed bare here.

    .venv/bin/python benchmarks/stage_floors.py [--run runs/<folder>] [--profile cpu] [--times N]

For every notebook, the forward/backward passes its result needs (counted from the profile:
epochs × images, GAN steps, attack steps × candidates, permutations, ...) are timed one kind
at a time on the profile's shapes — networks built by lib at their real sizes, random inputs,
no augmentation bookkeeping, logging, checkpoints or I/O, the median of a few repeats — and
multiplied by their counts. A pass kind's time includes the optimiser step and the kornia views
the stage applies (they are part of the bytes it must reproduce). With ``--run`` the run's own
seconds per notebook (``summary.json``) are printed beside, and their ratio to the floor.
The bare passes run faster or slower with the machine's state (±6% in total, up to ±18% per
notebook, drifting by a fifth within forty minutes): ``--times N`` measures them N times and
prints the median and the range; measure right after the run, not hours later. Notebooks 00,
01, 08 and 99 compute nothing heavy (their floor is reading and plotting) and are listed with a
floor of 0.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import lib.paths
from lib import config
from lib.allocator import reuse_freed_memory
from lib.inference import frozen
from lib.augment import attack_view, classifier_shifts, target_view
from lib.metrics.distances import PerceptualDistance
from lib.metrics.membership import membership_gap, membership_shift
from lib.models import Discriminator, Generator, build_classifier
from lib.ngd import build_reference_metric
from lib.seeding import flush_denormals, global_seed
from lib.training import discriminator_loss, generator_loss, r1_penalty

lib.paths.set_kernel_environment()
flush_denormals()                   # as a run's notebooks do (lib.run.context.setup)
reuse_freed_memory()


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def classifier(cfg: dict, role: str, n_classes: int) -> torch.nn.Module:
    key = {"target": "target", "evaluator": "eval", "perceptual": "perc"}[role]
    with global_seed(0):
        return build_classifier({"arch": cfg[f"{key}_arch"], "n_classes": n_classes,
                                 "width": cfg[f"{key}_width"], "in_channels": 1,
                                 "kernel_size": 3})


def train_step(model, batch: int, size: int, n_classes: int, augment: bool) -> Callable:
    """One AdamW step of a classifier on a batch (with the random shifts when ``augment``)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    aug = classifier_shifts(size) if augment else torch.nn.Identity()
    x, y = torch.randn(batch, 1, size, size), torch.randint(n_classes, (batch,))
    model.train()

    def step():
        loss = F.cross_entropy(model(aug(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def forward(fn: Callable, *inputs) -> Callable:
    def run():
        with torch.no_grad():
            fn(*inputs)
    return run


def gan_step(G, D, batch: int, size: int, r1: bool, extra: Callable | None = None) -> Callable:
    """One discriminator and one generator Adam step (the R1 penalty when ``r1``)."""
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.99))
    real = torch.randn(batch, 1, size, size)

    def step():
        z = torch.randn(batch, G.z_dim)
        with torch.no_grad():
            fake = G(z)
        loss = discriminator_loss(D(real), D(fake))
        if r1:
            loss = loss + r1_penalty(D, real)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        fake = G(torch.randn(batch, G.z_dim))
        loss = generator_loss(D(fake))
        if extra is not None:
            loss = loss + extra(fake)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    return step


def latent_step(G, T, n: int, view, extra: Callable | None = None, nets: tuple = ()) -> Callable:
    """One Adam step on ``n`` codes through G, the view and T (PPA's inner step; GMI adds D),
    the networks frozen (``nets``: any more of them)."""
    nets = (G, T, *nets)
    z = torch.randn(n, G.z_dim, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    labels = torch.zeros(n, dtype=torch.long)

    def step():
        with frozen(*nets):                    # as the attacks run them: only z is trained
            opt.zero_grad(set_to_none=True)
            x = G(z)
            loss = F.cross_entropy(T(view(x)), labels)
            if extra is not None:
                loss = loss + extra(x)
            loss.backward()
            opt.step()
    return step


def floors(profile: str) -> dict[str, dict[str, float]]:
    """Per notebook: {pass kind: seconds (count × bare time)}."""
    cfg = dict(config.resolve(profile, {}))
    s, bs, k = cfg["image_size"], cfg["batch_size"], len(cfg["private_classes"])
    n_d = k * cfg["private_per_class"]
    n_e, n_pub = 59000, 59000            # E's and P's training sets (about; docs/protocol.md)
    seeds, per = len(cfg["seeds"]), cfg["recon_per_class"]
    T, E, P = classifier(cfg, "target", k), classifier(cfg, "evaluator", 10), classifier(cfg, "perceptual", 10)
    G = Generator(cfg["gan_z_dim"], cfg["gan_width"], 1, s)
    D = Discriminator(cfg["gan_d_width"], 1, s)
    d_p = PerceptualDistance(copy.deepcopy(P), name="d_P")       # frozen copies: P and E
    d_e = PerceptualDistance(copy.deepcopy(E), name="d_E")       # are also trained below
    x1024 = torch.randn(1024, 1, s, s)
    per_image = lambda fn: timed(forward(fn, x1024)) / 1024          # noqa: E731
    T.eval(), E.eval(), P.eval()
    fwd = {"T": per_image(T), "E": per_image(E), "E.embed": per_image(E.embed),
           "d_P": per_image(d_p.embed), "d_E": per_image(d_e.embed),
           "P": per_image(P), "G": timed(forward(G.eval(), torch.randn(1024, G.z_dim))) / 1024}
    out: dict[str, dict[str, float]] = {}

    # 02: T, E and P trained, each test split classified once
    steps = lambda n, epochs: epochs * math.ceil(n / bs)                     # noqa: E731
    out["02_classifiers"] = {
        "T training": steps(n_d, cfg["target_epochs"]) * timed(train_step(T, bs, s, k, True)),
        "E training": steps(n_e, cfg["eval_epochs"]) * timed(train_step(E, bs, s, 10, False)),
        "P training": steps(n_pub, cfg["perc_epochs"]) * timed(train_step(P, bs, s, 10, False)),
        "test passes": 5000 * (fwd["T"] + fwd["E"]) + 10000 * (fwd["E"] + fwd["P"]),
    }
    T.eval(), E.eval(), P.eval()
    # 03: the GAN prior, its standing statistics and FID-E
    gb = cfg["gan_batch"]
    plain, with_r1 = timed(gan_step(G, D, gb, s, False)), timed(gan_step(G, D, gb, s, True))
    n_r1 = math.ceil(cfg["gan_steps"] / cfg["gan_r1_every"])
    fid = cfg["fid_samples"] * (fwd["G"] + 2 * fwd["E.embed"])
    out["03_gan_prior"] = {"GAN steps": (cfg["gan_steps"] - n_r1) * plain + n_r1 * with_r1,
                           "standing statistics": 50 * 256 * fwd["G"], "FID-E": fid}
    # 04: per seed the natural-gradient metric; per mode × seed the transfer
    view = target_view(s)
    entropy = lambda fake: torch.special.entr(F.softmax(T(view(fake)), 1)).sum()   # noqa: E731
    transfer_plain = timed(gan_step(G, D, gb, s, False))
    transfer_target = timed(gan_step(G, D, gb, s, False, entropy))
    g_ref = G.eval()
    with torch.no_grad():
        ref = g_ref(torch.randn(cfg["ngd_codes"], G.z_dim))
    t0 = time.perf_counter()
    build_reference_metric(d_p, ref, cfg["ngd_rank"], method="lanczos", seed=0)
    metric = time.perf_counter() - t0
    n_steps = cfg["transfer_steps"]
    monitors = n_steps // cfg["monitor_every"] + 2
    monitor = monitors * (8 * 256 * fwd["G"] + cfg["monitor_samples"] * (fwd["G"] + fwd["T"]))
    out["04_transfer"] = {
        "metric (Lanczos)": seeds * metric,
        "vanilla transfers": seeds * n_steps * transfer_plain,
        "entropy, entropy+ngd transfers": 2 * seeds * n_steps * transfer_target,
        "monitors": 3 * seeds * monitor,
        "standing statistics": 3 * seeds * 50 * 256 * fwd["G"],
        "FID-E of the modes": 3 * seeds * fid}
    # 05: PPA on every mode × seed; GMI on every mode, its seeds
    cand = cfg["attack_candidates"]
    aview = attack_view(s)
    ppa_step = timed(latent_step(G, T, cand, aview))
    ppa_views = timed(forward(lambda x: T(aview(x)), torch.randn(cand, 1, s, s)))
    ppa = (cfg["attack_pool"] * (fwd["G"] + fwd["T"])
           + k * (cfg["attack_steps"] * ppa_step + (cfg["attack_final_aug"] + 2) * ppa_views))
    gmi_d = lambda x: F.softplus(-D(x)).mean()                                    # noqa: E731
    gmi_step = timed(latent_step(G, T, per, torch.nn.Identity(), gmi_d, (D,)))   # one class's
    gmi = k * cfg["gmi_restarts"] * cfg["gmi_steps"] * gmi_step     # codes, as the attack runs
    n_ppa = 3 * seeds
    n_gmi = sum(len(config.attack_seeds(cfg, "gmi", mode)) for mode in config.MODES)
    out["05_attacks"] = {"PPA-style": n_ppa * ppa, "GMI-style": n_gmi * gmi}
    # 06: every set embedded once, its membership nulls, the controls, the oracle projections
    m = per * k
    n_sets = n_ppa + n_gmi + 3 * seeds
    embed_set = m * (fwd["d_P"] + fwd["d_E"] + fwd["E"] + fwd["E.embed"])
    labels = np.repeat(np.arange(k), per)
    dm, dn = np.random.rand(m, n_d), np.random.rand(m, n_d)
    member_labels = np.repeat(np.arange(k), cfg["private_per_class"])
    perms = cfg["n_permutations"]
    gap = timed(lambda: membership_gap(dm, dn, labels, member_labels, member_labels, "best", perms),
                repeats=3, warmup=1)
    shift = timed(lambda: membership_shift(dm, dn, dm, dn, labels, member_labels, member_labels,
                                           perms), repeats=3, warmup=1)
    proj_step = timed(latent_step(G, P, 512, torch.nn.Identity()), repeats=3, warmup=1) / 512
    projections = (n_d + 2 * k * cfg["reach_per_class"]) * cfg["projection_restarts"] * \
        cfg["projection_steps"] * proj_step
    n_doses = (len((0.05, 0.1, 0.25, 0.5, 1.0)) * 4 + 1) * seeds
    out["06_evaluation"] = {
        "embeddings (D, R, every set, starts)": (2 * n_d + n_sets * m + (n_ppa + n_gmi) * m)
        * (fwd["d_P"] + fwd["d_E"] + fwd["E.embed"]) + n_sets * m * fwd["E"],
        "membership nulls (every set × 2 distances)": 2 * n_sets * gap + (n_ppa + n_gmi) * shift,
        "controls (prior samples labelled by T)": seeds * 20 * m * (fwd["G"] + fwd["T"]),
        "oracle projections": projections,
        "dose-response nulls": n_doses * (gap + shift)}
    # 07: T retrained twice per retraining seed, each attacked again; the audit's own scores
    r = cfg["defense_retrain_seeds"]
    out["07_defense"] = {
        "retraining": 2 * r * steps(int(0.95 * n_d), cfg["target_epochs"])
        * timed(train_step(T, bs, s, k, True)),
        "attacks again": 2 * r * ppa,
        "scores of the new attacks": 2 * r * embed_set}
    for name in ("00_overview", "01_data", "08_memorisation", "99_summary"):
        out[name] = {}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--run", type=Path, help="a run folder whose summary.json to set beside")
    parser.add_argument("--times", type=int, default=1,
                        help="measure the floors this many times (they drift with the machine's "
                             "speed): the median is printed, and the range when more than once")
    parser.add_argument("--json", type=Path, help="also write the floors here (a list of N with --times N > 1)")
    args = parser.parse_args()
    if args.times < 1:
        parser.error("--times must be at least 1")
    torch.manual_seed(0)
    results = [floors(args.profile) for _ in range(args.times)]
    measured = {}
    if args.run:
        summary = json.loads((args.run / "summary.json").read_text())
        measured = {nb["name"]: nb["seconds"] for nb in summary["notebooks"]}
    span = lambda values: (f" [{min(values):.0f}–{max(values):.0f}]"          # noqa: E731
                           if len(values) > 1 else "")
    totals = [sum(sum(parts.values()) for parts in result.values()) for result in results]
    total_run = 0.0
    print(f"{'notebook':16} {'floor s':>9} {'run s':>8} {'ratio':>6}  passes (median floor)"
          + ("  [floor range]" if args.times > 1 else ""))
    for name in sorted(results[0]):
        each = [sum(result[name].values()) for result in results]
        floor = statistics.median(each)
        run = measured.get(name)
        total_run += run or 0.0
        ratio = f"{run / floor:6.2f}" if run and floor else "     -"
        detail = "; ".join(f"{k} {statistics.median(r[name][k] for r in results):.1f}"
                           for k in results[0][name])
        print(f"{name:16} {floor:9.1f} {run if run is not None else float('nan'):8.1f} {ratio}  "
              f"{detail}{span(each) if floor else ''}")
    total_floor = statistics.median(totals)
    line = f"{'total':16} {total_floor:9.1f} {total_run:8.1f}"
    if total_run:
        line += f" {total_run / total_floor:6.2f}"
        if args.times > 1:
            line += f"  (ratio {total_run / max(totals):.2f}–{total_run / min(totals):.2f} over " \
                    f"the {args.times} measurements{span(totals)})"
    print(line)
    if args.json:
        args.json.write_text(json.dumps(results if args.times > 1 else results[0], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
