"""Where a run's time goes: every notebook profiled with cProfile, its top entries printed.

    .venv/bin/python benchmarks/profile_run.py --profile cpu            # a full run, profiled
    .venv/bin/python benchmarks/profile_run.py --report runs/<folder>/profile   # print only

Runs ``run_all.py`` with ``DDCS_MI_CPROFILE`` set (each notebook kernel writes
``<run>/profile/<notebook>.prof``; results are unchanged, wall times grow by cProfile's
overhead), then prints per notebook its profiled seconds and the top entries by own time and by
cumulative time in ``lib/``. The per-stage floors beside these profiles are in
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def short(func: tuple[str, int, str]) -> str:
    """``lib/x.py:12(name)`` or ``{built-in}``: repository paths relative, others by file name."""
    file, line, name = func
    path = Path(file)
    try:
        file = path.resolve().relative_to(ROOT).as_posix()
    except (ValueError, OSError):
        file = path.name if file.startswith("/") else file
    return f"{file}:{line}({name})" if line else f"{file}({name})"


def report(prof: Path, top: int) -> None:
    stats = pstats.Stats(str(prof))
    entries = stats.stats  # {func: (cc, nc, tottime, cumtime, callers)}
    total = stats.total_tt
    print(f"\n== {prof.stem}: {total:.1f} s profiled")
    print(f"   own time (top {top}):")
    for func, (_, calls, own, cum, _) in sorted(entries.items(), key=lambda e: -e[1][2])[:top]:
        print(f"   {own:8.1f} s {100 * own / total:5.1f}%  {calls:>9} calls  {short(func)}")
    print(f"   cumulative, lib/ only (top {top}):")
    lib = [(f, v) for f, v in entries.items() if short(f).startswith("lib/")]
    for func, (_, calls, own, cum, _) in sorted(lib, key=lambda e: -e[1][3])[:top]:
        print(f"   {cum:8.1f} s {100 * cum / total:5.1f}%  {calls:>9} calls  {short(func)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="the runner's profile")
    parser.add_argument("--report", type=Path, help="only print the .prof files of this folder")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("runner_args", nargs="*", help="more run_all.py arguments (after --)")
    args = parser.parse_args()
    folder = args.report
    if folder is None:
        folder = ROOT / "runs" / f"profile_{args.profile}"
        env = {**os.environ, "DDCS_MI_CPROFILE": str(folder)}
        code = subprocess.call([sys.executable, str(ROOT / "run_all.py"), "--profile",
                                args.profile, *args.runner_args], env=env, cwd=ROOT)
        if code:
            print(f"run_all.py exited {code}; the profiles written so far follow")
    files = sorted(Path(folder).glob("*.prof"))
    if not files:
        print(f"no .prof files in {folder}")
        return 1
    for prof in files:
        report(prof, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
