"""``ddcs-audit`` (``python -m lib.audit``): audit an attack's reconstructions from folders.

    ddcs-audit --members DIR --reconstructions DIR [--nonmembers DIR]
               [--distance lpips-vgg|pixel|perceptual:CHECKPOINT] [--size N] --out DIR

A bad input (or an output folder that cannot be written) is one line on stderr naming the
offending path, exit status 2, nothing written; an unexpected error is one line too (exit 1),
never a traceback. Arguments are checked before torch is imported.
"""
from __future__ import annotations

import argparse
import sys

from .. import audit as package  # light: its API loads on first use (lib/audit/__init__.py)
from ..errors import DdcsMiError
from .arguments import (DEFAULT_MAX_PIXELS, MAX_PERMUTATIONS, MAX_SIZE, check_limits,
                        check_out_apart, check_out_folder)

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1


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
                   help=f"resize every image to N×N (bilinear, antialiased; N ≤ {MAX_SIZE}); "
                        "without it all images must have one size")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (new or empty; outside every input folder)")
    p.add_argument("--permutations", type=int, default=1000, metavar="P",
                   help=f"permutations of the membership test (≤ {MAX_PERMUTATIONS:,}; default "
                        "%(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="PX",
                   help="largest image read, in pixels (default %(default)s); a larger one is "
                        "unusable")
    p.add_argument("--skip-unusable", action="store_true",
                   help="audit the usable images when some entries are unusable (unreadable, "
                        "not an image, a symlink loop, a dangling link, a link leaving the "
                        "folder, too large), listing each in summary.json and here; without "
                        "it they are refused")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the permutations and of the equal-size subsample (default 0)")
    p.add_argument("--memory-mb", type=int, default=1024, metavar="MB",
                   help="bound on the embeddings held at once (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the audit; 0 on success, 2 (message on stderr) on bad input."""
    args = parser().parse_args(argv)
    try:                                       # arguments first, before the heavy imports
        check_limits(args.size, args.permutations, args.max_pixels, args.memory_mb)
        check_out_apart(args.out, [args.members, args.reconstructions, args.nonmembers])
        check_out_folder(args.out)
    except DdcsMiError as err:
        print(f"ddcs-audit: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        import matplotlib

        matplotlib.use("Agg")                  # files only, no display
        result = package.audit(args.members, args.reconstructions, args.nonmembers, args.distance,
                       args.size, n_permutations=args.permutations, seed=args.seed,
                       memory_mb=args.memory_mb, progress=False if args.no_progress else None,
                       skip_unusable=args.skip_unusable, max_pixels=args.max_pixels)
        folder = result.save(args.out)
    except (DdcsMiError, OSError) as err:     # bad input, or a folder that cannot be written
        print(f"ddcs-audit: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("ddcs-audit: error: out of memory; pass a smaller --size or --memory-mb, or audit "
              "fewer images", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:                  # noqa: BLE001 — one line, never a traceback
        print(f"ddcs-audit: unexpected error {type(err).__name__}: {one_line(err)} (please "
              "report it with the command line)", file=sys.stderr)
        return EXIT_UNEXPECTED
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
    for u in s["unusable"]:
        print(f"left out ({u['role']}): {u['path']}: {u['reason']}")
    for role, v in s.get("alpha_dropped", {}).items():
        print(f"note: {v['count']} {role} image(s) had an alpha channel, ignored (see report.md)")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"wrote {', '.join(('audit.csv', 'summary.json', 'most_exposed.png', 'report.md'))} "
          f"to {folder} ({times})")
    return 0


def one_line(err: BaseException) -> str:
    """An error's message on one line (control characters of file names escaped)."""
    text = str(err)
    return "".join(repr(ch)[1:-1] if ch in "\r\n\t" else ch for ch in text)
