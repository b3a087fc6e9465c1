"""The GMI-style attack's step with glibc's default allocator settings and with the run's.

    .venv/bin/python benchmarks/allocator.py [--steps 30] [--repeats 3]

Each setting in its own process (the allocator's state depends on what the process did before):
the networks of the cpu profile at their real sizes (random weights), one class's 100 codes,
``--steps`` SGD steps of the attack (``lib.attacks.gmi.gmi_attack_parts``, one restart) per
repeat after one warm-up attack. Prints milliseconds and page faults (minor, as
``getrusage`` counts them) per step for each, and the ratio default / reuse. The reference is
glibc's defaults; ``lib.allocator.reuse_freed_memory`` is what every run process sets.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import lib.paths
lib.paths.set_kernel_environment()
from lib.allocator import reuse_freed_memory
from lib.seeding import flush_denormals
flush_denormals()
if {reuse}:
    assert reuse_freed_memory(), "not glibc: nothing to compare"
import torch
from lib import config
from lib.attacks.gmi import gmi_attack_parts
from lib.models import Discriminator, Generator, build_classifier
cfg = dict(config.resolve("cpu", {{}}))
s, k = cfg["image_size"], len(cfg["private_classes"])
torch.manual_seed(0)
G = Generator(cfg["gan_z_dim"], cfg["gan_width"], 1, s)
D = Discriminator(cfg["gan_d_width"], 1, s)
T = build_classifier({{"arch": cfg["target_arch"], "n_classes": k, "width": cfg["target_width"],
                      "in_channels": 1, "kernel_size": 3}})
attack = lambda steps: gmi_attack_parts(G, D, T, k, [0], per_class=cfg["recon_per_class"],
                                        steps=steps, lr=cfg["gmi_lr"], restarts=1,
                                        lambda_id=cfg["gmi_lambda_id"], seed=0)
attack(2)
rows = []
for _ in range({repeats}):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    attack({steps})
    rows.append(((time.perf_counter() - start) / {steps},
                 (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / {steps}))
print(json.dumps(rows))
"""


def measure(reuse: bool, steps: int, repeats: int) -> list[tuple[float, float]]:
    """[(seconds per step, page faults per step)] of each repeat, in a fresh process."""
    code = CHILD.format(root=str(ROOT), reuse=reuse, steps=steps, repeats=repeats)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    return [tuple(row) for row in json.loads(done.stdout.splitlines()[-1])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    medians = {}
    for name, reuse in (("glibc defaults", False), ("reuse (the runs')", True)):
        rows = measure(reuse, args.steps, args.repeats)
        ms = sorted(r[0] * 1000 for r in rows)
        medians[name] = ms[len(ms) // 2]
        print(f"{name:18} ms/step {' '.join(f'{m:6.1f}' for m in ms)}   page faults/step "
              f"{' '.join(f'{r[1]:6.0f}' for r in rows)}")
    default, reuse = medians.values()
    print(f"median step: {default:.1f} ms (defaults) / {reuse:.1f} ms (reuse) = {default / reuse:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
