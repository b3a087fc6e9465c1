"""The pipeline's stages through lib, timed on whatever device is present (a GPU when lent).

Two parts, each in a fresh run folder under ``--out``:

- ``fashion``: the ``cpu`` profile on Fashion-MNIST (the files carried with the tree) with
  reduced counts: T, E and P training, GAN pretraining, the natural-gradient metric, the
  three transfer modes, the PPA attack and the evaluation (DDCS and every metric).
- ``faces``: the ``paper`` profile on a generated stand-in image folder at 112 px (no real
  faces; ``lib.data.faces.write_standin``), through the same code as real face data: the split
  command, the image cache, a VGG16-BN target with the paper's head and focal loss (bf16
  autocast and channels-last on a GPU), a ResNet-50 evaluator, a 112-px DCGAN, transfer,
  PPA at the paper's per-class counts, evaluation. P is a ResNet-18 trained on the stand-in's
  public identities, because LPIPS-VGG's ImageNet weights cannot travel; an LPIPS-VGG-shaped
  distance (VGG16 at 256 px, random weights: timing only) is timed on its own.

- ``lpips``: LPIPS-VGG at the paper profile's size (VGG16's five slices at 256 px with the
  lpips heads, random weights: timing only), as the judge embeds with it and as the
  natural-gradient metric differentiates it twice (Hessian-vector products).
- ``inception``: Inception-v3's pool3 features at 299 px (the FID network; random weights).

For every stage: the device it ran on, wall seconds, throughput (images/s: training images ×
epochs, generated images × steps, or attacked latents × steps), the GPU's peak allocation, the
peak host memory it added and what its run folder gained on disk, appended to
``<out>/gpu_check.json`` as soon as the stage ends. Each part runs in its own process, cut at
``--part-s`` (240 s): a part cut short keeps the stages it finished, and the same command
continues it (every stage reuses what its run folder holds). A part is not started when less
than ``--part-s`` is left of ``--command-s`` (the limit of one command on the GPU machine);
the next command starts there.

The last lines extrapolate the faces stages (and the LPIPS-VGG and Inception timings) to the
paper profile's counts (``profile_work``: 200 identities, 27 training images and 3 held out
each, the profile's epochs, steps, seeds and attacks; every assumption printed) and answer
go / no-go: the whole profile within ``--budget-s`` of GPU time, and every stage's largest
piece that cannot be cut (a class of an attack or of the judge, one reference code of the
metric; training saves its state every ``checkpoint_every_s``) within ``--command-s``. On a
machine without a GPU the check says "not run on a GPU" after its CPU parts and exits 0.

``--scaling N`` (``gpu_check.sh`` runs it when several GPUs are visible) runs the heavy stages
as the ``stage`` commands do, in two fresh run folders: once in one process, once under
``torchrun --nproc_per_node=N``, and reports each stage's seconds on both and the ratio (the
throughput on N processes against one). On a machine with fewer than two GPUs it runs N = 2
gloo processes on the CPU at tiny counts: a smoke of the plumbing, labelled so, not a speed-up.
Counts are small so the whole check fits a short GPU lease; throughput, not the counts, is
what compares across machines (``--counts cpu``: the same shapes with fewer steps for 2 CPU
cores; ``--counts tiny`` is the test-sized run). The collapse monitor runs only at the start and
the end of each transfer (64 samples), so transfer throughput is the fine-tuning's own.

    python benchmarks/gpu_check.py --out runs/gpu_check [--device auto] \
        [--parts fashion,faces,lpips,inception] [--budget-s 900] [--command-s 600] [--part-s 240]
    python benchmarks/gpu_check.py --out runs/gpu_check/scaling --scaling 4 [--parts fashion]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DDCS_MI_HEADLESS", "1")

from benchmarks.footprint import Footprint  # noqa: E402

from lib import cli  # noqa: E402
from lib.config import MODES, resolve  # noqa: E402
from lib.data import dataset, faces  # noqa: E402
from lib.run import context  # noqa: E402
from lib.stages import transfer  # noqa: E402
from lib.stages.attacks import require_attack  # noqa: E402
from lib.stages.classifiers import require_classifier  # noqa: E402
from lib.stages.evaluation import build_judge  # noqa: E402
from lib.stages.gan import require_gan  # noqa: E402

COUNTS = {
    # reduced counts: the shapes (batch, image size, networks) are the profiles'
    "check": {
        "fashion": {"seeds": [0], "target_epochs": 20, "eval_epochs": 2, "perc_epochs": 1,
                    "gan_steps": 400, "transfer_steps": 60, "attack_steps": 30,
                    "checkpoint_every_s": 60, "monitor_samples": 64, "monitor_every": 1000},
        "faces": {"standin": (50, 24, 50, 24), "monitor_samples": 64, "monitor_every": 1000, "private_classes": list(range(50)),
                  "target_epochs": 3, "eval_epochs": 2, "perc_epochs": 1, "gan_steps": 200,
                  "transfer_steps": 40, "attack_steps": 20, "attack_pool": 2000,
                  "attack_candidates": 60, "recon_per_class": 20, "attack_final_aug": 20,
                  "n_permutations": 200, "seeds": [0], "checkpoint_every_s": 60},
    },
    "tiny": {
        "fashion": {"seeds": [0], "private_per_class": 20, "target_epochs": 1,
                    "eval_epochs": 1, "eval_train_limit": 1000, "perc_epochs": 1,
                    "perc_train_limit": 1000, "gan_steps": 10, "gan_train_limit": 1000,
                    "gan_width": 8, "gan_d_width": 8, "transfer_steps": 3, "ngd_rank": 2,
                    "ngd_codes": 2, "monitor_samples": 32, "monitor_every": 2,
                    "attack_pool": 100, "attack_candidates": 4, "recon_per_class": 4,
                    "attack_steps": 2, "attack_final_aug": 2, "n_permutations": 20,
                    "prdc_k": 1, "checkpoint_every_s": 0},
        "faces": {"standin": (6, 8, 4, 8), "private_classes": list(range(6)),
                  "image_size": 56, "target_epochs": 1, "eval_epochs": 1, "eval_arch": "resnet18",
                  "perc_epochs": 1, "gan_steps": 4, "gan_width": 4, "gan_d_width": 4,
                  "gan_z_dim": 16, "gan_batch": 8, "batch_size": 8, "transfer_steps": 2,
                  "ngd_rank": 2, "ngd_codes": 2, "monitor_samples": 16, "monitor_every": 1,
                  "attack_pool": 40, "attack_candidates": 4, "recon_per_class": 4,
                  "attack_steps": 2, "attack_final_aug": 2, "n_permutations": 20,
                  "prdc_k": 1, "seeds": [0], "checkpoint_every_s": 0, "perc_arch": "mcnn"},
    },
}
for name, lp, inc in (("check", {"images": 256, "hvps": 20}, {"images": 1024}),
                      ("tiny", {"images": 2, "hvps": 1}, {"images": 4})):
    COUNTS[name]["lpips"] = {"size": 112, **lp}
    COUNTS[name]["inception"] = {"size": 112, **inc}
# the CPU comparison: the shapes of "check" (the same networks, image sizes and batches) with
# fewer images and steps, so that 2 cores finish; its throughput compares with the GPU's
COUNTS["cpu"] = {
    "fashion": {**COUNTS["check"]["fashion"], "target_epochs": 4, "eval_epochs": 1,
                "eval_train_limit": 8000, "perc_train_limit": 8000, "gan_steps": 100,
                "transfer_steps": 10, "attack_steps": 10, "attack_pool": 1000},
    "faces": {**COUNTS["check"]["faces"], "standin": (10, 12, 10, 12),
              "private_classes": list(range(10)), "target_epochs": 1, "eval_epochs": 1,
              "gan_steps": 10, "transfer_steps": 3, "ngd_codes": 4, "ngd_rank": 4,
              "attack_steps": 3, "attack_pool": 200, "attack_candidates": 10,
              "recon_per_class": 10, "attack_final_aug": 4},
    "lpips": {"size": 112, "images": 16, "hvps": 2},
    "inception": {"size": 112, "images": 64},
}


PARTS = ("fashion", "faces", "lpips", "inception")


def device_label(device: str) -> str:
    """The device a timing ran on, in words."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


class Timer:
    """Wall time of stages (the GPU synchronised at both ends), their throughput and
    footprint; every row appended to ``record`` (a JSON file) as soon as the stage ends."""

    def __init__(self, device: str, record: Path | None = None, folder: Path | None = None) -> None:
        self.device, self.rows, self.record, self.folder = device, [], record, folder

    def __call__(self, part: str, stage: str, fn, images=0.0, unit: str = "images"):
        """Run ``fn``; ``images``: the work done, or a function of ``fn``'s result giving it."""
        with Footprint(self.device, self.folder) as footprint:
            start = time.perf_counter()
            out = fn()
        seconds = time.perf_counter() - start
        images = images(out) if callable(images) else images
        row = {"part": part, "stage": stage, "device": device_label(self.device),
               "seconds": round(seconds, 3), "work": images, "unit": unit,
               "per_second": round(images / seconds, 3) if images else None,
               **footprint.figures()}
        self.rows.append(row)
        if self.record is not None:
            append_rows(self.record, [row])
        rate = f"{row['per_second']:>10.1f} {unit}/s" if images else ""
        gpu = f" gpu {row['gpu_peak_mb']:.0f} MB" if row["gpu_peak_mb"] is not None else ""
        print(f"{part:9s} {stage:40s} {seconds:9.2f} s {rate} host +{row['host_peak_mb']:.0f} MB"
              f"{gpu} disk +{row['disk_mb']:.1f} MB", flush=True)
        return out


def read_record(record: Path) -> dict:
    return json.loads(record.read_text()) if record.is_file() else {"info": {}, "stages": [],
                                                                    "parts": {}}


def append_rows(record: Path, rows: list[dict], parts: dict | None = None,
                verdict: str | None = None) -> None:
    """Add ``rows`` (and the parts' states, the verdict) to the JSON ``record``, rewritten
    whole."""
    report = read_record(record)
    report["stages"] += rows
    report["parts"].update(parts or {})
    if verdict is not None:
        report["verdict"] = verdict
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(record)


def run_stages(ctx, timer: Timer, part: str) -> None:
    """Every expensive stage of one run folder, in pipeline order, through lib."""
    cfg = ctx.cfg
    data, split = timer(part, "data + split", lambda: dataset.load(cfg))
    for role, key in (("target", "target"), ("evaluator", "eval"), ("perceptual", "perc")):
        if cfg[f"{key}_arch"] == "lpips-vgg":
            continue
        timer(part, f"train {role} ({cfg[f'{key}_arch']})",
              lambda role=role: require_classifier(ctx, role, data, split),
              lambda out, key=key: len(out[1]) * cfg[f"{key}_epochs"])
    timer(part, "GAN prior", lambda: require_gan(ctx, data, split),
          cfg["gan_steps"] * cfg["gan_batch"])
    inputs = transfer.transfer_inputs(ctx, data, split)
    timer(part, "natural-gradient metric", lambda: transfer.require_metric(ctx, 0, inputs),
          cfg["ngd_codes"], "reference codes")
    for mode in MODES:
        timer(part, f"transfer {mode}", lambda mode=mode: transfer.require_transfer(
            ctx, mode, 0, inputs), cfg["transfer_steps"] * cfg["gan_batch"])
    n_classes = len(cfg["private_classes"])
    run, _ = timer(part, "attack ppa (entropy+ngd)", lambda: require_attack(
        ctx, "ppa", "entropy+ngd", 0, inputs, inputs.target),
        n_classes * cfg["attack_candidates"] * cfg["attack_steps"], "latent steps")
    evaluator = require_classifier(ctx, "evaluator", data, split)[0]
    judge = timer(part, "judge (features of D, R)",
                  lambda: build_judge(ctx, data, split, evaluator, inputs.distance),
                  len(split.private) + len(split.reference))
    timer(part, "evaluate (all metrics)", lambda: judge.evaluate(run.images, run.original_labels),
          len(run.images), "reconstructions")


def lpips_timing(timer: Timer, device: str, size: int, n: int, hvps: int) -> None:
    """LPIPS-VGG as the paper profile runs it (VGG16's five slices at 256 px with the lpips
    heads, random weights: timing only): ``n`` images of ``size`` px embedded (the judge), and
    ``hvps`` Hessian-vector products at one image (the natural-gradient metric)."""
    import torchvision

    from lib.metrics.distances import (LPIPSInput, PerceptualDistance, VGGFeatures,
                                       lpips_head_weights)
    from lib.ngd import hessian_vector_product

    torch.manual_seed(0)
    distance = PerceptualDistance(VGGFeatures(torchvision.models.vgg16(weights=None).features),
                                  lpips_head_weights(), input_transform=LPIPSInput(256),
                                  name="LPIPS-VGG").to(device)
    images = torch.rand(n, 3, size, size) * 2 - 1
    timer("lpips", "LPIPS-VGG embed (judge)", lambda: distance.embed_batched(images, 64, device), n)
    hvp = hessian_vector_product(distance, images[:1].to(device))
    vector = torch.randn(images[0].numel(), device=device)
    timer("lpips", "LPIPS-VGG Hessian-vector product", lambda: [hvp(vector) for _ in range(hvps)],
          hvps, "HVPs")


def inception_timing(timer: Timer, device: str, size: int, n: int) -> None:
    """``lib.metrics.inception.InceptionPool3`` (the FID network; random weights: timing
    only) on ``n`` images of ``size`` px, resized to 299 px as the metric does."""
    import torchvision

    from lib.inference import apply
    from lib.metrics.inception import InceptionPool3

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                          transform_input=False)
    net.fc = torch.nn.Identity()
    images = torch.rand(n, 3, size, size) * 2 - 1
    timer("inception", "Inception pool3 (FID)", lambda: apply(InceptionPool3(net), images, 64,
                                                              device), n)


def face_settings(timer: Timer, out: Path, counts: dict) -> dict:
    """The ``paper`` profile's overrides on a generated stand-in face folder (written now)."""
    over = dict(counts["faces"])
    ids, per, pub_ids, per_pub = over.pop("standin")
    size = over.get("image_size", 112)
    private, public = timer("faces", "write stand-in folder", lambda: faces.write_standin(
        out / "standin", ids, per, pub_ids, per_pub, size=size), ids * per + pub_ids * per_pub)
    split_path = out / "standin" / "split.json"
    cli.main(["faces", "split", "--private", str(private), "--public", str(public),
              "--public-layout", "folders", "--min-images", str(min(per, 30)),
              "--identities", str(ids), "--attacked", str(ids), "--out", str(split_path)])
    return {"perc_arch": "resnet18", **over, "face_split": str(split_path),
            "fid_network": "evaluator"}


SCALING_LABEL = {
    "cuda": "multi-GPU: {n} processes (one GPU each, NCCL) against one process on one GPU",
    "cpu": "CPU plumbing smoke: {n} gloo processes on the CPU against one process, tiny "
           "counts; it checks the multi-process path runs, it is not a multi-GPU figure",
}


def stage_seconds(folder: Path, profile: str, overrides: dict, device: str,
                  processes: int) -> list[dict]:
    """Every heavy stage (``stage all``, repetition 0) in a fresh ``folder`` on ``processes``
    processes; each artefact's seconds."""
    torchrun = ([] if processes == 1 else      # torchrun, wherever python is installed
                ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"])
    command = [sys.executable, *torchrun, "-m", "lib.cli", "stage", "all",
               "--run-dir", str(folder), "--profile", profile, "--device", device,
               "--seed", "0", "--timings", str(folder.parent / f"{folder.name}.json")]
    for key, value in overrides.items():
        command += ["-o", f"{key}={json.dumps(value)}"]
    env = dict(os.environ)
    if device == "cpu":         # the smoke: one thread per process on both sides (as torchrun's)
        env["OMP_NUM_THREADS"] = "1"
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1], env=env)
    return json.loads((folder.parent / f"{folder.name}.json").read_text())


def scaling(out: Path, n: int, device: str, counts: dict, parts: list[str]) -> dict:
    """Each heavy stage on one process and on ``n`` (see the module); prints and returns
    the table."""
    label = SCALING_LABEL[device].format(n=n)
    print(label, flush=True)
    timer, rows = Timer(device), []
    for part in parts:
        profile, overrides = (("cpu", counts["fashion"]) if part == "fashion" else
                              ("paper", face_settings(timer, out, counts)))
        one, many = (stage_seconds(out / f"{part}_{k}", profile, overrides, device, k)
                     for k in (1, n))
        for a, b in zip(one, many):
            ratio = round(a["seconds"] / b["seconds"], 2) if b["seconds"] else None
            rows.append({"part": part, "stage": a["stage"], "one_process_s": a["seconds"],
                         f"{n}_processes_s": b["seconds"], "throughput_ratio": ratio})
            print(f"{part:8s} {a['stage']:34s} {a['seconds']:9.2f} s {b['seconds']:9.2f} s "
                  f"×{ratio}", flush=True)
    result = {"label": label, "processes": n, "device": device, "stages": rows}
    if device != "cuda":
        result["multi_gpu"] = "not measured: fewer than two GPUs visible"
        print(f"multi-GPU figures: {result['multi_gpu']}", flush=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'scaling.json'}", flush=True)
    return result


# ------------------------------------------------------------------ the paper profile's counts
PER_IDENTITY = {"D": 27, "R": 3}
"""Assumed images per private identity: the split's minimum of 30 (27 trained on, 3 held out)."""
HVPS_PER_CODE = 100
"""Assumed Hessian-vector products for one reference code's top eigenpairs (ARPACK needed 91
for the top 20 at a small size; docs/paper_profile.md)."""


def profile_work(cfg) -> list[dict]:
    """What the paper profile ``cfg`` asks of each timed stage: the stage whose rate is used
    (``rate_of``), the work at the profile's counts, and the largest piece that cannot be cut
    (None: the stage saves its state every ``checkpoint_every_s``)."""
    ids, seeds, modes = len(cfg["private_classes"]), len(cfg["seeds"]), len(MODES)
    d, r, per_set = PER_IDENTITY["D"] * ids, PER_IDENTITY["R"] * ids, cfg["recon_per_class"] * ids
    ppa_runs = modes * seeds
    gmi_runs = min(cfg["gmi_vanilla_seeds"], seeds) + (modes - 1) * min(cfg["gmi_seeds"], seeds)
    controls = 3 * seeds
    scored = d + r + 2 * (ppa_runs + gmi_runs) * per_set + controls * per_set + 4 * d
    fid_images = d + (ppa_runs + gmi_runs + controls) * per_set
    per_class_attack = cfg["attack_candidates"] * cfg["attack_steps"]
    rows = [("train target", "train target", d * cfg["target_epochs"], None),
            ("train evaluator", "train evaluator", d * cfg["eval_epochs"], None),
            ("GAN prior", "GAN prior", cfg["gan_steps"] * cfg["gan_batch"], None)]
    rows += [(f"transfer {m} × {seeds} seeds", f"transfer {m}",
              cfg["transfer_steps"] * cfg["gan_batch"] * seeds, None) for m in MODES]
    rows += [(f"natural-gradient metric ({cfg['ngd_codes']} codes × {seeds} seeds)",
              "LPIPS-VGG Hessian-vector product", HVPS_PER_CODE * cfg["ngd_codes"] * seeds,
              HVPS_PER_CODE),
             (f"PPA attacks ({ppa_runs} runs; GMI's {gmi_runs} not timed)",
              "attack ppa (entropy+ngd)", ppa_runs * ids * per_class_attack, per_class_attack),
             ("judge: LPIPS-VGG embeddings of D, R and every scored set", "LPIPS-VGG embed (judge)",
              scored, scored / ids),
             ("Inception FID features of D and every set", "Inception pool3 (FID)", fid_images,
              per_set),
             ("evaluation of every set", "evaluate (all metrics)",
              (ppa_runs + gmi_runs + controls) * per_set, cfg["recon_per_class"])]
    return [{"stage": name, "rate_of": rate_of, "work": work, "unit_work": unit}
            for name, rate_of, work, unit in rows]


def extrapolate(report: dict, cfg, budget_s: float,
                command_s: float) -> tuple[list[str], list[str] | None]:
    """Lines of the extrapolation to ``cfg``'s counts, and what does not fit (empty: it all
    fits; None: a stage it needs was not measured)."""
    measured = {}
    for row in report["stages"]:
        if row["part"] in ("faces", "lpips", "inception") and row.get("per_second"):
            measured[row["stage"]] = row
    lines, total, too_long, missing = [], 0.0, [], []
    for need in profile_work(cfg):
        row = next((r for name, r in measured.items() if name.startswith(need["rate_of"])), None)
        if row is None:
            missing.append(need["stage"])
            lines.append(f"  {need['stage']:62s} not measured")
            continue
        seconds = need["work"] / row["per_second"]
        total += seconds
        if need["unit_work"] is None:
            unit = f"saves every {cfg['checkpoint_every_s']} s"
            unit_s = float(cfg["checkpoint_every_s"])
        else:
            unit_s = need["unit_work"] / row["per_second"]
            unit = f"largest piece {unit_s:,.0f} s"
        if unit_s > command_s:
            too_long.append(f"{need['stage']} ({unit})")
        lines.append(f"  {need['stage']:62s} {seconds / 3600:9.2f} h  {unit}  [{row['device']}]")
    lines.append(f"  {'total (extrapolated)':62s} {total / 3600:9.2f} h")
    if missing:
        return lines + [f"not measured: {', '.join(missing)}"], None
    over = [] if total <= budget_s else [f"the profile needs ≈ {total / 3600:,.1f} h of GPU time, "
                                         f"the budget is {budget_s:,.0f} s"]
    if too_long:
        over.append(f"pieces longer than one command ({command_s:,.0f} s): {'; '.join(too_long)}")
    return lines, over


def run_part(part: str, args, device: str, out: Path) -> None:
    """One part in this process, each stage's row appended to ``out/gpu_check.json``."""
    counts = COUNTS[args.counts]
    record = out / "gpu_check.json"
    if part == "fashion":
        ctx = context.setup("cpu", str(out / "fashion"), 0, device, counts["fashion"],
                            "gpu_check", show_config=False)
        run_stages(ctx, Timer(device, record, out / "fashion"), "fashion")
    elif part == "faces":
        timer = Timer(device, record, out / "faces")
        ctx = context.setup("paper", str(out / "faces"), 0, device,
                            face_settings(timer, out, counts), "gpu_check", show_config=False)
        run_stages(ctx, timer, "faces")
    elif part == "lpips":
        c = counts["lpips"]
        lpips_timing(Timer(device, record), device, c["size"], c["images"], c["hvps"])
    else:
        c = counts["inception"]
        inception_timing(Timer(device, record), device, c["size"], c["images"])


def run_parts(parts: list[str], args, device: str, out: Path) -> bool:
    """Each part in its own process, cut at ``--part-s`` and started again (it continues from
    its run folder) while at least ``--part-s`` is left of ``--command-s``; parts already done
    are skipped. True when every part is done."""
    record, start = out / "gpu_check.json", time.perf_counter()
    for part in parts:
        state = read_record(record)["parts"].get(part, "")
        if state == "done":
            print(f"{part}: done earlier, kept", flush=True)
            continue
        while state != "done" and not state.startswith("failed"):
            left = args.command_s - (time.perf_counter() - start)
            if left < args.part_s:
                print(f"{part}: not started, {left:.0f} s left of the command's "
                      f"{args.command_s:.0f} s (a part may take {args.part_s:.0f} s): run the "
                      "same command again to continue", flush=True)
                return False
            command = [sys.executable, __file__, "--only-part", part, "--out", str(out),
                       "--device", device, "--counts", args.counts]
            try:
                done = subprocess.run(command, timeout=args.part_s, stderr=subprocess.PIPE,
                                      text=True)
                state = "done" if done.returncode == 0 else \
                    f"failed: {(done.stderr.strip().splitlines() or ['(no message)'])[-1]}"
                if done.returncode:
                    sys.stderr.write(done.stderr)
            except subprocess.TimeoutExpired:
                state = f"cut at {args.part_s:.0f} s (continued from its run folder)"
            append_rows(record, [], {part: state})
            print(f"{part}: {state}", flush=True)
    return all(read_record(record)["parts"].get(p) == "done" for p in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--counts", default="check", choices=sorted(COUNTS))
    parser.add_argument("--scaling", type=int, default=0, metavar="N",
                        help="the heavy stages on one process and on N (torchrun)")
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="the GPU time available for the whole profile (go / no-go)")
    parser.add_argument("--command-s", type=float, default=600.0,
                        help="the limit of one command on the GPU machine")
    parser.add_argument("--part-s", type=float, default=240.0, help="each part's limit")
    parser.add_argument("--only-part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.only_part:
        run_part(args.only_part, args, device, out)
        return 0
    if args.scaling:
        scaling(out, args.scaling, device, COUNTS[args.counts], args.parts.split(","))
        return 0
    if args.part_s > args.command_s:
        parser.error(f"--part-s ({args.part_s:g}) must be at most --command-s "
                     f"({args.command_s:g}): a part runs inside one command")
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; valid: {', '.join(PARTS)}")
    record = out / "gpu_check.json"
    if not record.is_file():
        info = {"device": device_label(device), "torch": torch.__version__,
                "python": platform.python_version(), "counts": args.counts}
        record.write_text(json.dumps({"info": info, "stages": [], "parts": {}}, indent=1) + "\n")
    print(json.dumps(read_record(record)["info"]), flush=True)
    finished = run_parts(parts, args, device, out)
    report = read_record(record)
    print(f"\nthe paper profile's counts, extrapolated from the rates above (assumed: "
          f"{PER_IDENTITY['D']} + {PER_IDENTITY['R']} images per identity, {HVPS_PER_CODE} "
          "Hessian-vector products per reference code):")
    lines, problems = extrapolate(report, resolve("paper"), args.budget_s, args.command_s)
    print("\n".join(lines))
    on_gpu = device.startswith("cuda")
    if not on_gpu:
        verdict = ("not run on a GPU: " + ("the CPU parts ran (the extrapolation above is this "
                                           "CPU's)" if finished else "some parts did not run")
                   + "; no go / no-go")
    elif not finished or problems is None:
        verdict = "no verdict yet: some parts did not run (run the same command again)"
    elif problems:
        verdict = "NO-GO: " + "; ".join(problems)
    else:
        verdict = (f"GO: the paper profile fits {args.budget_s:,.0f} s of GPU time in commands "
                   f"of {args.command_s:,.0f} s")
    append_rows(record, [], verdict=verdict)
    print(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
