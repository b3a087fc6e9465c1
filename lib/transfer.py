"""The transfer-learning framework (docs/method.md, "The transfer-learning framework"): fine-tune the GAN prior toward the target.

Three modes, all from the same pretrained checkpoint and seed:

- ``vanilla``: GAN losses only, on the public data (the baseline prior);
- ``entropy``: + λ_H · Σ_batch H(softmax(T(view(G(z))))) — the frozen target's prediction
  entropy on augmented generated images, minimised (no class label is used);
- ``entropy+ngd``: as ``entropy``, but the image-space gradient g of the entropy term is
  replaced by the natural gradient g̃ = V diag(1/λ) Vᵀ g of the LPIPS-style metric
  (lib.ngd), pushed into G through the surrogate loss Σ_i ⟨G(z_i), stopgrad(g̃_i)⟩;
- ``entropy+ngd-damped`` (ours, a labelled deviation): as ``entropy+ngd`` with the damped
  inverse g̃ = (H_k + γI)⁻¹ g of the same metric (``lib.ngd.precondition(form="damped")``).

``entropy`` uses the same surrogate with g̃ = g, which gives exactly the gradients of
λ_H·H: the two modes differ only in the preconditioner. The target view's random
augmentation draws from its own seeded stream, so every GAN-side draw (real batches, codes)
is the same in the three modes; with λ_H = 0 the ``entropy`` mode reproduces ``vanilla``.

Entropy weight, in the authors' units: the authors sum the entropy over a per-GPU batch of
16 and average gradients over their 4 GPUs (DDP), while the GAN loss is a batch mean; so each
sample's entropy weighs 16·λ_authors times its GAN loss, whatever the number of GPUs. A single
process summing over a batch of b reproduces that with λ_sum = 16·λ_authors / b
(``effective_entropy_weight``; with ``entropy_reduction="mean"``: 16·λ_authors on the batch
mean). On N processes (DistributedDataParallel, the global batch b split into N shares of
b / N) each process sums over its own share with λ_sum = 16·λ_authors / (b / N): the gradient
average over the processes then weighs each sample's entropy 16·λ_authors times its GAN loss,
as one process does (the authors: b / N = 16, λ_sum = λ_authors). The profile keys and
``TransferSettings.entropy_weight`` hold λ_authors (the paper's:
1); the cpu profile's values come from a committed sweep (``make sweep``) with a collapse
monitor (the target's class histogram of a fixed set of generated samples).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from . import ngd
from .augment import target_view
from .distributed import SINGLE, World
from .config import MODES, NATURAL_GRADIENT_MODES, check_mode
from .artifacts import PartialState
from .errors import InputError
from .inference import batched
from .seeding import derive_seed, global_seed, rank_seed, seeded_rng
from .training import standing_statistics, train_gan

MONITOR_STANDING_BATCHES = 8
"""Batches of 256 codes for the statistics of a monitor record during fine-tuning (the saved
EMA generator's are recomputed from ``training.STANDING_BATCHES``)."""

AUTHORS_GPU_BATCH = 16
"""The authors' per-GPU batch, over which their entropy term is summed (λ_H = 1)."""
OBJECTIVES = ("entropy", "spread")
REDUCTIONS = ("sum", "mean")
NGD_MODES = ("faithful", "per-sample")
__all__ = ["MODES", "TransferSettings", "TransferResult", "fine_tune", "build_metric",
           "monitor_generator", "choose_weight", "gradient_scale", "prediction_entropy"]


# ----------------------------------------------------------------------------- objectives
def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per row, in nats, shape (N,)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def entropy_loss(logits: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Σ_batch H(softmax(logits)) (the paper's entropy term), or the batch mean."""
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    h = prediction_entropy(logits)
    return h.sum() if reduction == "sum" else h.mean()


def spread_loss(logits: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Σ_b H(p_b) − B · H(mean_b p_b) (a deviation; mean: divided by B).

    Confident samples (low per-sample entropy) whose predicted classes stay spread over the
    batch (high entropy of the mean prediction): the collapse-safe form of the entropy term.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
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
    raise InputError(f"unknown entropy objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


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
    logits = batched(lambda z: target(generator(z)), latents, batch_size, device)
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
    entropy_weight: float = 1.0           # λ_H in the authors' units (the paper: 1)
    entropy_reduction: str = "sum"
    entropy_objective: str = "entropy"
    ngd_rank: int = 20
    ngd_codes: int = 16
    ngd_mode: str = "faithful"
    ngd_damping: float = 0.0
    ngd_refresh_every: int = 50
    ngd_form: str = "paper"               # paper | damped (entropy+ngd-damped)
    ngd_damped_gamma: float = 0.0         # damped: γ; 0 = λ_k of each reference metric
    r1_gamma: float = 1.0
    r1_every: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05       # the EMA's half-life ≤ this × images seen (ramp-up)
    augment: bool = False
    monitor_samples: int = 512
    monitor_every: int = 25
    collapse_max_share: float = 0.5
    target_size: int = 32

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], mode: str = "entropy",
                    **changes: Any) -> "TransferSettings":
        """The settings of ``mode`` (``entropy+ngd`` reads ``ngd_entropy_weight``,
        ``entropy+ngd-damped`` ``ngd_damped_entropy_weight``)."""
        check_mode(mode)
        weight = {"entropy+ngd": cfg["ngd_entropy_weight"],
                  "entropy+ngd-damped": cfg["ngd_damped_entropy_weight"]}.get(
                      mode, cfg["entropy_weight"])
        settings = cls(
            steps=cfg["transfer_steps"], batch_size=cfg["gan_batch"], lr=cfg["transfer_lr"],
            entropy_weight=weight, entropy_reduction=cfg["entropy_reduction"],
            entropy_objective=cfg["entropy_objective"], ngd_rank=cfg["ngd_rank"],
            ngd_codes=cfg["ngd_codes"], ngd_mode=cfg["ngd_mode"],
            ngd_damping=cfg["ngd_damping"], ngd_refresh_every=cfg["ngd_refresh_every"],
            ngd_form="damped" if mode == "entropy+ngd-damped" else "paper",
            ngd_damped_gamma=cfg["ngd_damped_gamma"],
            r1_gamma=cfg["gan_r1_gamma"], r1_every=cfg["gan_r1_every"],
            ema_kimg=cfg["gan_ema_kimg"], ema_rampup=cfg["transfer_ema_rampup"] or None,
            augment=cfg["gan_augment"], monitor_samples=cfg["monitor_samples"], monitor_every=cfg["monitor_every"],
            collapse_max_share=cfg["collapse_max_share"], target_size=cfg["image_size"])
        return settings.replace(**changes) if changes else settings

    def replace(self, **changes: Any) -> "TransferSettings":
        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        if self.entropy_reduction not in REDUCTIONS:
            raise InputError(f"entropy_reduction {self.entropy_reduction!r}; valid: sum, mean")
        if self.entropy_objective not in OBJECTIVES:
            raise InputError(f"entropy_objective {self.entropy_objective!r}; valid: "
                             + ", ".join(OBJECTIVES))
        if self.ema_rampup is not None and not (math.isfinite(self.ema_rampup)
                                                and self.ema_rampup > 0):
            raise InputError(f"transfer_ema_rampup must be > 0 (0: off), got {self.ema_rampup}")
        if self.ngd_mode not in NGD_MODES:
            raise InputError(f"ngd_mode {self.ngd_mode!r}; valid: {', '.join(NGD_MODES)}")
        if self.ngd_form not in ngd.FORMS:
            raise InputError(f"ngd_form {self.ngd_form!r}; valid: {', '.join(ngd.FORMS)}")
        if not math.isfinite(self.ngd_damped_gamma) or self.ngd_damped_gamma < 0:
            raise InputError(f"ngd_damped_gamma must be ≥ 0 (0: λ_k of each reference metric), "
                             f"got {self.ngd_damped_gamma}")
        if self.ngd_mode == "per-sample" and self.ngd_damping <= 0:
            raise InputError("the per-sample natural-gradient mode needs ngd_damping > 0 "
                             "(its metric is recomputed at the samples; undamped it explodes)")
        if not math.isfinite(self.entropy_weight) or self.entropy_weight < 0:
            raise InputError(f"entropy_weight must be finite and ≥ 0, got {self.entropy_weight}")

    def precondition(self, metric: "ngd.ReferenceMetric", grad: torch.Tensor) -> torch.Tensor:
        """``grad`` through the faithful reference ``metric`` in this mode's form."""
        gamma = self.ngd_damped_gamma if self.ngd_damped_gamma > 0 else None
        return metric.precondition(grad, self.ngd_form,
                                   gamma if self.ngd_form == "damped" else None)

    @property
    def effective_entropy_weight(self) -> float:
        """The weight one process puts on its entropy term (``effective_entropy_weight``)."""
        return self.process_entropy_weight(1)

    def process_entropy_weight(self, world_size: int) -> float:
        """The weight each of ``world_size`` data-parallel processes puts on the entropy term
        of its share (``batch_size / world_size`` samples) of the batch."""
        return effective_entropy_weight(self.entropy_weight, self.batch_size // world_size,
                                        self.entropy_reduction)


def effective_entropy_weight(authors_weight: float, batch_size: int,
                             reduction: str = "sum") -> float:
    """λ in this process's units for λ_authors: each sample's entropy weighs
    ``AUTHORS_GPU_BATCH``·λ_authors times its GAN loss (a batch mean), so a sum over a batch of
    ``batch_size`` takes 16·λ_authors / b and a batch mean takes 16·λ_authors. ``batch_size``
    is the process's own batch: on N data-parallel processes sharing a batch B, b = B / N
    (the gradient average over the processes divides the sum by N again), so λ_authors keeps
    its units whatever the number of processes."""
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    scale = AUTHORS_GPU_BATCH * authors_weight
    return scale / batch_size if reduction == "sum" else scale


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
                 seed: int, method: str = "lanczos", partial: PartialState | None = None):
    """The faithful natural-gradient metric: top-k eigenpairs of the LPIPS-style Hessian at
    G(z_j) for ``ngd_codes`` random codes z_j, computed once (docs/method.md, "The transfer-learning framework");
    ``partial``: saved after each reference code, resumed there."""
    codes = reference_codes(generator.z_dim, settings.ngd_codes, seed)
    generator.eval()
    device = next(generator.parameters()).device
    with torch.no_grad():
        images = generator(codes.to(device))
    return ngd.build_reference_metric(distance, images, settings.ngd_rank, method=method,
                                      damping=settings.ngd_damping, seed=seed, partial=partial)


# ----------------------------------------------------------------------------- fine-tuning
class TargetTerm:
    """The target's part of the generator loss in one mode, called by ``train_gan`` at every
    step with the generated batch: it also runs the collapse monitor on the EMA generator.

    ``entropy`` and ``entropy+ngd`` both return the surrogate Σ_i ⟨G(z_i), stopgrad(g̃_i)⟩,
    with g̃ = g (exactly the gradients of λ_H·H) or the natural gradient of g."""

    def __init__(self, mode: str, settings: "TransferSettings", seed: int, target: nn.Module,
                 generator_ema: nn.Module, monitor_latents: torch.Tensor, n_classes: int,
                 metric: ngd.ReferenceMetric | None, distance: nn.Module | None,
                 device: str, world: World = SINGLE) -> None:
        self.mode, self.settings, self.seed = mode, settings, seed
        self.view_seed = rank_seed(seed, world.rank, world.size)   # each rank's own views
        self.weight = settings.process_entropy_weight(world.size)
        self.target, self.generator_ema, self.monitor_latents = target, generator_ema, monitor_latents
        self.n_classes, self.metric, self.distance = n_classes, metric, distance
        self.view = target_view(settings.target_size).to(device)
        self.monitor: list[dict] = []
        self._per_sample: dict[str, torch.Tensor] = {}

    def observe(self, step: int, recompute: bool = True) -> None:
        """One monitor record of the EMA generator at ``step``, with batch-norm statistics of
        its own (``recompute=False``: they are already, as at the end of ``train_gan``)."""
        if recompute:      # 2,048 codes suffice to monitor; the saved G_ema gets the full count
            standing_statistics(self.generator_ema, derive_seed(self.seed, "standing_statistics"),
                                batches=MONITOR_STANDING_BATCHES)
        self.monitor.append({"step": step, **monitor_generator(
            self.generator_ema, self.target, self.monitor_latents, self.n_classes,
            self.settings.collapse_max_share)})

    def direction(self, grad: torch.Tensor, fake: torch.Tensor, step: int) -> torch.Tensor:
        """The image-space direction pushed into G: g, or its natural gradient."""
        s = self.settings
        if self.mode not in NATURAL_GRADIENT_MODES:
            return grad
        if s.ngd_mode == "faithful":
            return s.precondition(self.metric, grad)
        if step % s.ngd_refresh_every == 0 or not self._per_sample:
            vals, vecs = ngd.metric_at(self.distance, fake.detach(), s.ngd_rank, seed=step)
            self._per_sample.update(vals=vals, vecs=vecs)
        return ngd.precondition(grad, self._per_sample["vals"], self._per_sample["vecs"],
                                damping=s.ngd_damping, form=s.ngd_form)

    def __call__(self, fake: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        s = self.settings
        if step % s.monitor_every == 0:
            self.observe(step)
        if self.mode == "vanilla":
            return fake.new_zeros(()), {}
        with seeded_rng(self.view_seed, f"view/{step}"):  # the view's draws leave the GAN's alone
            logits = self.target(self.view(fake))
        term = self.weight * target_objective(logits, s.entropy_objective, s.entropy_reduction)
        (grad,) = torch.autograd.grad(term, fake, retain_graph=True)
        direction = self.direction(grad, fake, step)
        stats = {"target_entropy": prediction_entropy(logits.detach()).mean().item(),
                 "grad_norm": grad.flatten(1).norm(dim=1).mean().item(),
                 "direction_norm": direction.flatten(1).norm(dim=1).mean().item()}
        return surrogate_loss(fake, direction), stats


def fine_tune(mode: str, generator: nn.Module, discriminator: nn.Module, target: nn.Module,
              public_images: torch.Tensor, settings: TransferSettings, seed: int, *,
              generator_ema: nn.Module | None = None, metric=None,
              distance: nn.Module | None = None, monitor_latents: torch.Tensor | None = None,
              device: str = "cpu", progress: bool | None = None,
              partial=None, world: World = SINGLE) -> TransferResult:
    """Fine-tune copies of (generator, discriminator) on ``public_images`` in ``mode``.

    The inputs are not modified. ``target`` is frozen. ``entropy+ngd`` needs ``metric`` (a
    ``lib.ngd.ReferenceMetric``, faithful mode) or ``distance`` (per-sample mode, or to
    build the faithful metric here). ``monitor_latents``: fixed codes for the collapse
    monitor (default: ``settings.monitor_samples`` codes from ``seed``). ``partial``: a
    ``lib.artifacts.PartialState`` to save to and resume from (the per-sample metric is
    recomputed at the step a resumed run starts from). ``world``: data-parallel over its
    processes (``lib.training.train_gan``), each rank's target views from its own stream and
    its entropy term weighted for its share of the batch (see the module).
    """
    check_mode(mode)
    settings.check()
    G, D = copy.deepcopy(generator).to(device), copy.deepcopy(discriminator).to(device)
    G_ema = copy.deepcopy(generator_ema if generator_ema is not None else generator).to(device)
    T = copy.deepcopy(target).to(device).eval().requires_grad_(False)
    n_classes = T.head.out_features if hasattr(T, "head") else int(
        T(public_images[:1].to(device)).shape[1])
    natural = mode in NATURAL_GRADIENT_MODES
    if natural and settings.ngd_mode == "faithful" and metric is None:
        if distance is None:
            raise InputError(f"{mode} needs the natural-gradient metric: pass metric= "
                             "(lib.ngd.ReferenceMetric) or distance= to build it")
        metric = build_metric(G, distance.to(device), settings, derive_seed(seed, "ngd_codes"))
    if natural and settings.ngd_mode == "per-sample" and distance is None:
        raise InputError("the per-sample natural-gradient mode needs distance= "
                         "(the perceptual distance whose metric is recomputed)")
    if monitor_latents is None:
        monitor_latents = torch.randn(settings.monitor_samples, G.z_dim,
                                      generator=torch.Generator().manual_seed(
                                          derive_seed(seed, "monitor")))
    term = TargetTerm(mode, settings, seed, T, G_ema, monitor_latents, n_classes, metric,
                      distance, device, world)
    G_ema, history = train_gan(
        G, D, public_images, steps=settings.steps, batch_size=settings.batch_size,
        lr=settings.lr, seed=seed, r1_gamma=settings.r1_gamma, r1_every=settings.r1_every,
        ema_kimg=settings.ema_kimg, ema_rampup=settings.ema_rampup, augment=settings.augment,
        generator_ema=G_ema,
        extra_generator_loss=term, device=device, progress=progress,
        desc=f"transfer ({mode})", partial=partial, extra_state={"monitor": term.monitor},
        world=world)
    term.observe(settings.steps, recompute=False)   # train_gan gave G_ema its statistics
    return TransferResult(mode, G.cpu().eval(), G_ema.cpu().eval(), D.cpu().eval(), history,
                          term.monitor)


# ----------------------------------------------------------------------------- λ sweep
SWEEP_WEIGHTS = (0.003, 0.01, 0.02, 0.04, 0.1, 0.2, 0.5, 1.0)
"""The λ_H grid of the sweep, in the authors' units (1: the paper's value)."""
SWEEP_RULE = ("among the weights whose generator never collapsed (at no monitor point did one "
              "target class take more than collapse_max_share of the monitored samples), the "
              "one with the lowest final mean target entropy on the monitored samples; ties go "
              "to the smaller weight. It looks at generated samples and the target only, "
              "never at E, D or R (the evaluator's view of each weight is reported beside it, "
              "never used to choose).")


def choose_weight(rows: list[dict]) -> dict:
    """The sweep row chosen by ``SWEEP_RULE`` (rows: weight, collapsed_any, final_entropy).

    When every weight collapsed, the smallest weight is returned with ``all_collapsed``.
    """
    if not rows:
        raise InputError("choose_weight: the sweep has no rows")
    safe = [r for r in rows if not r["collapsed_any"]]
    if not safe:
        return {**min(rows, key=lambda r: r["weight"]), "all_collapsed": True}
    best = min(safe, key=lambda r: (round(r["final_entropy"], 6), r["weight"]))
    return {**best, "all_collapsed": False}


def gradient_scale(generator: nn.Module, target: nn.Module, metric: ngd.ReferenceMetric,
                   settings: TransferSettings, seed: int) -> float:
    """Mean ‖natural gradient‖ / ‖gradient‖ of the entropy term over one batch of
    ``generator``, in ``settings``' form; the sweep centres the natural-gradient modes' grids
    with it (the preconditioner changes the size of the step by orders of magnitude)."""
    G = generator.eval()
    z = torch.randn(settings.batch_size, G.z_dim,
                    generator=torch.Generator().manual_seed(derive_seed(seed, "scale")))
    fake = G(z).detach().requires_grad_(True)
    with global_seed(seed):
        logits = target.eval()(target_view(settings.target_size)(fake))
    (grad,) = torch.autograd.grad(entropy_loss(logits, settings.entropy_reduction), fake)
    nat = settings.precondition(metric, grad)
    return (nat.flatten(1).norm(dim=1) / grad.flatten(1).norm(dim=1).clamp_min(1e-30)
            ).mean().item()
