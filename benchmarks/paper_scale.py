"""The paper profile's evaluation path at a chosen number of identities, on the CPU: how its
memory, disk and time grow with the number of classes.

Synthetic face-shaped data (3 × size × size images in [-1, 1], one random mean face per
identity plus noise) with the paper's per-identity counts: 27 members D, 3 non-members R, 50
reconstructions and their 50 starting points. The networks have random weights (the numbers
are timing and memory only): d_P is LPIPS-VGG (VGG16's five slices, the lpips package's
per-channel heads) at the image size, E a 3-channel SCNN with one class per identity, the
prior a DCGAN at the image size. Each stage runs in its own process and reports

- ``peak_rss_mb``: the peak resident memory during the stage minus the resident memory after
  imports and after building the data and networks (Linux's VmHWM, reset before the stage).
  The stage processes run with ``MALLOC_MMAP_THRESHOLD_=262144``: glibc then gives every
  buffer above 256 KB its own mapping, returned to the system when freed, so the peak counts
  what the code holds rather than heap fragmentation (at 32 px the networks' buffers are a
  few MB, below glibc's adaptive threshold, and a freed heap is not given back; at the paper's
  sizes they are far above it);
- ``disk_mb``: what the stage wrote (the judge's scored sets: ``scores/``);
- ``seconds``: the stage's wall time.

Stages: ``judge`` (D and R, the reconstructions under d_P and d_E, their starting points under
d_P, stored), ``evaluate`` (every metric of the reconstructions from the stored blocks: DDCS,
the membership tests, FID-E and PRDC, the audit table), ``controls`` (the ``random_generator``
control: 20 candidates per kept image, its set kept in a temporary file as the paper profile's
size makes it — ``spill_mb`` — and scored by the judge from there), ``doses`` (the positive
controls' blends, made a slice at a time, scored, and the dose-response tests; the base set's
blocks come from the judge stage's store).
``--judge in-memory`` runs the judge that holds D's and R's embeddings and
embeds a whole set at once; the default streams class by class.

    python benchmarks/paper_scale.py --identities 50 --size 32 --out runs/scale/n50.json
    python benchmarks/paper_scale.py --identities 200 --size 32 --out runs/scale/n200.json \
        --against runs/scale/n50.json

``--against`` prints each stage's ratio to another result and whether it is within
``--max-ratio`` (1.25: the bound for memory that does not grow with the number of classes).
The result file is rewritten after every stage.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.footprint import folder_mb, reset_peak, rss_mb  # noqa: E402
from lib.metrics.controls import random_generator  # noqa: E402
from lib.metrics.distances import (LPIPSInput, PerceptualDistance, VGGFeatures,  # noqa: E402
                                   lpips_head_weights)
from lib.metrics.evaluate import Judge  # noqa: E402
from lib.metrics.leaks import BLEND_ALPHAS, lazy_blend  # noqa: E402
from lib.metrics.store import ScoreStore  # noqa: E402
from lib.models import ConvClassifier, Generator  # noqa: E402
from lib.stages.evaluation import dose_response  # noqa: E402

PER_IDENTITY = {"D": 27, "R": 3, "recon": 50}
STAGES = ("judge", "evaluate", "controls", "doses")
BATCH = 64                 # the paper profile's batch size
PERMUTATIONS = 100         # the membership tests' null (the profile's 1,000 costs 10× the time)


def make_set(identities: int, per_identity: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``per_identity`` images of every identity (class order), a shared mean face per
    identity plus noise of its own seed."""
    means = torch.rand(identities, 3, size, size, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(identities * per_identity, 3, size, size,
                        generator=torch.Generator().manual_seed(seed))
    images = (means.repeat_interleave(per_identity, 0) * 1.6 - 0.8 + 0.2 * noise).clamp(-1, 1)
    return images, np.repeat(np.arange(identities), per_identity)


def networks(identities: int, size: int):
    torch.manual_seed(0)
    vgg = __import__("torchvision").models.vgg16(weights=None).features
    d_p = PerceptualDistance(VGGFeatures(vgg), lpips_head_weights(),
                             input_transform=LPIPSInput(None), name="LPIPS-VGG")
    evaluator = ConvClassifier("scnn", identities, width=24, in_channels=3).eval()
    prior = Generator(z_dim=128, width=32, channels=3, size=size).eval()
    return d_p, evaluator, prior


def run_stage(stage: str, args) -> dict:
    """One stage in this process (see the module); its figures."""
    n, size, work = args.identities, args.size, Path(args.work)
    d_p, evaluator, prior = networks(n, size)
    x_d, y_d = make_set(n, PER_IDENTITY["D"], size, 1)
    x_r, y_r = make_set(n, PER_IDENTITY["R"], size, 2)
    recon, labels = make_set(n, PER_IDENTITY["recon"], size, 3)
    starts, _ = make_set(n, PER_IDENTITY["recon"], size, 4)
    folder = work / stage
    folder.mkdir(parents=True, exist_ok=True)

    def judge(store_folder: Path) -> Judge:
        return Judge(evaluator, d_p, (x_d, y_d, np.arange(len(y_d))),
                     (x_r, y_r, np.arange(len(y_r))), list(range(n)),
                     n_permutations=PERMUTATIONS, allow_not_computed=True, batch_size=BATCH,
                     store=ScoreStore(store_folder), stream=args.judge == "streaming")

    reset_peak()                         # VmHWM := the resident memory now, then only grows
    baseline = rss_mb("VmHWM")
    start = time.perf_counter()
    facts: dict = {}
    if stage == "judge":
        j = judge(folder / "scores")
        kept = j.scores(recon, labels).nbytes() + j.scores(starts, labels, ("d_P",), small=False).nbytes()
        facts["must_keep_mb"] = kept / 1e6
    elif stage == "evaluate":
        shutil.copytree(work / "judge" / "scores", folder / "scores", dirs_exist_ok=True)
        before = folder_mb(folder)
        ev = judge(folder / "scores").evaluate(recon, labels, starts)
        facts["read_mb"] = before
        facts["ddcs_best_d_P"] = ev.metrics["ddcs_best_d_P"]["value"]
        facts["not_computed"] = sorted(k for k, v in ev.metrics.items() if v["value"] is None)
    elif stage == "controls":
        images, drawn_labels = random_generator(prior, evaluator, list(range(n)),
                                                PER_IDENTITY["recon"], seed=5, batch_size=BATCH,
                                                spill=True)
        facts["kept_images"] = len(images)
        facts["spill_mb"] = images.shape.numel() * 4 / 1e6
        judge(folder / "scores").scores(images, drawn_labels)
    elif stage == "doses":
        shutil.copytree(work / "judge" / "scores", folder / "scores", dirs_exist_ok=True)
        facts["read_mb"] = folder_mb(folder)
        j = judge(folder / "scores")
        rng = np.random.default_rng(6)
        partners = np.array([rng.choice(np.flatnonzero(y_r == c)) for c in y_d])
        leaks = {f"blend α={a}": j.scores(lazy_blend(x_d, lambda lo, hi: x_r[partners[lo:hi]], a),
                                          y_d, ("d_P",), small=False)
                 for a in BLEND_ALPHAS}
        table = dose_response(None, j, {("ppa/vanilla", 0): (recon, labels, starts)}, leaks)
        facts["rows"] = len(table)
    seconds = time.perf_counter() - start
    peak = rss_mb("VmHWM") - baseline
    disk = folder_mb(folder) - facts.get("read_mb", 0.0)
    return {"peak_rss_mb": round(peak, 1), "disk_mb": round(disk, 2),
            "seconds": round(seconds, 1), "baseline_rss_mb": round(baseline, 1), **facts}


def compare(result: dict, other: dict, max_ratio: float) -> list[str]:
    """Each stage's peak memory against another result's, and whether the ratio is within
    ``max_ratio``."""
    lines = []
    for stage, mine in result["stages"].items():
        theirs = other["stages"].get(stage)
        if theirs is None or "peak_rss_mb" not in mine or "peak_rss_mb" not in theirs:
            continue
        ratio = mine["peak_rss_mb"] / max(theirs["peak_rss_mb"], 1.0)
        verdict = "within" if ratio <= max_ratio else "ABOVE"
        lines.append(f"{stage}: peak {mine['peak_rss_mb']:.0f} MB at {result['identities']} "
                     f"identities vs {theirs['peak_rss_mb']:.0f} MB at {other['identities']}: "
                     f"{ratio:.2f}× ({verdict} {max_ratio}×)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, required=True)
    parser.add_argument("--size", type=int, default=32, choices=(32, 64, 112, 128))
    parser.add_argument("--out", required=True, help="result JSON file")
    parser.add_argument("--judge", choices=("streaming", "in-memory"), default="streaming")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--against", help="a result of another size: print the ratios")
    parser.add_argument("--max-ratio", type=float, default=1.25)
    parser.add_argument("--stage", help=argparse.SUPPRESS)       # one stage, in this process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.identities < 5:
        parser.error("--identities must be ≥ 5 (E's Acc@5)")
    if args.stage:
        print(json.dumps(run_stage(args.stage, args)))
        return 0
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; valid: {', '.join(STAGES)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"identities": args.identities, "size": args.size, "judge": args.judge,
              "per_identity": PER_IDENTITY, "batch_size": BATCH, "permutations": PERMUTATIONS,
              "torch_threads": torch.get_num_threads(), "stages": {}}
    work = Path(tempfile.mkdtemp(prefix="paper_scale_"))
    try:
        for stage in stages:
            command = [sys.executable, __file__, "--identities", str(args.identities), "--size",
                       str(args.size), "--out", str(out), "--judge", args.judge, "--stage",
                       stage, "--work", str(work)]
            done = subprocess.run(command, capture_output=True, text=True,
                                  env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "262144"})
            if done.returncode == 0:
                result["stages"][stage] = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
                result["stages"][stage] = {"failed": tail, "exit": done.returncode}
            out.write_text(json.dumps(result, indent=1) + "\n")
            figures = result["stages"][stage]
            print(f"{stage}: " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.against:
        for line in compare(result, json.loads(Path(args.against).read_text()), args.max_ratio):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
