"""``ddcs-audit`` (``python -m lib.audit``): audit an attack's reconstructions from folders.

    ddcs-audit --members DIR --reconstructions DIR [--nonmembers DIR]
               [--distance lpips-vgg|pixel|perceptual:CHECKPOINT] [--size N] --out DIR

A bad input (or an output folder that cannot be written) is one line on stderr naming the
offending path, exit status 2, nothing written.
"""
from __future__ import annotations

import argparse
import sys

import matplotlib

from ..errors import DdcsMiError
from .api import audit
from .report import check_out_folder

EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ddcs-audit",
        description="Score which training images (members) an attack's reconstructions expose, "
                    "with DDCS per member and per class, and test members against non-members. "
                    "Folders use the ImageFolder layout: one subfolder per class, the same class "
                    "names in every folder; PNG, JPEG or WebP, grey or colour.",
        epilog="Writes audit.csv (one row per member, most exposed first), summary.json, "
               "most_exposed.png and report.md into --out.")
    p.add_argument("--members", required=True, metavar="DIR",
                   help="the attacked model's training images, DIR/<class>/<image>")
    p.add_argument("--reconstructions", required=True, metavar="DIR",
                   help="the attack's reconstructions, DIR/<class>/<image> (every member class)")
    p.add_argument("--nonmembers", metavar="DIR",
                   help="images of the same classes the model did not train on: adds the "
                        "membership permutation test")
    p.add_argument("--distance", default="lpips-vgg", metavar="NAME",
                   help="lpips-vgg (the paper's; needs `make weights`), pixel (weight-free "
                        "baseline) or perceptual:CHECKPOINT (a classifier checkpoint of this "
                        "repository, e.g. a run's models/perceptual.safetensors); default "
                        "%(default)s")
    p.add_argument("--size", type=int, metavar="N",
                   help="resize every image to N×N (bilinear, antialiased); without it all "
                        "images must have one size")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (new or empty)")
    p.add_argument("--permutations", type=int, default=1000, metavar="P",
                   help="permutations of the membership test (default %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the permutations and of the equal-size subsample (default 0)")
    p.add_argument("--memory-mb", type=int, default=1024, metavar="MB",
                   help="bound on the embeddings held at once (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the audit; 0 on success, 2 (message on stderr) on bad input."""
    args = parser().parse_args(argv)
    matplotlib.use("Agg")                      # files only, no display
    try:
        check_out_folder(args.out)             # refuse before reading anything
        result = audit(args.members, args.reconstructions, args.nonmembers, args.distance,
                       args.size, n_permutations=args.permutations, seed=args.seed,
                       memory_mb=args.memory_mb, progress=False if args.no_progress else None)
        folder = result.save(args.out)
    except (DdcsMiError, OSError) as err:     # bad input, or a folder that cannot be written
        print(f"ddcs-audit: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    s = result.summary
    line = (f"DDCS_best {s['ddcs_best']:.6g}, DDCS_avg {s['ddcs_avg']:.6g}, resilient "
            f"{s['resilient_fraction']:.3f} ({s['n_members']} members, "
            f"{s['n_reconstructions']} reconstructions, distance {s['distance']})")
    if "gap" in s:
        line += f"; gap vs non-members {s['gap']:.6g}, p = {s['p_value']:.4g}"
    print(line)
    skipped = sum(v["count"] for v in s["skipped"].values())
    if skipped:
        print(f"skipped {skipped} non-image file(s) (see report.md)")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"wrote {', '.join(('audit.csv', 'summary.json', 'most_exposed.png', 'report.md'))} "
          f"to {folder} ({times})")
    return 0
