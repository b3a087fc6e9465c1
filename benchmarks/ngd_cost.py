"""What the natural gradient costs: building the metric, and each fine-tuning step.

Prints (1) the time to build the faithful metric (top-k eigenpairs at the reference codes) by
Lanczos and by the exact path (materialised Hessian + eigh, timed on one code and scaled), with
their eigenvalue agreement on that code; (2) the time per fine-tuning step of each mode at the
`cpu` profile's sizes, and the ratio `entropy+ngd` / `entropy` (target: ≤ 1.25 in the faithful
mode, the metric being built once before fine-tuning).

Networks are freshly initialised at the profile's sizes (step cost does not depend on the
weights); run it on an otherwise idle machine:  python benchmarks/ngd_cost.py [--steps 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib import ngd, transfer
from lib.metrics.distances import PerceptualDistance
from lib.models import ConvClassifier, Discriminator, Generator
from lib.config import MODES, resolve


def build_networks(cfg):
    torch.manual_seed(0)
    G, D = Generator(cfg["gan_z_dim"], cfg["gan_width"]), Discriminator(cfg["gan_d_width"])
    target = ConvClassifier(cfg["target_arch"], len(cfg["private_classes"]), cfg["target_width"])
    perceptual = ConvClassifier(cfg["perc_arch"], 10, cfg["perc_width"])
    return G.eval(), D, target.eval(), PerceptualDistance(perceptual)


def time_metric(G, distance, settings, seed: int = 0) -> tuple[float, float, float, object]:
    """(Lanczos seconds for all codes, exact seconds scaled to all codes, max relative
    eigenvalue difference on code 0, the Lanczos metric)."""
    codes = transfer.reference_codes(G.z_dim, settings.ngd_codes, seed)
    with torch.no_grad():
        images = G(codes)
    start = time.perf_counter()
    metric = ngd.build_reference_metric(distance, images, settings.ngd_rank)
    lanczos = time.perf_counter() - start
    start = time.perf_counter()
    hvp = ngd.hessian_vector_product(distance, images[0])
    vals, _ = ngd.top_eigenpairs(hvp, images[0].numel(), settings.ngd_rank, method="exact")
    exact = (time.perf_counter() - start) * settings.ngd_codes
    rel = ((metric.eigvals[0] - vals).abs() / vals.abs()).max().item()
    return lanczos, exact, rel, metric


def time_steps(mode, G, D, target, public, settings, metric, repeats: int) -> float:
    """Median seconds per fine-tuning step of ``mode`` over ``repeats`` runs."""
    per_step = []
    for r in range(repeats):
        start = time.perf_counter()
        transfer.fine_tune(mode, G, D, target, public, settings, seed=r, metric=metric,
                           progress=False)
        per_step.append((time.perf_counter() - start) / settings.steps)
    return statistics.median(per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = resolve(args.profile)
    settings = transfer.TransferSettings.from_config(cfg, "entropy+ngd").replace(
        steps=args.steps, monitor_samples=64, monitor_every=10 ** 9)
    G, D, target, distance = build_networks(cfg)
    public = torch.rand(2048, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    print(f"profile {args.profile}: generator width {cfg['gan_width']}, batch {settings.batch_size}, "
          f"metric top-{settings.ngd_rank} at {settings.ngd_codes} codes (dim "
          f"{public[0].numel()}), torch threads {torch.get_num_threads()}")

    lanczos, exact, rel, metric = time_metric(G, distance, settings)
    print(f"\nbuild the metric: Lanczos {lanczos:.2f} s; exact (eigh of the materialised Hessian, "
          f"one code × {settings.ngd_codes}) {exact:.2f} s; ratio exact/Lanczos "
          f"{exact / lanczos:.1f}×")
    print(f"  eigenvalue agreement on code 0: max relative difference {rel:.1e}")

    times = {}
    for mode in MODES:   # one warm-up step per mode, then the timed runs
        transfer.fine_tune(mode, G, D, target, public, settings.replace(steps=1), seed=0,
                           metric=metric, progress=False)
    for mode in MODES:
        times[mode] = time_steps(mode, G, D, target, public, settings, metric, args.repeats)
    print(f"\nseconds per fine-tuning step (median of {args.repeats} runs × {args.steps} steps):")
    for mode, t in times.items():
        print(f"  {mode:12s} {t * 1000:7.1f} ms")
    ratio = times["entropy+ngd"] / times["entropy"]
    print(f"\nratio entropy+ngd / entropy: {ratio:.3f} (target ≤ 1.25: "
          f"{'met' if ratio <= 1.25 else 'NOT met'})")
    print(f"ratio entropy / vanilla: {times['entropy'] / times['vanilla']:.3f}")
    print(f"one-off metric build = {lanczos / times['entropy+ngd']:.0f} steps of entropy+ngd")


if __name__ == "__main__":
    main()
