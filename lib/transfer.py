"""The transfer-learning framework (PAPER.md §3): fine-tune the GAN prior toward the target.

Three modes, all from the same pretrained checkpoint and seed:

- ``vanilla``: GAN losses only, on the public data (the baseline prior);
- ``entropy``: + λ_H · Σ_batch H(softmax(T(view(G(z))))) — the frozen target's prediction
  entropy on augmented generated images, minimised (no class label is used);
- ``entropy+ngd``: as ``entropy``, but the image-space gradient g of the entropy term is
  replaced by the natural gradient g̃ = V diag(1/λ) Vᵀ g of the LPIPS-style metric
  (lib.ngd), pushed into G through the surrogate loss Σ_i ⟨G(z_i), stopgrad(g̃_i)⟩.

``entropy`` uses the same surrogate with g̃ = g, which gives exactly the gradients of
λ_H·H: the two modes differ only in the preconditioner. The target view's random
augmentation draws from its own seeded stream, so every GAN-side draw (real batches, codes)
is the same in the three modes; with λ_H = 0 the ``entropy`` mode reproduces ``vanilla``.

Entropy weight: the paper's λ_H = 1 summed over the batch collapsed a small DCGAN in a
prototype here, so λ_H is chosen by a committed sweep (``python -m lib.transfer sweep``), a
collapse monitor (the target's class histogram of a fixed set of generated samples) runs
throughout, and the faithful value is one override away.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("vanilla", "entropy", "entropy+ngd")
OBJECTIVES = ("entropy", "spread")
REDUCTIONS = ("sum", "mean")
NGD_MODES = ("faithful", "per-sample")


def mode_slug(mode: str) -> str:
    """A file-name-safe form of a mode ("entropy+ngd" → "entropy-ngd")."""
    check_mode(mode)
    return mode.replace("+", "-")


def transfer_file(mode: str, seed: int, suffix: str = "") -> str:
    """The run-folder path of the generator fine-tuned in ``mode`` for repetition ``seed``."""
    return f"models/transfer/{mode_slug(mode)}_seed{seed}{suffix}.safetensors"


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; valid: {', '.join(MODES)}")


# ----------------------------------------------------------------------------- objectives
def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per row, in nats, shape (N,)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def entropy_loss(logits: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Σ_batch H(softmax(logits)) (the paper's entropy term), or the batch mean."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    h = prediction_entropy(logits)
    return h.sum() if reduction == "sum" else h.mean()


def spread_loss(logits: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Σ_b H(p_b) − B · H(mean_b p_b) (a deviation; mean: divided by B).

    Confident samples (low per-sample entropy) whose predicted classes stay spread over the
    batch (high entropy of the mean prediction): the collapse-safe form of the entropy term.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    p_mean = F.softmax(logits, dim=1).mean(dim=0)
    h_mean = -(p_mean * p_mean.clamp_min(1e-12).log()).sum()
    per_sample = prediction_entropy(logits).mean() - h_mean
    return per_sample * len(logits) if reduction == "sum" else per_sample


def target_objective(logits: torch.Tensor, objective: str = "entropy",
                     reduction: str = "sum") -> torch.Tensor:
    """The target term of the generator loss (before the weight λ_H)."""
    if objective == "entropy":
        return entropy_loss(logits, reduction)
    if objective == "spread":
        return spread_loss(logits, reduction)
    raise ValueError(f"unknown entropy objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


def target_view(out_size: int = 32, flip: bool = True) -> nn.Module:
    """The augmented, resized view of generated images the target sees (kornia): a random
    resized crop covering 80–100% of the image, resized to the target's input size, and a
    horizontal flip (Fashion-MNIST items and faces are left/right symmetric)."""
    import kornia.augmentation as K

    augs: list[nn.Module] = [K.RandomResizedCrop((out_size, out_size), scale=(0.8, 1.0),
                                                 ratio=(0.9, 1.1))]
    if flip:
        augs.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*augs)


def surrogate_loss(images: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Σ_i ⟨images_i, stopgrad(direction_i)⟩: its gradient w.r.t. G's weights is Jᵀ·direction."""
    return (images * direction.detach()).sum()


# ----------------------------------------------------------------------------- monitoring
@torch.no_grad()
def monitor_generator(generator: nn.Module, target: nn.Module, latents: torch.Tensor,
                      n_classes: int, collapse_max_share: float = 0.5,
                      batch_size: int = 512) -> dict[str, Any]:
    """The target's view of a fixed set of generated samples (no augmentation).

    Returns the mean prediction entropy, mean max-probability (confidence), the class
    histogram (shares), the largest share and ``collapsed`` (largest share above
    ``collapse_max_share``). Uses no randomness.
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    logits = torch.cat([target(generator(latents[i:i + batch_size].to(device))).cpu()
                        for i in range(0, len(latents), batch_size)])
    generator.train(was_training)
    probs = F.softmax(logits, dim=1)
    counts = torch.bincount(probs.argmax(1), minlength=n_classes).double()
    shares = (counts / counts.sum()).tolist()
    return {"mean_entropy": prediction_entropy(logits).mean().item(),
            "mean_confidence": probs.max(1).values.mean().item(),
            "class_shares": shares, "max_share": max(shares),
            "collapsed": bool(max(shares) > collapse_max_share)}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class TransferSettings:
    """Everything ``fine_tune`` needs besides the networks; ``from_config`` reads a profile."""
    steps: int
    batch_size: int
    lr: float
    entropy_weight: float = 1.0
    entropy_reduction: str = "sum"
    entropy_objective: str = "entropy"
    ngd_rank: int = 20
    ngd_codes: int = 16
    ngd_mode: str = "faithful"
    ngd_damping: float = 0.0
    ngd_refresh_every: int = 50
    r1_gamma: float = 1.0
    r1_every: int = 16
    ema_kimg: float = 10.0
    augment: bool = False
    monitor_samples: int = 512
    monitor_every: int = 25
    collapse_max_share: float = 0.5
    target_size: int = 32

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], mode: str = "entropy",
                    **changes: Any) -> "TransferSettings":
        """The settings of ``mode`` (``entropy+ngd`` reads ``ngd_entropy_weight``)."""
        check_mode(mode)
        weight = cfg["ngd_entropy_weight"] if mode == "entropy+ngd" else cfg["entropy_weight"]
        settings = cls(
            steps=cfg["transfer_steps"], batch_size=cfg["gan_batch"], lr=cfg["transfer_lr"],
            entropy_weight=weight, entropy_reduction=cfg["entropy_reduction"],
            entropy_objective=cfg["entropy_objective"], ngd_rank=cfg["ngd_rank"],
            ngd_codes=cfg["ngd_codes"], ngd_mode=cfg["ngd_mode"],
            ngd_damping=cfg["ngd_damping"], ngd_refresh_every=cfg["ngd_refresh_every"],
            r1_gamma=cfg["gan_r1_gamma"], r1_every=cfg["gan_r1_every"],
            ema_kimg=cfg["gan_ema_kimg"], augment=cfg["gan_augment"],
            monitor_samples=cfg["monitor_samples"], monitor_every=cfg["monitor_every"],
            collapse_max_share=cfg["collapse_max_share"], target_size=cfg["image_size"])
        return settings.replace(**changes) if changes else settings

    def replace(self, **changes: Any) -> "TransferSettings":
        import dataclasses

        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        if self.entropy_reduction not in REDUCTIONS:
            raise ValueError(f"entropy_reduction {self.entropy_reduction!r}; valid: sum, mean")
        if self.entropy_objective not in OBJECTIVES:
            raise ValueError(f"entropy_objective {self.entropy_objective!r}; valid: "
                             + ", ".join(OBJECTIVES))
        if self.ngd_mode not in NGD_MODES:
            raise ValueError(f"ngd_mode {self.ngd_mode!r}; valid: {', '.join(NGD_MODES)}")
        if self.ngd_mode == "per-sample" and self.ngd_damping <= 0:
            raise ValueError("the per-sample natural-gradient mode needs ngd_damping > 0 "
                             "(its metric is recomputed at the samples; undamped it explodes)")
        if not math.isfinite(self.entropy_weight) or self.entropy_weight < 0:
            raise ValueError(f"entropy_weight must be finite and ≥ 0, got {self.entropy_weight}")


@dataclass
class TransferResult:
    mode: str
    generator: nn.Module              # raw fine-tuned weights
    generator_ema: nn.Module          # the prior the attacks use
    discriminator: nn.Module
    history: dict                     # GAN losses and target-term statistics per logged step
    monitor: list = field(default_factory=list)   # monitor_generator at each monitor step


# ----------------------------------------------------------------------------- the metric
def reference_codes(z_dim: int, n_codes: int, seed: int) -> torch.Tensor:
    """The random reference codes at which the faithful metric is computed (seeded)."""
    return torch.randn(n_codes, z_dim, generator=torch.Generator().manual_seed(seed))


def build_metric(generator: nn.Module, distance: nn.Module, settings: TransferSettings,
                 seed: int, method: str = "lanczos"):
    """The faithful natural-gradient metric: top-k eigenpairs of the LPIPS-style Hessian at
    G(z_j) for ``ngd_codes`` random codes z_j, computed once (PAPER.md §3)."""
    from . import ngd

    codes = reference_codes(generator.z_dim, settings.ngd_codes, seed)
    generator.eval()
    device = next(generator.parameters()).device
    with torch.no_grad():
        images = generator(codes.to(device))
    return ngd.build_reference_metric(distance, images, settings.ngd_rank, method=method,
                                      damping=settings.ngd_damping, seed=seed)


# ----------------------------------------------------------------------------- fine-tuning
def fine_tune(mode: str, generator: nn.Module, discriminator: nn.Module, target: nn.Module,
              public_images: torch.Tensor, settings: TransferSettings, seed: int, *,
              generator_ema: nn.Module | None = None, metric=None,
              distance: nn.Module | None = None, monitor_latents: torch.Tensor | None = None,
              device: str = "cpu", progress: bool | None = None,
              partial=None) -> TransferResult:
    """Fine-tune copies of (generator, discriminator) on ``public_images`` in ``mode``.

    The inputs are not modified. ``target`` is frozen. ``entropy+ngd`` needs ``metric`` (a
    ``lib.ngd.ReferenceMetric``, faithful mode) or ``distance`` (per-sample mode, or to
    build the faithful metric here). ``monitor_latents``: fixed codes for the collapse
    monitor (default: ``settings.monitor_samples`` codes from ``seed``). ``partial``: a
    ``lib.artifacts.PartialState`` to save to and resume from (the per-sample metric is
    recomputed at the step a resumed run starts from).
    """
    from . import ngd
    from .seeding import derive_seed, seeded_rng
    from .training import train_gan

    check_mode(mode)
    settings.check()
    G, D = copy.deepcopy(generator).to(device), copy.deepcopy(discriminator).to(device)
    G_ema = copy.deepcopy(generator_ema if generator_ema is not None else generator).to(device)
    T = copy.deepcopy(target).to(device).eval().requires_grad_(False)
    n_classes = T.head.out_features if hasattr(T, "head") else int(
        T(public_images[:1].to(device)).shape[1])
    if mode == "entropy+ngd" and settings.ngd_mode == "faithful" and metric is None:
        if distance is None:
            raise ValueError("entropy+ngd needs the natural-gradient metric: pass metric= "
                             "(lib.ngd.ReferenceMetric) or distance= to build it")
        metric = build_metric(G, distance.to(device), settings, derive_seed(seed, "ngd_codes"))
    if mode == "entropy+ngd" and settings.ngd_mode == "per-sample" and distance is None:
        raise ValueError("the per-sample natural-gradient mode needs distance= "
                         "(the perceptual distance whose metric is recomputed)")
    if monitor_latents is None:
        monitor_latents = torch.randn(settings.monitor_samples, G.z_dim,
                                      generator=torch.Generator().manual_seed(
                                          derive_seed(seed, "monitor")))
    view = target_view(settings.target_size).to(device)
    monitor: list[dict] = []
    per_sample: dict[str, torch.Tensor] = {}

    def target_term(fake: torch.Tensor, step: int):
        if step % settings.monitor_every == 0:
            monitor.append({"step": step, **monitor_generator(
                G_ema, T, monitor_latents, n_classes, settings.collapse_max_share)})
        if mode == "vanilla":
            return fake.new_zeros(()), {}
        with seeded_rng(seed, f"view/{step}"):         # the view's draws leave the GAN's alone
            logits = T(view(fake))
        term = settings.entropy_weight * target_objective(
            logits, settings.entropy_objective, settings.entropy_reduction)
        (grad,) = torch.autograd.grad(term, fake, retain_graph=True)
        direction = grad
        if mode == "entropy+ngd":
            if settings.ngd_mode == "faithful":
                direction = metric.precondition(grad)
            else:
                if step % settings.ngd_refresh_every == 0 or not per_sample:
                    vals, vecs = ngd.metric_at(distance, fake.detach(), settings.ngd_rank,
                                               seed=step)
                    per_sample.update(vals=vals, vecs=vecs)
                direction = ngd.precondition(grad, per_sample["vals"], per_sample["vecs"],
                                             damping=settings.ngd_damping)
        stats = {"target_entropy": prediction_entropy(logits.detach()).mean().item(),
                 "grad_norm": grad.flatten(1).norm(dim=1).mean().item(),
                 "direction_norm": direction.flatten(1).norm(dim=1).mean().item()}
        return surrogate_loss(fake, direction), stats

    G_ema, history = train_gan(
        G, D, public_images, steps=settings.steps, batch_size=settings.batch_size,
        lr=settings.lr, seed=seed, r1_gamma=settings.r1_gamma, r1_every=settings.r1_every,
        ema_kimg=settings.ema_kimg, augment=settings.augment, generator_ema=G_ema,
        extra_generator_loss=target_term, device=device, progress=progress,
        desc=f"transfer ({mode})", partial=partial, extra_state={"monitor": monitor})
    monitor.append({"step": settings.steps, **monitor_generator(
        G_ema, T, monitor_latents, n_classes, settings.collapse_max_share)})
    return TransferResult(mode, G.cpu().eval(), G_ema.cpu().eval(), D.cpu().eval(), history,
                          monitor)


# ----------------------------------------------------------------------------- run folder
def transfer_config(cfg: Mapping[str, Any]) -> dict:
    """The config entries a transferred generator depends on (stored with its checkpoint)."""
    from .training import gan_config, role_config

    prefixes = ("transfer_", "entropy_", "ngd_", "monitor_", "collapse_")
    own = {k: cfg[k] for k in sorted(cfg) if k.startswith(prefixes)}
    return {**own, "gan": gan_config(cfg), "target": role_config("target", cfg),
            "perceptual": role_config("perceptual", cfg)}


@dataclass
class TransferInputs:
    """What every transfer of a run shares: the prior, the frozen target, the attacker's
    perceptual distance and the public images."""
    generator: nn.Module
    generator_ema: nn.Module
    discriminator: nn.Module
    target: nn.Module
    distance: nn.Module
    public_images: torch.Tensor


def transfer_inputs(ctx, data=None, split=None) -> TransferInputs:
    """Load (or build, through the same lib functions) the inputs of the transfer."""
    from . import data as data_mod
    from .training import (gan_training_set, require_classifier, require_gan,
                           require_perceptual_distance)

    if data is None or split is None:
        data, split = data_mod.split_for_config(ctx.cfg, data)
    G, G_ema, D, _ = require_gan(ctx, data, split)
    target, _, _ = require_classifier(ctx, "target", data, split)
    distance, _ = require_perceptual_distance(ctx, data, split)
    images = gan_training_set(ctx.cfg, data, split, ctx.subseed("gan_prior"))
    return TransferInputs(G, G_ema, D, target, distance, images)


def transfer_seed(ctx, seed: int) -> int:
    """The seed of every transfer mode for repetition ``seed`` (shared by the three modes)."""
    return ctx.subseed(f"transfer/seed{seed}")


def require_metric(ctx, seed: int, inputs: TransferInputs):
    """The faithful natural-gradient metric of repetition ``seed`` (built once, saved).

    Returns (metric, info) with the build time in seconds and whether it was reused.
    """
    from . import ngd

    rel = f"models/ngd_metric_seed{seed}.safetensors"
    from .seeding import derive_seed

    settings = TransferSettings.from_config(ctx.cfg, "entropy+ngd")
    codes_seed = derive_seed(transfer_seed(ctx, seed), "ngd_codes")
    loaded = ctx.load_current(rel, transfer_config(ctx.cfg))
    if loaded is not None:
        tensors, meta = loaded
        return ngd.ReferenceMetric.from_tensors(tensors, settings.ngd_damping), {**meta,
                                                                                "reused": True}
    import time

    start = time.perf_counter()
    metric = build_metric(inputs.generator, inputs.distance, settings, codes_seed)
    seconds = time.perf_counter() - start
    meta = {"config": transfer_config(ctx.cfg), "seed": seed, "codes_seed": codes_seed,
            "seconds": seconds}
    ctx.save_tensors(rel, metric.to_tensors(), meta)
    return metric, {**meta, "reused": False}


def require_transfer(ctx, mode: str, seed: int, inputs: TransferInputs | None = None,
                     **changes: Any) -> tuple[TransferResult, dict]:
    """The generator of ``mode`` for repetition ``seed``, fine-tuned now if missing.

    Saved as ``models/transfer/<mode>_seed<seed>.safetensors`` (G, G_ema and D, the GMI-style
    attack needs D) with its config, history and monitor. ``changes`` override settings
    (the sweep uses them); such results are saved under a name that says so.
    """
    import time

    from .artifacts import ArtifactError
    from .models import Discriminator, Generator
    from .training import pack_modules, unpack_modules

    check_mode(mode)
    config = transfer_config(ctx.cfg)
    suffix = "".join(f"_{k}-{v}" for k, v in sorted(changes.items()))
    rel = transfer_file(mode, seed, suffix)
    loaded = ctx.load_current(rel, config)
    if loaded is not None:
        tensors, meta = loaded
        if meta.get("changes") != changes:
            raise ArtifactError(f"{ctx.path(rel)} was fine-tuned with other settings "
                                f"({meta.get('changes')}); delete the file to fine-tune again")
        G, G_ema = Generator(**meta["generator"]), Generator(**meta["generator"])
        D = Discriminator(**meta["discriminator"])
        unpack_modules(tensors, {"G": G, "G_ema": G_ema, "D": D})
        result = TransferResult(mode, G.eval(), G_ema.eval(), D.eval(), meta["history"],
                                meta["monitor"])
        return result, {"reused": True, "seconds": meta["seconds"]}
    inputs = inputs or transfer_inputs(ctx)
    settings = TransferSettings.from_config(ctx.cfg, mode, **changes)
    metric = None
    if mode == "entropy+ngd" and settings.ngd_mode == "faithful":
        metric, _ = require_metric(ctx, seed, inputs)
    from .artifacts import PartialState

    partial = PartialState(ctx.path(rel.replace(".safetensors", ".partial.safetensors")),
                           {"config": config, "changes": changes}, ctx.cfg["checkpoint_every_s"])
    start = time.perf_counter()
    result = fine_tune(mode, inputs.generator, inputs.discriminator, inputs.target,
                       inputs.public_images, settings, transfer_seed(ctx, seed),
                       generator_ema=inputs.generator_ema, metric=metric,
                       distance=inputs.distance, device=ctx.device, partial=partial)
    seconds = time.perf_counter() - start
    ctx.save_tensors(rel, pack_modules({"G": result.generator, "G_ema": result.generator_ema,
                                        "D": result.discriminator}),
                     {"config": config, "changes": changes, "mode": mode, "seed": seed,
                      "generator": result.generator.arch_spec,
                      "discriminator": result.discriminator.arch_spec,
                      "history": result.history, "monitor": result.monitor,
                      "seconds": seconds})
    return result, {"reused": False, "seconds": seconds}


# ----------------------------------------------------------------------------- λ sweep
SWEEP_WEIGHTS = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
SWEEP_RULE = ("among the weights whose generator never collapsed (at no monitor point did one "
              "target class take more than collapse_max_share of the monitored samples), the "
              "one with the lowest final mean target entropy on the monitored samples; ties go "
              "to the smaller weight. It looks at generated samples and the target only, "
              "never at D or R.")


def sweep_file() -> Path:
    """Where the committed sweep lives (``results/entropy_sweep.json``)."""
    from .paths import repo_root

    return repo_root() / "results" / "entropy_sweep.json"


def load_sweep(path: Path | None = None) -> dict | None:
    """The committed sweep's results, or None when it has not been run."""
    import json

    path = Path(path) if path is not None else sweep_file()
    return json.loads(path.read_text()) if path.is_file() else None


def choose_weight(rows: list[dict]) -> dict:
    """The sweep row chosen by ``SWEEP_RULE`` (rows: weight, collapsed_any, final_entropy).

    When every weight collapsed, the smallest weight is returned with ``all_collapsed``.
    """
    if not rows:
        raise ValueError("choose_weight: the sweep has no rows")
    safe = [r for r in rows if not r["collapsed_any"]]
    if not safe:
        return {**min(rows, key=lambda r: r["weight"]), "all_collapsed": True}
    best = min(safe, key=lambda r: (round(r["final_entropy"], 6), r["weight"]))
    return {**best, "all_collapsed": False}


def gradient_scale(inputs: TransferInputs, metric, settings: TransferSettings,
                   seed: int) -> float:
    """Mean ‖natural gradient‖ / ‖gradient‖ of the entropy term over one batch of the prior.

    The sweep centres the ``entropy+ngd`` grid with it (the preconditioner changes the size
    of the step by orders of magnitude).
    """
    from .seeding import derive_seed

    G = inputs.generator.eval()
    z = torch.randn(settings.batch_size, G.z_dim,
                    generator=torch.Generator().manual_seed(derive_seed(seed, "scale")))
    fake = G(z).detach().requires_grad_(True)
    torch.manual_seed(seed)
    logits = inputs.target.eval()(target_view(settings.target_size)(fake))
    (grad,) = torch.autograd.grad(entropy_loss(logits, settings.entropy_reduction), fake)
    nat = metric.precondition(grad)
    return (nat.flatten(1).norm(dim=1) / grad.flatten(1).norm(dim=1).clamp_min(1e-30)
            ).mean().item()


def sweep(ctx, modes: tuple[str, ...] = ("entropy", "entropy+ngd"), seed: int = 0,
          weights: tuple[float, ...] = SWEEP_WEIGHTS) -> dict:
    """Fine-tune each mode at each entropy weight (one seed) and choose by ``SWEEP_RULE``."""
    import time

    inputs = transfer_inputs(ctx)
    settings = TransferSettings.from_config(ctx.cfg)
    out: dict[str, Any] = {"rule": SWEEP_RULE, "seed": seed, "modes": {}}
    for mode in modes:
        grid = list(weights)
        scale = 1.0
        if mode == "entropy+ngd":
            metric, _ = require_metric(ctx, seed, inputs)
            scale = gradient_scale(inputs, metric, settings, transfer_seed(ctx, seed))
            shift = 10.0 ** round(math.log10(scale))
            grid = sorted({float(f"{w / shift:.3g}") for w in weights} | {1.0})
        rows = []
        for weight in grid:
            start = time.perf_counter()
            result, _ = require_transfer(ctx, mode, seed, inputs, entropy_weight=weight)
            final = result.monitor[-1]
            rows.append({"weight": weight, "final_entropy": final["mean_entropy"],
                         "final_confidence": final["mean_confidence"],
                         "final_max_share": final["max_share"],
                         "final_class_shares": final["class_shares"],
                         "collapsed_any": any(m["collapsed"] for m in result.monitor),
                         "seconds": time.perf_counter() - start})
            print(f"{mode:12s} λ={weight:<8g} entropy {final['mean_entropy']:.3f}  max share "
                  f"{final['max_share']:.2f}  collapsed {rows[-1]['collapsed_any']}", flush=True)
        vanilla, _ = require_transfer(ctx, "vanilla", seed, inputs)
        out["modes"][mode] = {"grid": grid, "gradient_scale": scale, "rows": rows,
                              "vanilla_final_entropy": vanilla.monitor[-1]["mean_entropy"],
                              "chosen": choose_weight(rows)}
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.transfer sweep --profile cpu [--run-dir DIR] [--out FILE]``."""
    import argparse
    import json

    from . import notebook, runner

    parser = argparse.ArgumentParser(prog="python -m lib.transfer")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="the entropy-weight sweep (its own job; commit its output)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--run-dir", default="", help="reuse this run folder's models (default: new)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(sweep_file()))
    args = parser.parse_args(argv)
    commit, dirty = runner.git_commit(), runner.git_dirty()   # the code this job runs
    run_dir = args.run_dir or str(runner.new_run_dir(args.profile))
    ctx = notebook.setup(args.profile, run_dir, args.seed, "auto", {}, notebook="entropy_sweep",
                         show_config=False)
    result = sweep(ctx, seed=args.seed)
    result.update(profile=args.profile, git_commit=commit, git_dirty=dirty,
                  config=transfer_config(ctx.cfg), run_dir=notebook.display_path(ctx.run_dir))
    from .artifacts import atomic_write_json

    atomic_write_json(Path(args.out), result)
    for mode, res in result["modes"].items():
        print(f"{mode}: chosen λ = {res['chosen']['weight']:g}"
              + (" (every weight collapsed)" if res["chosen"]["all_collapsed"] else ""))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
