"""A run and its floors timed in turn: each heavy notebook between two measurements of the floors.

    .venv/bin/python benchmarks/run_beside_floors.py [--profile cpu] [--json FILE]

The floors (``benchmarks/stage_floors.py``: the passes a notebook cannot avoid, timed bare)
move with the machine's speed by up to a fifth within forty minutes, as much as the margin a
run is judged by (1.15 × its floors), so floors timed before or after a 43-minute run judge it
by another machine. Here the run is made one notebook at a time (the runner's ``run``, the
later notebooks ``--resume`` the same run folder), and the floors are measured before the
first heavy notebook and after each one: every notebook is set against the mean of the floors
measured just before and just after it, its own minutes. The run folder is a complete run of
the profile (``python -m lib.cli compare <it> results``). Each notebook here waits for its own
kernel to start and import the pipeline (about 3 s; in one run the next kernel starts while a
notebook runs), which counts against the run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import stage_floors  # this folder; it sets the kernels' environment and threads

from lib.run import runner

HEAVY = ("02_classifiers", "03_gan_prior", "04_transfer", "05_attacks", "06_evaluation",
         "07_defense")
"""The notebooks with a floor (the others read, plot and write: their floor is 0)."""


def whole(floors: dict[str, dict[str, float]]) -> float:
    """Seconds of one floor measurement, all notebooks together."""
    return sum(sum(parts.values()) for parts in floors.values())


def measure(profile: str, floors: list) -> None:
    """Append a floor measurement to ``floors`` and print its total."""
    floors.append(stage_floors.floors(profile))
    print(f"floors measured: {whole(floors[-1]):.0f} s", flush=True)


def bracketed_table(seconds: dict[str, float], floors: list[dict[str, dict[str, float]]]
                    ) -> tuple[list[tuple[str, float, float | None, float | None]], float, float]:
    """Rows (notebook, run s, floor before, floor after) in pipeline order and the totals
    (run s, bracketed floor s): ``floors[i]`` is the measurement after the i-th heavy notebook
    (``floors[0]``: before the first); a notebook's floor is the mean of its two."""
    rows, total_floor = [], 0.0
    for name in runner.NOTEBOOKS:
        if name in HEAVY:
            i = HEAVY.index(name)
            before = sum(floors[i][name].values())
            after = sum(floors[i + 1][name].values())
            total_floor += (before + after) / 2
            rows.append((name, seconds[name], before, after))
        else:
            rows.append((name, seconds[name], None, None))
    return rows, sum(seconds.values()), total_floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--json", type=Path, help="also write every floor measurement here")
    args = parser.parse_args()
    light_first = runner.NOTEBOOKS[:runner.NOTEBOOKS.index(HEAVY[0])]
    light_last = runner.NOTEBOOKS[runner.NOTEBOOKS.index(HEAVY[-1]) + 1:]
    code, run_dir = runner.run(args.profile, notebooks=light_first)
    floors: list[dict[str, dict[str, float]]] = []
    measure(args.profile, floors)
    for name in HEAVY:
        code |= runner.run(args.profile, resume=run_dir, notebooks=[name])[0]
        measure(args.profile, floors)
    code |= runner.run(args.profile, resume=run_dir, notebooks=light_last)[0]
    if code:
        print(f"a notebook failed: see {run_dir / 'summary.md'}", file=sys.stderr)
        return 1
    summary = json.loads((run_dir / "summary.json").read_text())
    seconds = {nb["name"]: nb["seconds"] for nb in summary["notebooks"]}
    rows, total_run, total_floor = bracketed_table(seconds, floors)
    print(f"\nrun {run_dir}")
    print(f"{'notebook':16} {'run s':>8} {'floor before':>13} {'floor after':>12} {'ratio':>6}")
    for name, run_s, before, after in rows:
        if before is None:
            print(f"{name:16} {run_s:8.1f} {'-':>13} {'-':>12} {'-':>6}")
        else:
            print(f"{name:16} {run_s:8.1f} {before:13.1f} {after:12.1f} "
                  f"{run_s / ((before + after) / 2):6.2f}")
    each = [whole(f) for f in floors]
    print(f"{'total':16} {total_run:8.1f} {total_floor:26.1f} {total_run / total_floor:6.2f}  "
          f"(each notebook against the mean of the floors measured just before and after it; "
          f"the whole floors, measured {len(floors)} times: {min(each):.0f}–{max(each):.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"run": str(run_dir), "floors": floors,
                                         "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
