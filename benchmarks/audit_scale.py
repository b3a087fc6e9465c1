"""The audit at Fashion-MNIST scale: 60,000 members, 10,000 reconstructions, from PNG folders.

The 60,000 train images are written as members and the 10,000 test images as
"reconstructions" (PNG, ImageFolder layout) into a temporary folder; then the audit
(``lib.audit.audit`` + ``save``, what ``ddcs-audit`` runs) is timed per phase — reading,
embedding, distances, report — under ``pixel`` and ``perceptual:`` (d_P on a P checkpoint), each
in a fresh child process so that its peak memory (``resource.getrusage`` maxrss) is its own.
Goal: under 3 minutes and 4 GB each on 2 CPU cores.

The P checkpoint: ``--checkpoint PATH`` if given; else the smoke run's P
(``runs/interactive/smoke/models/perceptual.safetensors``, made by ``make smoke`` or the
notebooks) if present; else a P of the pipeline's architecture (mcnn, width 32) trained here for
one epoch on 1,000 images (a few seconds; speed and memory do not depend on the weights).
Run: .venv/bin/python benchmarks/audit_scale.py [--checkpoint PATH] [--folders DIR]
(``--folders``: write the PNG folders there once and reuse them; deleting 70,000 files from a
temporary folder took minutes on a busy machine.)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMOKE_P = Path("runs/interactive/smoke/models/perceptual.safetensors")


def child(distance: str, members: str, recons: str, out: str) -> None:
    """One audit in this process; prints its timings and peak memory as JSON."""
    import matplotlib

    matplotlib.use("Agg")
    from lib.audit import audit

    t0 = time.perf_counter()
    result = audit(members, recons, distance=distance, progress=False)
    result.save(out)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"timings": result.timings, "wall_s": wall, "peak_mb": peak_mb,
                      "ddcs_best": result.summary["ddcs_best"],
                      "resilient_fraction": result.summary["resilient_fraction"]}))


def write_folders(root: Path) -> tuple[Path, Path, float]:
    """The train split as members, the test split as reconstructions; (members, recons, s)."""
    from lib.audit.example import write_png_folder
    from lib.data.fashion_mnist import class_slug, load_fashion_mnist

    data = load_fashion_mnist()
    names = [class_slug(c) for c in range(10)]
    t0 = time.perf_counter()
    write_png_folder(root / "members", data.train_images, data.train_labels.numpy(), names,
                     [f"train-{i}" for i in range(len(data.train_images))])
    write_png_folder(root / "recons", data.test_images, data.test_labels.numpy(), names,
                     [f"test-{i}" for i in range(len(data.test_images))])
    return root / "members", root / "recons", time.perf_counter() - t0


def checkpoint(given: str | None, root: Path) -> tuple[Path, str]:
    """The P checkpoint to use and where it came from."""
    from lib import paths

    if given:
        return Path(given), "given on the command line"
    smoke = paths.repo_root() / SMOKE_P
    if smoke.is_file():
        return smoke, f"the smoke run's P ({SMOKE_P})"
    from lib.audit.example import tiny_checkpoint
    from lib.data.fashion_mnist import load_fashion_mnist

    path = tiny_checkpoint(root / "perceptual.safetensors", load_fashion_mnist(), n=1000,
                           width=32)
    return path, "a P (mcnn, width 32) trained here on 1,000 images for one epoch"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a P checkpoint (a run folder's models/perceptual.safetensors)")
    p.add_argument("--folders", help="keep the PNG folders here (reused when present) instead of a "
                                     "temporary folder, whose removal can take minutes")
    p.add_argument("--child", nargs=4, metavar=("DISTANCE", "MEMBERS", "RECONS", "OUT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audit_scale_") as tmp:
        root = Path(args.folders) if args.folders else Path(tmp)
        if (root / "members").is_dir() and (root / "recons").is_dir():
            members, recons = root / "members", root / "recons"
            print(f"reusing the PNG folders in {root}")
        else:
            members, recons, write_s = write_folders(root)
            print(f"wrote 60,000 member and 10,000 reconstruction PNGs in {write_s:.1f} s")
        ckpt, origin = checkpoint(args.checkpoint, Path(tmp))
        print(f"P checkpoint: {origin}")
        rows = []
        for distance in ("pixel", f"perceptual:{ckpt}"):
            out = Path(tmp) / f"out_{distance.split(':')[0]}"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "--child", distance, str(members),
                                   str(recons), str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            rows.append((distance.split(":")[0], json.loads(done.stdout.strip().splitlines()[-1])))
            rows[-1][1]["process_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    print(f"removed the temporary folders in {time.perf_counter() - t0:.1f} s")
    print(f"\n{'distance':<11} {'reading':>8} {'embedding':>9} {'distances':>9} {'report':>7} "
          f"{'total':>7} {'process':>7} {'peak MB':>8}  DDCS_best  resilient")
    for name, r in rows:
        t = r["timings"]
        print(f"{name:<11} {t.get('reading', 0):8.1f} {t.get('embedding', 0):9.1f} "
              f"{t.get('distances', 0):9.1f} {t.get('report', 0):7.1f} {r['wall_s']:7.1f} "
              f"{r['process_s']:7.1f} "
              f"{r['peak_mb']:8.0f}  {r['ddcs_best']:9.4g}  {r['resilient_fraction']:.3f}")
    print(f"benchmark wall time, all included: {time.perf_counter() - start:.0f} s")
    ok = all(r["wall_s"] < 180 and r["peak_mb"] < 4096 for _, r in rows)
    print("(seconds; total: audit + save in the child; process: the child from start to exit, "
          "imports included)")
    print(f"\ngoal (each < 180 s and < 4096 MB on 2 cores): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
