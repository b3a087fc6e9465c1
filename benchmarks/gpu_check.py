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

For every stage: wall seconds and throughput (images/s: training images × epochs, generated
images × steps, or attacked latents × steps), written to ``gpu_check.json`` and a table.

``--scaling N`` (``gpu_check.sh`` runs it when several GPUs are visible) runs the heavy stages
as the ``stage`` commands do, in two fresh run folders: once in one process, once under
``torchrun --nproc_per_node=N``, and reports each stage's seconds on both and the ratio (the
throughput on N processes against one). On a machine with fewer than two GPUs it runs N = 2
gloo processes on the CPU at tiny counts: a smoke of the plumbing, labelled so, not a speed-up.
Counts are small so the whole check fits a short GPU lease; throughput, not the counts, is
what compares across machines (``--counts cpu``: the same shapes with fewer steps for 2 CPU
cores; ``--counts tiny`` is the test-sized run). The collapse monitor runs only at the start and
the end of each transfer (64 samples), so transfer throughput is the fine-tuning's own.

    python benchmarks/gpu_check.py --out runs/gpu_check [--device auto] [--parts fashion,faces]
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

from lib import cli  # noqa: E402
from lib.config import MODES  # noqa: E402
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
}


class Timer:
    """Wall time of stages (the GPU synchronised at both ends) and their throughput."""

    def __init__(self, device: str) -> None:
        self.device, self.rows = device, []

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def __call__(self, part: str, stage: str, fn, images=0.0, unit: str = "images"):
        """Run ``fn``; ``images``: the work done, or a function of ``fn``'s result giving it."""
        self._sync()
        start = time.perf_counter()
        out = fn()
        self._sync()
        seconds = time.perf_counter() - start
        images = images(out) if callable(images) else images
        row = {"part": part, "stage": stage, "seconds": round(seconds, 3),
               "work": images, "unit": unit,
               "per_second": round(images / seconds, 1) if images else None}
        self.rows.append(row)
        rate = f"{row['per_second']:>10.1f} {unit}/s" if images else ""
        print(f"{part:8s} {stage:28s} {seconds:9.2f} s {rate}", flush=True)
        return out


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
    timer(part, "natural-gradient metric", lambda: transfer.require_metric(ctx, 0, inputs))
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


def lpips_shaped_timing(timer: Timer, device: str, size: int, n: int) -> None:
    """The cost of an LPIPS-VGG-shaped distance (VGG16 features at 256 px, random weights)."""
    import torchvision

    from lib.metrics.distances import LPIPSInput, PerceptualDistance, VGGFeatures

    net = VGGFeatures(torchvision.models.vgg16(weights=None).features)
    distance = PerceptualDistance(net, input_transform=LPIPSInput(256), name="LPIPS-VGG-shaped")
    images = torch.rand(n, 3, size, size) * 2 - 1
    timer("faces", "LPIPS-VGG-shaped embed", lambda: distance.embed_batched(
        images, 64, device), n)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--parts", default="fashion,faces")
    parser.add_argument("--counts", default="check", choices=sorted(COUNTS))
    parser.add_argument("--scaling", type=int, default=0, metavar="N",
                        help="the heavy stages on one process and on N (torchrun)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    timer = Timer(device)
    counts = COUNTS[args.counts]
    if args.scaling:
        scaling(out, args.scaling, device, counts, args.parts.split(","))
        return 0
    info = {"device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor()
            or "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "counts": args.counts}
    print(json.dumps(info))
    start = time.perf_counter()
    parts = args.parts.split(",")
    if "fashion" in parts:
        ctx = context.setup("cpu", str(out / "fashion"), 0, device, counts["fashion"],
                             "gpu_check", show_config=False)
        run_stages(ctx, timer, "fashion")
    if "faces" in parts:
        over = face_settings(timer, out, counts)
        ctx = context.setup("paper", str(out / "faces"), 0, device, over, "gpu_check",
                             show_config=False)
        run_stages(ctx, timer, "faces")
        lpips_shaped_timing(timer, device, over.get("image_size", 112),
                            256 if args.counts == "check" else 8)
    info["total_seconds"] = round(time.perf_counter() - start, 1)
    (out / "gpu_check.json").write_text(json.dumps({"info": info, "stages": timer.rows},
                                                   indent=1) + "\n")
    print(f"total {info['total_seconds']} s; wrote {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
