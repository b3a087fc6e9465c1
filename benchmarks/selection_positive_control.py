"""Could the split selection's criterion 3 have seen a positive? A positive control of known
strength on a candidate's own run folder.

Criterion 3 (docs/protocol.md, "Choosing a shifted split") asks an attack to beat the
`random_generator` control on DDCS_best (d_P) and coverage (E) in every selection seed. Here
the "attack" is made to reach D by construction: per private class, a fraction f of the
reconstructions are noisy copies of D's images (Gaussian noise of standard deviation
``--noise`` in [-1, 1] units, clamped), the rest the control's own samples. Each set is
scored by the same judge (E, d_P on P, D, R) as the selection, and attack − control is printed
per seed with criterion 3's verdict. The smallest f that passes is the instrument's detection
limit; a candidate's attack failing criterion 3 is believed only if some f passes.

Reads the candidate's T, E, P and prior from its run folder (the selection made them); the
scored sets go to that folder's score store. Nothing is chosen or changed by it.
Run: .venv/bin/python benchmarks/selection_positive_control.py --run runs/<candidate folder>
         --split class-disjoint [--fractions 0.05 0.1 0.25 0.5 1] [--noise 0.1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import lib.paths  # noqa: F401  (pins the CPU kernels before torch loads)
from lib.data import dataset
from lib.data.images import subset
from lib.run import context
from lib.seeding import derive_seed
from lib.stages import split_selection
from lib.stages.classifiers import require_classifiers
from lib.stages.evaluation import build_judge, control_draws, score_sets
from lib.stages.transfer import transfer_inputs

METRICS = ("ddcs_best_d_P", "coverage")


def positive_set(control: tuple[torch.Tensor, np.ndarray], members: torch.Tensor,
                 member_labels: np.ndarray, fraction: float, noise: float,
                 seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """The control's set with, per class, round(fraction × its size) images replaced by noisy
    copies of distinct members of that class (seeded)."""
    images, labels = control[0].clone(), control[1]
    gen = torch.Generator().manual_seed(seed)
    for c in np.unique(labels):
        slots = np.flatnonzero(labels == c)
        pool = np.flatnonzero(member_labels == c)
        k = min(int(round(fraction * len(slots))), len(pool))
        chosen = pool[torch.randperm(len(pool), generator=gen)[:k].numpy()]
        copies = members[chosen] + noise * torch.randn(members[chosen].shape, generator=gen)
        images[slots[:k]] = copies.clamp(-1.0, 1.0)
    return images, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a candidate's run folder of make select-split")
    ap.add_argument("--split", required=True, choices=split_selection.CANDIDATES)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--noise", type=float, default=0.1)
    args = ap.parse_args()
    start = time.perf_counter()
    ctx = context.setup("cpu", args.run, 0, "auto", split_selection.overrides(args.split),
                        notebook="selection_positive_control", show_config=False)
    cfg = ctx.cfg
    data, split = dataset.load(cfg)
    nets = require_classifiers(ctx, data, split)
    inputs = transfer_inputs(ctx, data, split)
    draw = control_draws(ctx, data, split, nets["target"], inputs.generator_ema)["random_generator"]
    x_d, y_d = subset(data, split.private)
    sets = {}
    for seed in cfg["seeds"]:
        control = draw(derive_seed(seed, "random_generator"))    # the selection's control draw
        sets["random_generator", seed] = (*control, None)
        for f in args.fractions:
            sets[f"positive/{f:g}", seed] = (*positive_set(control, x_d, y_d.numpy(), f,
                                                           args.noise,
                                                           derive_seed(seed, f"positive{f:g}")),
                                             None)
    judge = build_judge(ctx, data, split, nets["evaluator"], inputs.distance)
    results = score_sets(ctx, judge, sets, audit=False).results

    def value(source: str, seed: int, metric: str) -> float:
        row = results[(results.source == source) & (results.seed == seed)
                      & (results.metric == metric)]
        return float(row["value"].iloc[0])

    print(f"{args.split}: near-copies of D (noise sd {args.noise:g}) replacing a fraction f of "
          f"the random_generator control's {cfg['recon_per_class']} images per class; seeds "
          f"{list(cfg['seeds'])}")
    print(f"{'f':>6} {'DDCS_best d_P: attack - control':>36} {'coverage: attack - control':>32}"
          f"  criterion 3")
    for f in args.fractions:
        diffs = {m: [value(f"positive/{f:g}", s, m) - value("random_generator", s, m)
                     for s in cfg["seeds"]] for m in METRICS}
        passed = all(d > 0 for m in METRICS for d in diffs[m])
        print(f"{f:>6g} {' '.join(f'{d:+.4f}' for d in diffs['ddcs_best_d_P']):>36} "
              f"{' '.join(f'{d:+.4f}' for d in diffs['coverage']):>32}  "
              f"{'pass' if passed else 'fail'}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
