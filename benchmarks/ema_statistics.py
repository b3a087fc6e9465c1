"""Does the EMA generator's batch-norm statistics matter? FID-E of each saved generator as it
is, and with standing statistics recomputed from its own activations.

Before the fix, ``update_ema`` averaged the generator's weights but copied the current
weights' running statistics into the EMA generator, so the averaged weights ran with another
network's statistics. On a run made before the fix this script shows what that cost; on a run
made after it, the two columns agree (the saved generators already carry standing statistics).

    python benchmarks/ema_statistics.py runs/<folder> [--seed 0]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.config import MODES  # noqa: E402
from lib.data import dataset  # noqa: E402
from lib.inference import embed, generate  # noqa: E402
from lib.metrics.fidelity import frechet_distance  # noqa: E402
from lib.run import context, runner  # noqa: E402
from lib.stages.classifiers import require_classifier  # noqa: E402
from lib.stages.gan import gan_from, require_gan  # noqa: E402
from lib.stages.transfer import public_features, transfer_file  # noqa: E402
from lib.training import standing_statistics  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--seed", type=int, default=0, help="the transfer repetition")
    args = parser.parse_args(argv)
    saved = runner.resume_settings(args.run_dir)
    ctx = context.setup(saved["profile"], args.run_dir, saved.get("seed", 0), "cpu",
                        saved["overrides"], notebook="ema_statistics", show_config=False)
    data, split = dataset.load(ctx.cfg)
    evaluator = require_classifier(ctx, "evaluator", data, split)[0]
    public = public_features(ctx, data, split, evaluator)
    z = torch.randn(ctx.cfg["fid_samples"], ctx.cfg["gan_z_dim"],
                    generator=torch.Generator().manual_seed(ctx.subseed("eval")))
    generators = {"prior": require_gan(ctx, data, split)[1]}
    for mode in MODES:      # as saved, whatever config made them (a run from before the fix)
        rel = transfer_file(mode, args.seed)
        if ctx.exists(rel):
            generators[mode] = gan_from(*ctx.load_tensors(rel))[1]
    print(f"FID-E vs public ({len(z)} samples at fixed codes; {len(public)} public images)")
    print(f"{'generator':12s} {'as saved':>9s} {'standing':>9s}   standing statistics took")
    for name, G in generators.items():
        fid_saved = frechet_distance(embed(evaluator, generate(G, z)), public)
        start = time.perf_counter()
        G_own = standing_statistics(copy.deepcopy(G), seed=0)
        seconds = time.perf_counter() - start
        fid_own = frechet_distance(embed(evaluator, generate(G_own, z)), public)
        print(f"{name:12s} {fid_saved:9.3f} {fid_own:9.3f}   {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
