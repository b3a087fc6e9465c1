"""Every command-line entry point of the package: ``python -m lib.cli <command> ...``.

- ``data status|fetch|write-splits``: check Fashion-MNIST (sha256), get it (the one network
  use), or write the committed split files;
- ``faces split --private DIR --public DIR --out FILE``: our split file from your copy of the
  face data (the ``paper`` profile);
- ``weights fetch|check``: the pretrained weights of the ``paper`` profile;
- ``sweep [--profile cpu]``: the committed entropy-weight sweep (its own job: ``make sweep``);
- ``study ngd-damped [--run-dir DIR]``: the committed study of the fourth mode (claim C2d;
  ``make ngd-damped``);
- ``study regimes [--run-dir DIR]``: the committed study of the memorisation regime
  (``make regimes``);
- ``study split-selection [--reference-run DIR]``: the shifted-split candidates measured by
  the criteria docs/protocol.md registered (``make select-split``);
- ``report [--summary FILE]``: markdown tables of a run's summary (default: the published one);
- ``compare A B [--rtol R]``: did two runs (run folders or ``results/``-style folders) give
  the same results? Each difference, then the count; exit 0 when none, 1 otherwise, 2 on bad
  input (``lib.run.compare``);
- ``stage classifiers|gan|transfer|attack|features|all --run-dir DIR``: a heavy stage into a run
  folder, on one process or several (``torchrun --nproc_per_node=4 -m lib.cli stage ...``);
  ``run_all.py --resume DIR`` then runs the notebooks, which load what it wrote.

Each committed job records the commit it ran, whether the tree was dirty, the date and the
time it took.

The notebooks' runner has its own command, ``run_all.py``.
"""
from __future__ import annotations

import sys

from . import paths

# Every command computes as the notebooks do: their kernel environment (the same pinned CPU
# kernels, so a committed sweep or study matches the notebooks), set before torch loads.
paths.set_kernel_environment()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from torch.distributed.elastic.multiprocessing.errors import record  # noqa: E402

from . import config, distributed, weights  # noqa: E402
from .artifacts import atomic_write_json  # noqa: E402
from .data import faces, fashion_mnist  # noqa: E402
from .errors import DdcsMiError, RunnerError  # noqa: E402
from .run import compare, context, findings, report, runner  # noqa: E402
from .run.provenance import git_commit, git_dirty  # noqa: E402
from .stages import damped_study, heavy, regimes, split_selection, sweep_attacks  # noqa: E402
from .stages import transfer as transfer_stage  # noqa: E402


def data_command(action: str) -> int:
    folder = fashion_mnist.fetch() if action == "fetch" else fashion_mnist.find_source_dir()
    data = fashion_mnist.load_fashion_mnist(folder)
    print(f"Fashion-MNIST OK in {folder} (sha256 of the decompressed files verified)")
    if action == "write-splits":
        for path in fashion_mnist.write_splits(data, config.PROFILES.values()):
            print(f"wrote {path.relative_to(paths.repo_root())}")
    return 0


def faces_split_command(args: argparse.Namespace) -> int:
    private = faces.scan(args.private, args.private_layout, args.identity_file)
    public = faces.scan(args.public, args.public_layout)
    same = Path(args.private).resolve() == Path(args.public).resolve()
    sources = {"private": {"root": str(Path(args.private).resolve()),
                           "layout": args.private_layout, "identity_file": args.identity_file},
               "public": {"root": str(Path(args.public).resolve()),
                          "layout": args.public_layout, "identity_file": None}}
    split = faces.make_split(private, public, min_images=args.min_images,
                             n_identities=args.identities, n_attacked=args.attacked,
                             holdout=args.holdout, seed=args.seed, same_dataset=same,
                             sources=sources)
    faces.write_split(split, args.out)
    print(f"{len(split['identities'])} private identities ({len(split['attacked'])} attacked), "
          f"{split['public_count']} public images → {args.out}")
    return 0


def weights_command(action: str) -> int:
    print(weights.fetch() if action == "fetch" else weights.require())
    return 0


def committed_job(args: argparse.Namespace, name: str, job, out: Path) -> dict:
    """Run ``job(ctx)`` in ``--run-dir`` (default: a new run folder) and write its result,
    with its provenance, atomically to ``out``."""
    commit, dirty = git_commit(), git_dirty()   # the code this job runs
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run_dir = args.run_dir or str(runner.new_run_dir(args.profile))
    ctx = context.setup(args.profile, run_dir, args.seed, "auto",
                        dict(getattr(args, "override", None) or []), notebook=name,
                        show_config=False)
    start = time.perf_counter()
    result = job(ctx)
    result.update(profile=args.profile, git_commit=commit, git_dirty=dirty, date=started,
                  seconds=round(time.perf_counter() - start, 1),
                  run_dir=context.display_path(ctx.run_dir))
    atomic_write_json(out, result)
    print(f"written {out} ({result['seconds']:.0f} s)")
    return result


def sweep_command(args: argparse.Namespace) -> int:
    result = committed_job(args, "entropy_sweep",
                           lambda ctx: {**transfer_stage.sweep(
                                            ctx, seed=args.seed,
                                            attack_view=sweep_attacks.attack_view(ctx, args.seed)),
                                        "config": config.transfer_config(ctx.cfg)},
                           Path(args.out))
    for mode, res in result["modes"].items():
        print(f"{mode}: chosen λ_H = {res['chosen']['weight']:g} (authors' units)"
              + (" (every weight collapsed)" if res["chosen"]["all_collapsed"] else ""))
    return 0


def split_selection_command(args: argparse.Namespace) -> int:
    """Measure the shifted-split candidates by the registered criteria; write the results."""
    commit, dirty = git_commit(), git_dirty()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    out: dict = {"criteria_commit": split_selection.CRITERIA_COMMIT,
                 "selection_seeds": split_selection.SELECTION_SEEDS, "candidates": {}}
    given = dict(args.candidate_run)
    unknown = sorted(set(given) - set(split_selection.CANDIDATES))
    if unknown:
        raise RunnerError(f"--candidate-run {unknown}: not a candidate; valid: "
                          + ", ".join(split_selection.CANDIDATES))
    for kind in split_selection.CANDIDATES:
        run_dir = given.get(kind) or str(runner.new_run_dir(args.profile))
        ctx = context.setup(args.profile, run_dir, args.seed,
                            "auto", split_selection.overrides(kind),
                            notebook="split_selection", show_config=False)
        print(f"== {kind}: {context.display_path(ctx.run_dir)}", flush=True)
        measured = split_selection.measure_candidate(ctx)
        out["candidates"][kind] = {**measured, "run_dir": context.display_path(ctx.run_dir)}
    ref = context.setup(args.profile, args.reference_run or str(runner.new_run_dir(args.profile)),
                        args.seed, "auto", {"seeds": split_selection.SELECTION_SEEDS},
                        notebook="split_selection", show_config=False)
    print(f"== {split_selection.REFERENCE} (criterion 4's reference): "
          f"{context.display_path(ref.run_dir)}", flush=True)
    out["reference"] = {"split": split_selection.REFERENCE,
                        "shift": split_selection.reference_shift(ref),
                        "run_dir": context.display_path(ref.run_dir)}
    for kind, cand in out["candidates"].items():
        cand["criteria"] = split_selection.criteria(cand, out["reference"]["shift"])
        print(f"{kind}: " + ", ".join(f"{k} {'pass' if v else 'FAIL'}"
                                      for k, v in cand["criteria"]["checks"].items()))
    out["chosen"] = split_selection.choose(out["candidates"])
    print(f"chosen: {out['chosen'] or 'none (neither candidate passes)'}")
    out.update(profile=args.profile, git_commit=commit, git_dirty=dirty, date=started,
               seconds=round(time.perf_counter() - start, 1))
    atomic_write_json(Path(args.out), split_selection.finite(out))
    print(f"written {args.out}")
    return 0


def study_command(args: argparse.Namespace) -> int:
    if args.name == "split-selection":
        return split_selection_command(args)
    if args.name == "regimes":
        result = committed_job(args, "regimes", regimes.run_study, regimes.results_file())
        for r in result["regimes"]:
            print(f"{r['per_class']} per class: T {r['target']['epochs']} epochs, train/test "
                  f"{r['target']['train_acc']:.2f}/{r['target']['test_acc']:.2f}; C1b "
                  f"{'PASS' if r['C1b']['passed'] else 'FAIL'}, C1c "
                  f"{'PASS' if r['C1c']['passed'] else 'FAIL'}")
        return 0
    result = committed_job(args, "ngd_damped_study", damped_study.run_study,
                           damped_study.study_file())
    print(f"C2d {'PASS' if result['claim']['passed'] else 'FAIL'}: {result['claim']['measured']}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    if args.findings:
        print(f"{findings.BEGIN}\n{findings.published()}\n{findings.END}")
    elif args.deviations:
        print(report.deviations_table())
        print(f"\nDifferences from the authors' code:\n\n{report.code_differences_table()}")
    else:
        print(report.report(json.loads(Path(args.summary).read_text())))
    return 0


def run_settings(args: argparse.Namespace) -> tuple[str, dict, int]:
    """(profile, overrides, master seed) of the stage's run folder: its runner state when it
    has one (``--profile`` and ``-o`` must then agree), else the arguments."""
    overrides = dict(args.override)
    if not (Path(args.run) / runner.STATE).is_file():
        return args.profile or "cpu", overrides, args.master_seed
    saved = runner.resume_settings(args.run)
    if ((args.profile or saved["profile"]) != saved["profile"]
            or {**saved["overrides"], **overrides} != saved["overrides"]):
        raise RunnerError(f"{args.run} was started with profile {saved['profile']!r} and "
                          f"overrides {saved['overrides']}; run its stages with the same ones")
    return saved["profile"], saved["overrides"], saved.get("seed", 0)


def _terminate(signum, frame) -> None:
    """SIGTERM (torchrun stopping the other ranks when one fails) as an exit, so that a file
    being written is removed, never left half-written."""
    raise SystemExit(128 + signum)


@record
def stage_command(args: argparse.Namespace) -> int:
    """A heavy stage into ``--run-dir`` on this process and any others torchrun started with it."""
    signal.signal(signal.SIGTERM, _terminate)
    profile, overrides, seed = run_settings(args)
    cfg = config.resolve(profile, overrides)
    world = distributed.init(context.resolve_device(args.device, cfg))
    try:
        state = Path(args.run) / runner.STATE
        if world.main and not state.is_file():          # a folder run_all.py can resume
            state.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(state, {"profile": profile, "overrides": overrides, "seed": seed,
                                      "device": args.device, "notebooks": {}})
        world.barrier()
        ctx = context.setup(profile, args.run, seed, args.device, overrides,
                            notebook=f"stage_{args.stage}", show_config=False)
        rows = heavy.run(args.stage, ctx, world, attacks=args.attack, modes=args.mode,
                         seeds=args.seed)
        if world.main and args.timings:
            atomic_write_json(Path(args.timings), rows)
        if world.main:
            print(f"stage {args.stage}: done in {context.display_path(ctx.run_dir)} "
                  f"({sum(r['seconds'] for r in rows):.1f} s on {world.size} process"
                  f"{'es' if world.distributed else ''}); the notebooks: "
                  f"python run_all.py --resume {args.run}", flush=True)
    except BaseException as err:
        if world.distributed:
            print(f"error on rank {world.rank} of {world.size}: {type(err).__name__}: {err}",
                  file=sys.stderr, flush=True)
        raise
    distributed.shutdown(world)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.cli", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="Fashion-MNIST: check, get, or write the split files")
    d.add_argument("action", choices=["status", "fetch", "write-splits"])
    f = sub.add_parser("faces", help="the face data of the paper profile")
    fsub = f.add_subparsers(dest="action", required=True)
    s = fsub.add_parser("split", help="write our split file from your copy of the face data")
    s.add_argument("--private", required=True)
    s.add_argument("--private-layout", default="folders", choices=faces.LAYOUTS[:2])
    s.add_argument("--identity-file", default=None)
    s.add_argument("--public", required=True)
    s.add_argument("--public-layout", default="flat", choices=faces.LAYOUTS)
    s.add_argument("--min-images", type=int, default=30)
    s.add_argument("--identities", type=int, default=1000)
    s.add_argument("--attacked", type=int, default=200)
    s.add_argument("--holdout", type=int, default=3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    w = sub.add_parser("weights", help="pretrained weights of the paper profile")
    w.add_argument("action", choices=["fetch", "check"])
    sw = sub.add_parser("sweep", help="the entropy-weight sweep (its own job; commit its output)")
    sw.add_argument("--profile", default="cpu")
    sw.add_argument("--run-dir", default="", help="reuse this run folder's models (default: new)")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--out", default=str(transfer_stage.sweep_file()))
    sw.add_argument("--override", "-o", action="append", default=[], type=runner.parse_override,
                    metavar="KEY=VALUE", help="a profile override (the contrast's sweep: "
                                              "-o split=same-class)")
    st = sub.add_parser("study", help="a committed study (commit its output)")
    st.add_argument("name", choices=["ngd-damped", "regimes", "split-selection"])
    st.add_argument("--reference-run", default="",
                    help="split-selection: a same-class cpu run folder whose T, E, P and prior "
                         "criterion 4 reuses (default: trained in a new folder)")
    st.add_argument("--out", default=str(paths.results_dir() / "split_selection.json"),
                    help="split-selection: where its measurements go")
    st.add_argument("--candidate-run", action="append", default=[], type=runner.parse_override,
                    metavar="KIND=DIR", help="split-selection: continue this candidate in DIR "
                                             "(its finished artefacts are reused)")
    st.add_argument("--profile", default="cpu")
    st.add_argument("--run-dir", default="", help="reuse this run folder's artefacts (default: "
                                                  "a new run folder)")
    st.add_argument("--seed", type=int, default=0)
    rp = sub.add_parser("report", help="markdown tables of a run's summary.json")
    rp.add_argument("--summary", default=str(paths.results_dir() / "summary.json"))
    rp.add_argument("--findings", action="store_true",
                    help="print the README's findings, generated from results/ (every "
                         "summary.json there and the committed studies)")
    rp.add_argument("--deviations", action="store_true",
                    help="print docs/protocol.md's deviations from the paper and differences "
                         "from the authors' code (from lib.paper)")
    cp = sub.add_parser("compare", help="did two runs give the same results? (exit 0: yes)")
    cp.add_argument("a", help="a run folder (runs/<folder>) or a results folder (results/)")
    cp.add_argument("b", help="the other one")
    cp.add_argument("--rtol", type=float, default=1e-6,
                    help="numbers match when |a - b| <= rtol * max(|a|, |b|) (default 1e-6)")
    sg = sub.add_parser("stage", help="a heavy stage into a run folder (torchrun can launch it)")
    sg.add_argument("stage", choices=heavy.STAGES)
    sg.add_argument("--run-dir", required=True, dest="run",
                    help="the run folder (made when it does not exist; then: python run_all.py "
                         "--resume DIR). Not --run: torchrun would take it for its --run-path")
    sg.add_argument("--profile", default=None, help="a new folder's profile (default: cpu)")
    sg.add_argument("--override", "-o", action="append", default=[], type=runner.parse_override,
                    metavar="KEY=VALUE", help="a new folder's profile override (JSON value)")
    sg.add_argument("--master-seed", type=int, default=0, help="a new folder's master seed")
    sg.add_argument("--device", default="auto", help="auto | cpu | cuda")
    sg.add_argument("--attack", nargs="+", default=None, help="attack stage: these attacks")
    sg.add_argument("--mode", nargs="+", default=None, help="transfer/attack: these modes")
    sg.add_argument("--seed", type=int, nargs="+", default=None,
                    help="transfer/attack: these repetitions (default: every one)")
    sg.add_argument("--timings", default="", help="write each artefact's seconds here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "data":
            return data_command(args.action)
        if args.command == "faces":
            return faces_split_command(args)
        if args.command == "weights":
            return weights_command(args.action)
        if args.command == "study":
            return study_command(args)
        if args.command == "report":
            return report_command(args)
        if args.command == "stage":
            return stage_command(args)
        if args.command == "compare":
            try:
                return compare.main(args.a, args.b, args.rtol)
            except DdcsMiError as err:          # a folder that is neither: bad input
                print(f"error: {err}", file=sys.stderr)
                return 2
        return sweep_command(args)
    except DdcsMiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
