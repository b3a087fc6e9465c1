"""What the transfer's EMA ramp-up does to one seed: each mode fine-tuned at seed 0
with the ramp-up (``transfer_ema_rampup`` 0.05, the default) and without it (a fixed 10-kimg
half-life, which keeps 0.5^(19.2/10) ≈ 26% of the prior's weights after 300 steps of 64), from
the same prior and target; printed: the EMA generator's final target entropy and largest class
share (the collapse monitor), FID-E against the public images and E's private share.

The prior, T, E and P come from a finished cpu run folder (``--run``; copied, never written);
the transfers are made in a new folder under ``runs/``.
Run: .venv/bin/python benchmarks/ema_rampup_effect.py --run runs/<a cpu run> [--modes ...]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import lib.paths  # noqa: F401  (pins the CPU kernels before torch loads)
from lib.data import dataset
from lib.inference import predict_logits
from lib.run import context, runner
from lib.stages.classifiers import require_classifier
from lib.stages.transfer import (evaluator_row, mode_samples, public_features,
                                 require_transfer, transfer_inputs)
from lib.training import ema_residual

MODELS = ("target", "evaluator", "perceptual", "gan_prior")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished cpu run folder (its models are read)")
    ap.add_argument("--modes", nargs="+", default=["vanilla", "entropy", "entropy+ngd"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    source = Path(args.run)
    folder = runner.new_run_dir("cpu")
    (folder / "models").mkdir(parents=True)
    for name in MODELS:
        shutil.copyfile(source / "models" / f"{name}.safetensors",
                        folder / "models" / f"{name}.safetensors")
    shutil.copyfile(source / "manifest.json", folder / "manifest.json")
    ctx = context.setup("cpu", str(folder), 0, "cpu", {}, notebook="ema_rampup_effect",
                        show_config=False)
    data, split = dataset.load(ctx.cfg)
    inputs = transfer_inputs(ctx, data, split)
    evaluator = require_classifier(ctx, "evaluator", data, split)[0]
    public = public_features(ctx, data, split, evaluator)
    cfg = ctx.cfg
    steps, batch = cfg["transfer_steps"], cfg["gan_batch"]
    print(f"prior weight left in the EMA after {steps} steps of {batch}: ramp-up "
          f"{ema_residual(steps, batch, cfg['gan_ema_kimg'], cfg['transfer_ema_rampup']):.2e}, "
          f"fixed half-life {ema_residual(steps, batch, cfg['gan_ema_kimg']):.3f}")
    print(f"{'mode':12s} {'EMA':10s} {'entropy':>8s} {'max share':>9s} {'FID-E pub':>9s} "
          f"{'E private':>9s} {'seconds':>7s}")
    for mode in args.modes:
        for label, changes in (("ramp-up", {}), ("fixed", {"ema_rampup": None})):
            start = time.perf_counter()
            result, _ = require_transfer(ctx, mode, args.seed, inputs, **changes)
            samples = mode_samples(ctx, {(mode, args.seed): result}, inputs.generator.z_dim)
            x = samples[mode, args.seed]
            row = evaluator_row(x, predict_logits(inputs.target, x), evaluator,
                                cfg["private_classes"], public)
            final = result.monitor[-1]
            print(f"{mode:12s} {label:10s} {final['mean_entropy']:8.3f} {final['max_share']:9.2f} "
                  f"{row['fid_e_vs_public']:9.2f} {row['E_private_share']:9.2f} "
                  f"{time.perf_counter() - start:7.0f}", flush=True)
    print(f"transfers in {context.display_path(folder)}")


if __name__ == "__main__":
    main()
