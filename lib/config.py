"""The three profiles (smoke, cpu, paper) as one table, their resolution with overrides, and
which config entries each stage's artefacts depend on. Reads no files.

One code path, three sizes: every notebook reads its sizes from the resolved config and
nothing else. ``resolve("cpu", {"target_epochs": 5})`` returns a read-only mapping; an
unknown profile or override key is a ``ConfigError`` (a ``ValueError``) that lists the valid
ones.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import textwrap
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .errors import ConfigError

MODES = ("vanilla", "entropy", "entropy+ngd")
"""The transfer modes of the framework (the paper's three), all from one pretrained prior."""
OUR_MODES = ("entropy+ngd-damped",)
"""Ours, labelled as a deviation: the natural gradient (H_k + γI)⁻¹ g instead of the paper's
rank-k pseudo-inverse (``lib.ngd``)."""
ALL_MODES = MODES + OUR_MODES
NATURAL_GRADIENT_MODES = ("entropy+ngd", "entropy+ngd-damped")
ATTACKS = ("ppa", "gmi")
"""The model-inversion attacks: PPA-style (Struppek et al. 2022), GMI-style (Zhang et al. 2020)."""
ROLES = ("target", "evaluator", "perceptual")
"""The three classifiers: target T (attacked), evaluator E (the judge), perceptual P (attacker's)."""

# Keys shared by every profile; each profile below overrides some of them.
_BASE: dict[str, Any] = {
    "dataset": "fashion-mnist",      # fashion-mnist (smoke, cpu) | faces (paper)
    "face_split": "",                # faces: our split file (python -m lib.cli faces split)
    "split": "same-class",           # same-class | class-disjoint | cluster-shift (docs/protocol.md)
    "split_seed": 0,                 # seed of the committed split index files in data/splits
    "private_classes": [0, 2, 3, 5, 7],
    "private_per_class": 100,        # |D| per private class; |R| is the same
    "image_size": 32,
    "device": "auto",                # auto | cpu | cuda; smoke forces cpu
    "amp": False,                    # bf16 autocast + channels-last in classifier training (GPU)
    "checkpoint_every_s": 0,         # save a stage's partial state this often (0: off)
    "seeds": [0, 1, 2],              # repetitions looped inside the notebooks that need them
    "batch_size": 128,
    # target T (MCNN family), trained on D
    "target_arch": "mcnn",
    "target_width": 32,
    "target_epochs": 60,
    "target_lr": 2e-3,
    "target_augment": True,          # random 2-px shifts and horizontal flips
    "target_loss": "focal",          # focal (the paper) | ce
    "target_head": "gap",            # gap | flatten-bn (the paper's VGG16-BN head)
    "focal_gamma": 2.0,
    # evaluator E (SCNN family), 10-way, trained on the train split minus D and R
    "eval_arch": "scnn",
    "eval_width": 24,
    "eval_epochs": 5,
    "eval_augment": False,
    "eval_lr": 2e-3,
    "eval_train_limit": 0,           # 0 = all eligible images
    # attacker's perceptual network P, trained on the public set only
    "perc_arch": "mcnn",
    "perc_width": 32,
    "perc_epochs": 2,
    "perc_augment": False,
    "perc_lr": 2e-3,
    "perc_train_limit": 0,           # 0 = all public images
    "lpips_resize": 256,             # perc_arch lpips-vgg: inputs resized to this (0: none)
    # evaluation (metrics issue); reconstructions per class ≥ private samples per class
    "recon_per_class": 100,
    "prdc_k": 3,
    "n_permutations": 1000,
    "judge_streaming": False,        # the judge embeds D, R and every scored set class by class,
                                     #   never holding a whole set's distance embeddings (paper)
    # the attacker's GAN prior (DCGAN-style, 32×32), pretrained on the public set only
    "gan_z_dim": 64,
    "gan_width": 32,                 # generator channels at 16×16 (×2, ×4 deeper)
    "gan_d_width": 32,
    "gan_steps": 2000,
    "gan_batch": 64,
    "gan_lr": 2e-4,
    "gan_r1_gamma": 1.0,             # lazy R1 weight (γ), applied every gan_r1_every steps
    "gan_r1_every": 16,
    "gan_ema_kimg": 10.0,            # half-life of the generator EMA in thousands of images
    "gan_augment": False,            # differentiable augmentation of D's inputs (kornia)
    "gan_train_limit": 0,            # 0 = all public images
    "fid_samples": 5000,             # generated vs public images for FID-E of a generator
    "fid_network": "evaluator",      # evaluator (FID-E) | inception (+ the paper's Inception FID)
    # transfer (docs/method.md, "The transfer-learning framework"): vanilla | entropy | entropy+ngd from the same checkpoint
    "transfer_steps": 300,
    "transfer_lr": 2e-4,
    "transfer_ema_rampup": 0.05,     # the transfer's EMA half-life ≤ 0.05 × images seen
                                     #   (StyleGAN2-ADA's ramp-up; 0: off, 10-kimg throughout)
    "entropy_weight": 1.0,           # λ_H of `entropy`, authors' units (the paper: 1; = 16/b on a
    "ngd_entropy_weight": 1.0,       #   batch-b sum); of `entropy+ngd`. cpu: the committed sweep
    "entropy_reduction": "sum",      # sum over the batch (the paper) | mean
    "entropy_objective": "entropy",  # entropy (the paper) | spread (deviation: minus batch-mean entropy)
    "ngd_rank": 20,                  # top-k eigenpairs of the LPIPS-style metric
    "ngd_codes": 16,                 # reference codes (the paper's per-GPU batch); row i uses i mod 16
    "ngd_mode": "faithful",          # faithful (the paper) | per-sample (deviation: damped, refreshed)
    "ngd_damping": 0.0,              # added to the eigenvalues (faithful: 0)
    "ngd_refresh_every": 50,         # per-sample mode: recompute the metric every N steps
    "ngd_damped_gamma": 0.0,         # entropy+ngd-damped (ours): γ of (H_k + γI)⁻¹; 0: λ_k of each
                                     #   reference metric (the per-sample mode uses ngd_damping)
    "ngd_damped_entropy_weight": 1.0,  # its λ_H, authors' units; cpu: the committed sweep
    "monitor_samples": 512,          # fixed codes for the class histogram / collapse monitor
    "monitor_every": 25,
    "collapse_max_share": 0.5,       # collapsed when one target class takes more of the samples
    # attacks (docs/method.md, "The attacks"): PPA-style (Struppek et al. 2022) and GMI-style (Zhang et al. 2020)
    "attack_pool": 3000,             # PPA initial latents, shared across classes
    "attack_candidates": 150,        # PPA latents optimised per class (≥ recon_per_class)
    "attack_steps": 70,              # PPA Adam steps on the latents
    "attack_lr": 0.05,               # Adam learning rate on z
    "attack_truncation": 1.0,        # scale of the initial latents (1 = none)
    "attack_final_aug": 50,          # augmentations averaged in the final robust confidence
    "gmi_steps": 150,                # GMI SGD steps on the latents
    "gmi_lr": 0.02,                  # SGD (momentum 0.9) learning rate on z
    "gmi_restarts": 2,               # random restarts; the lowest final loss per row is kept
    "gmi_lambda_id": 100.0,          # weight of the identity (cross-entropy) loss
    "gmi_seeds": 1,                  # GMI on entropy / entropy+ngd: the first N profile seeds
    "gmi_vanilla_seeds": 1,          # GMI on vanilla: the first N (C0b's paired test; PPA: every seed)
    # defence (claim C3b): T retrained without the flagged set / a random set, per seed
    "defense_retrain_seeds": 2,
    # positive controls of the membership tests (claims C1b, C1c; oracle projections)
    "reach_per_class": 20,           # D and R images per class projected onto the prior
    "projection_steps": 150,         # Adam steps of an oracle projection (lr 0.05)
    "projection_restarts": 4,        # random starting codes per projected image
    # runner (settings that cannot change results: not compared on a resume)
    "cell_timeout_s": 0,             # a cell's time limit in seconds (0: none; each notebook's
                                     #   wall time is printed against its budget instead)
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_BASE,
        "device": "cpu",
        "private_per_class": 20,
        "seeds": [0],
        "target_epochs": 15,
        "eval_epochs": 1,
        "eval_train_limit": 3000,
        "perc_epochs": 1,
        "perc_train_limit": 3000,
        "recon_per_class": 20,
        "n_permutations": 200,
        "gan_width": 16,
        "gan_d_width": 16,
        "gan_steps": 300,
        "gan_train_limit": 3000,
        "fid_samples": 1000,
        "transfer_steps": 12,
        "ngd_rank": 4,
        "ngd_codes": 4,
        "monitor_samples": 128,
        "monitor_every": 4,
        "attack_pool": 300,
        "attack_candidates": 20,
        "attack_steps": 8,
        "attack_final_aug": 8,
        "gmi_steps": 10,
        "gmi_restarts": 2,
        "reach_per_class": 5,
        "projection_steps": 20,
        "projection_restarts": 2,
    },
    "cpu": {**_BASE,
            "seeds": [0, 1, 2, 3, 4],     # five seeds: C0b, C2, C2d read paired t intervals
            "gmi_vanilla_seeds": 5,       # GMI on vanilla in every seed (C0b), the other modes
            "gmi_seeds": 2,               #   in two (descriptive)
            "entropy_weight": 0.04,       # authors' units; chosen by the committed sweep
            "ngd_entropy_weight": 5.0,    # (results/entropy_sweep.json), one rule for every mode
            "ngd_damped_entropy_weight": 0.04},
    "paper": {
        **_BASE,
        "dataset": "faces",
        "face_split": "data/splits/faces.json",
        "amp": True,
        "checkpoint_every_s": 300,
        "private_classes": list(range(200)),
        "private_per_class": 0,      # faces: every image of a private identity but the held-out 3
        "image_size": 112,
        "device": "cuda",
        "target_arch": "vgg16_bn",
        "target_head": "flatten-bn",
        "target_width": 64,
        "target_epochs": 100,
        "eval_arch": "resnet",
        "eval_epochs": 50,
        "perc_arch": "lpips-vgg",
        "fid_network": "inception",
        "batch_size": 64,
        "recon_per_class": 50,
        "gan_z_dim": 128,            # the larger prior (its 64–128 px generator: the paper-profile issue)
        "gan_width": 64,
        "gan_d_width": 64,
        "gan_steps": 50000,
        "gan_r1_gamma": 10.0,        # the paper's γ at 256 px
        "gan_augment": True,
        "transfer_steps": 3000,
        "attack_pool": 5000,         # docs/method.md, "The attacks": 5,000 latents, truncation 0.5, 200 candidates,
        "attack_candidates": 200,    # Adam lr 5e-3 for 70 steps, best 50 by 100 augmentations
        "attack_lr": 0.005,
        "attack_truncation": 0.5,
        "attack_final_aug": 100,
        "judge_streaming": True,     # LPIPS-VGG at 256 px: 32 MB per image (docs/paper_profile.md)
    },
}

PROFILE_NOTES = {
    "smoke": "golden outputs of the committed notebooks, nbval and CI; CPU always",
    "cpu": "small-scale reproduction of every claim on real data, with seeds (default)",
    "paper": "the paper's scale (faces, larger models) on a GPU; resumable stages",
}


# ------------------------------------------------------------------ what each key may hold
RUNNER_KEYS = ("cell_timeout_s",)
"""Keys that cannot change a result: a resume does not compare them and the notebooks do not
receive them (their fingerprints stay the same when they change)."""
DEVICES = ("auto", "cpu", "cuda")
DATASET_CLASSES = {"fashion-mnist": 10}
"""Classes of the data sets whose classes are known without reading them (faces: the split
file says, checked by ``lib.data.faces.check_inputs``)."""
SPLIT_KINDS = ("same-class", "class-disjoint", "cluster-shift")
IMAGE_SIZES = (32, 56, 64, 112, 128)
"""The generator's sizes (``lib.models.GAN_SIZES``; a test keeps the two equal)."""
CLASSIFIER_ARCHS = ("mcnn", "scnn", "vgg16_bn", "resnet18", "resnet50", "resnet")
"""``lib.models``' architectures (a test keeps the two equal); P may also be ``lpips-vgg``."""

_INT_AT_LEAST_0 = ("split_seed", "checkpoint_every_s", "eval_train_limit", "perc_train_limit",
                   "gan_train_limit", "lpips_resize", "cell_timeout_s")
_INT_AT_LEAST_1 = ("batch_size", "target_width", "target_epochs", "eval_width", "eval_epochs",
                   "perc_width", "perc_epochs", "recon_per_class", "prdc_k", "n_permutations",
                   "gan_z_dim", "gan_width", "gan_d_width", "gan_steps", "gan_r1_every",
                   "transfer_steps", "ngd_rank", "ngd_codes", "ngd_refresh_every",
                   "monitor_samples", "monitor_every", "attack_pool", "attack_candidates",
                   "attack_steps", "attack_final_aug", "gmi_steps", "gmi_restarts", "gmi_seeds",
                   "gmi_vanilla_seeds", "defense_retrain_seeds", "reach_per_class",
                   "projection_steps", "projection_restarts")
_INT_AT_LEAST_2 = ("gan_batch", "fid_samples")          # batch statistics, a covariance
_POSITIVE = ("target_lr", "eval_lr", "perc_lr", "gan_lr", "transfer_lr", "attack_lr", "gmi_lr",
             "attack_truncation", "gan_ema_kimg")
_NON_NEGATIVE = ("focal_gamma", "gan_r1_gamma", "transfer_ema_rampup", "entropy_weight",
                 "ngd_entropy_weight", "ngd_damped_entropy_weight", "ngd_damping",
                 "ngd_damped_gamma", "gmi_lambda_id")
CHOICES: dict[str, tuple] = {
    "dataset": ("fashion-mnist", "faces"), "split": SPLIT_KINDS, "device": DEVICES,
    "image_size": IMAGE_SIZES, "target_arch": CLASSIFIER_ARCHS, "eval_arch": CLASSIFIER_ARCHS,
    "perc_arch": CLASSIFIER_ARCHS + ("lpips-vgg",), "target_loss": ("focal", "ce"),
    "target_head": ("gap", "flatten-bn"), "fid_network": ("evaluator", "inception"),
    "entropy_reduction": ("sum", "mean"), "entropy_objective": ("entropy", "spread"),
    "ngd_mode": ("faithful", "per-sample")}


def _index_list(value: list, high: int | None) -> str | None:
    """What is wrong with a list of class indices or seeds (None: nothing)."""
    if not value:
        return "a non-empty list"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return "a list of integers ≥ 0"
    if len(set(value)) != len(value):
        return "a list without repeats"
    if high is not None and max(value) >= high:
        return f"a list of classes of the data set, each in 0..{high - 1}"
    return None


def domain_problem(key: str, cfg: Mapping[str, Any]) -> str | None:
    """What ``cfg[key]`` must be when its value is outside the key's domain; None when it is
    inside. Types are checked before (``resolve``)."""
    value = cfg[key]
    if key in CHOICES:
        return None if value in CHOICES[key] else "one of " + ", ".join(map(str, CHOICES[key]))
    for keys, low, text in ((_INT_AT_LEAST_0, 0, "an integer ≥ 0"),
                            (_INT_AT_LEAST_1, 1, "an integer ≥ 1"),
                            (_INT_AT_LEAST_2, 2, "an integer ≥ 2")):
        if key in keys:
            return None if value >= low else text
    if key in _POSITIVE:
        return None if value > 0 and math.isfinite(value) else "a finite number > 0"
    if key in _NON_NEGATIVE:
        return None if value >= 0 and math.isfinite(value) else "a finite number ≥ 0"
    if key == "collapse_max_share":
        return None if 0 < value <= 1 else "a share in (0, 1]"
    if key == "seeds":
        return _index_list(value, None)
    if key == "private_classes":
        return _index_list(value, DATASET_CLASSES.get(cfg["dataset"]))
    if key == "private_per_class":
        if cfg["dataset"] == "fashion-mnist":     # D and R from each class's 6,000 train images
            return None if 1 <= value <= 3000 else "an integer in 1..3000 for fashion-mnist"
        return None if value >= 0 else "an integer ≥ 0 (0: every image of the identity)"
    if key == "face_split" and cfg["dataset"] == "faces":
        return None if value else "the path of the face split file (python -m lib.cli faces split)"
    return None


def _cross_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Constraints between keys, each one line naming both."""
    problems = []
    if cfg["attack_candidates"] < cfg["recon_per_class"]:
        problems.append(f"attack_candidates={cfg['attack_candidates']} must be ≥ recon_per_class="
                        f"{cfg['recon_per_class']} (the best candidates of a class are kept)")
    if cfg["attack_pool"] < cfg["attack_candidates"]:
        problems.append(f"attack_pool={cfg['attack_pool']} must be ≥ attack_candidates="
                        f"{cfg['attack_candidates']} (candidates are drawn from the pool)")
    return problems


def check_domains(cfg: Mapping[str, Any], changed: Sequence[str] = ()) -> None:
    """Raise ``ConfigError`` naming the key, its value and what is allowed when a value is
    outside its domain (the keys in ``changed``, the overrides, are named as such)."""
    for key in sorted(cfg, key=lambda k: (k not in changed, k)):
        allowed = domain_problem(key, cfg)
        if allowed is not None:
            kind = "override" if key in changed else "profile value"
            raise ConfigError(f"{kind} {key}={cfg[key]!r} is not allowed: {key} must be {allowed}")
    problems = _cross_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def check_device(device: str, cfg: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for a ``--device`` that is not auto, cpu or cuda, or that leaves
    the CPU under the smoke profile (whether CUDA is present is checked where it is used)."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if cfg["profile"] == "smoke" and device not in ("auto", "cpu"):
        raise ConfigError("the smoke profile always runs on the CPU (its golden outputs are CPU "
                          "values); use --device auto or cpu, or the cpu profile")


def _compatible(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (int, str, list)):
        return isinstance(value, type(default))
    return True


def resolve(profile: str, overrides: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The config of ``profile`` with ``overrides`` applied, read-only.

    Raises ``ValueError`` (a ``ConfigError``) for an unknown profile, an unknown override key,
    a value of the wrong type or outside its domain (``check_domains``), or an attempt to
    leave the CPU under ``smoke``.
    """
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}"
        )
    cfg = copy.deepcopy(PROFILES[profile])
    for key, value in dict(overrides or {}).items():
        if key not in cfg:
            raise ConfigError(
                f"unknown override key {key!r} for profile {profile!r}; valid keys: "
                + ", ".join(sorted(cfg))
            )
        if not _compatible(cfg[key], value):
            raise ConfigError(
                f"override {key}={value!r} has type {type(value).__name__}; "
                f"expected {type(cfg[key]).__name__} like the default {cfg[key]!r}"
            )
        cfg[key] = float(value) if isinstance(cfg[key], float) else value
    if profile == "smoke" and cfg["device"] != "cpu":
        raise ConfigError("the smoke profile always runs on the CPU (its golden outputs are CPU "
                         "values); drop the 'device' override or use the cpu profile")
    check_domains(cfg, changed=list(dict(overrides or {})))
    cfg["profile"] = profile
    return MappingProxyType(cfg)


def format_config(cfg: Mapping[str, Any]) -> str:
    """The resolved config as sorted ``key = value`` lines (stable, pinned in notebooks)."""
    return "\n".join(f"{k} = {cfg[k]!r}" for k in sorted(cfg))


def table() -> list[dict[str, Any]]:
    """One row per profile with the sizes that differ between them, for display."""
    keys = ["dataset", "image_size", "private_per_class", "seeds", "target_epochs",
            "eval_epochs", "eval_train_limit", "perc_epochs", "gan_steps", "transfer_steps",
            "device"]
    return [{"profile": p, **{k: PROFILES[p][k] for k in keys}, "purpose": PROFILE_NOTES[p]}
            for p in PROFILES]


# ------------------------------------------------------------------ the configuration echo
SHARED_KEYS = ("dataset", "split", "split_seed", "private_classes", "private_per_class",
               "image_size", "seeds")
NOTEBOOK_KEYS: dict[str, tuple[str, ...]] = {
    "00_overview": (),
    "01_data": ("eval_train_limit", "perc_train_limit", "gan_train_limit", "face_split"),
    "02_classifiers": ("target_", "eval_", "perc_", "focal_gamma", "batch_size", "amp"),
    "03_gan_prior": ("gan_", "fid_samples", "fid_network", "monitor_", "collapse_"),
    "04_transfer": ("transfer_", "entropy_", "ngd_", "monitor_", "collapse_", "fid_samples"),
    "05_attacks": ("attack_", "gmi_", "recon_per_class"),
    "06_evaluation": ("recon_per_class", "n_permutations", "prdc_k", "fid_network",
                      "reach_per_class", "projection_"),
    "07_defense": ("defense_", "recon_per_class", "fid_samples"),
    "08_memorisation": ("target_", "attack_", "recon_per_class", "n_permutations"),
    "99_summary": (),
}
"""Per notebook, the config keys (or key prefixes ending in "_") it reads, besides SHARED_KEYS."""


def notebook_keys(notebook: str, cfg: Mapping[str, Any]) -> list[str]:
    """The keys of ``cfg`` a notebook uses (all of them for a notebook not listed)."""
    if notebook not in NOTEBOOK_KEYS:
        return sorted(cfg)
    wanted = SHARED_KEYS + NOTEBOOK_KEYS[notebook]
    return sorted(k for k in cfg if any(k == w or (w.endswith("_") and k.startswith(w))
                                        for w in wanted))


def config_hash(cfg: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """A short sha256 of the config entries ``keys`` (all when None), order-independent."""
    keys = sorted(cfg) if keys is None else sorted(keys)
    text = json.dumps({k: cfg[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def echo(cfg: Mapping[str, Any], notebook: str, overrides: Mapping[str, Any] | None = None) -> str:
    """A short configuration echo: profile, overrides, a hash of the keys this notebook uses
    and those keys with their values. ``format_config`` prints everything."""
    keys = notebook_keys(notebook, cfg)
    lines = [f"profile {cfg['profile']!r}, overrides "
             f"{json.dumps(dict(overrides), sort_keys=True) if overrides else 'none'}",
             f"config hash {config_hash(cfg, keys)} (of the {len(keys)} keys this notebook uses; "
             "lib.config.format_config(ctx.cfg) prints all of them)"]
    pairs = ", ".join(f"{k}={cfg[k]!r}" for k in keys)
    lines += textwrap.wrap(pairs, width=100, initial_indent="  ", subsequent_indent="  ",
                           break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


# ------------------------------------------------------------------ what each artefact depends on
ROLE_KEYS = {"target": "target", "evaluator": "eval", "perceptual": "perc"}
DATASET_KEYS = {"fashion-mnist": (), "faces": ("face_split",)}
"""Config keys that only some data sets read (and so only their checkpoints record)."""


def trained_roles(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The roles trained here: all three, less P when d_P is the pretrained LPIPS-VGG."""
    return tuple(r for r in ROLES if not (r == "perceptual" and cfg["perc_arch"] == "lpips-vgg"))


def role_config(role: str, cfg: Mapping[str, Any]) -> dict:
    """The config entries a trained ``role`` depends on (stored with its checkpoint)."""
    key = ROLE_KEYS[role]
    keys = [k for k in cfg if k.startswith(key + "_")] + [
        "dataset", "split", "split_seed", "private_classes", "private_per_class",
        "image_size", "batch_size", "amp"] + (["focal_gamma"] if role == "target" else []) + list(
        DATASET_KEYS[cfg["dataset"]])
    return {k: cfg[k] for k in sorted(keys)}


def gan_config(cfg: Mapping[str, Any]) -> dict:
    """The config entries the pretrained GAN depends on (stored with its checkpoint)."""
    keys = [k for k in cfg if k.startswith("gan_")] + [
        "dataset", "split", "split_seed", "private_classes", "private_per_class", "image_size"]
    return {k: cfg[k] for k in sorted(keys)}


def transfer_config(cfg: Mapping[str, Any]) -> dict:
    """The config entries a transferred generator depends on (stored with its checkpoint)."""
    prefixes = ("transfer_", "entropy_", "ngd_", "monitor_", "collapse_")
    own = {k: cfg[k] for k in sorted(cfg) if k.startswith(prefixes)}
    return {**own, "gan": gan_config(cfg), "target": role_config("target", cfg),
            "perceptual": role_config("perceptual", cfg)}


def attack_config(cfg: Mapping[str, Any], name: str) -> dict:
    """The config entries an attack run depends on (its own counts and its generator's)."""
    check_attack(name)
    prefix = "attack_" if name == "ppa" else "gmi_"
    own = {k: cfg[k] for k in sorted(cfg) if k.startswith(prefix)}
    return {**own, "recon_per_class": cfg["recon_per_class"],
            "private_classes": list(cfg["private_classes"]), "transfer": transfer_config(cfg)}


ENTROPY_WEIGHT_KEYS = {"entropy": "entropy_weight", "entropy+ngd": "ngd_entropy_weight",
                       "entropy+ngd-damped": "ngd_damped_entropy_weight"}
"""The config key holding each target-driven mode's λ_H (authors' units)."""
CONTRAST_SPLIT = "same-class"
"""The split kept beside the confirmatory one as a descriptive contrast: its own
committed sweep and its published run, in a results folder named after the split."""


def contrast_overrides(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """The cpu profile's overrides for the contrast run: its split and the λ_H its own
    committed ``sweep`` chose per mode (``make contrast``)."""
    split = sweep.get("config", {}).get("gan", {}).get("split")
    if split != CONTRAST_SPLIT:
        raise ConfigError(f"the contrast's sweep was made on the {split!r} split, not "
                          f"{CONTRAST_SPLIT!r}; run `make sweep-contrast`")
    return {"split": CONTRAST_SPLIT,
            **{key: sweep["modes"][mode]["chosen"]["weight"]
               for mode, key in ENTROPY_WEIGHT_KEYS.items() if mode in sweep["modes"]}}


def attack_seeds(cfg: Mapping[str, Any], name: str, mode: str = "vanilla") -> list[int]:
    """The repetitions attack ``name`` runs in on generator ``mode``: every profile seed for
    PPA; for GMI the first ``gmi_vanilla_seeds`` on `vanilla` (C0b tests it) and the first
    ``gmi_seeds`` on the other modes (descriptive)."""
    check_attack(name)
    check_mode(mode)
    seeds = list(cfg["seeds"])
    if name == "ppa":
        return seeds
    return seeds[:max(1, int(cfg["gmi_vanilla_seeds" if mode == "vanilla" else "gmi_seeds"]))]


def check_mode(mode: str) -> None:
    if mode not in ALL_MODES:
        raise ConfigError(f"unknown transfer mode {mode!r}; valid: {', '.join(ALL_MODES)}")


def check_attack(name: str) -> None:
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")


def mode_slug(mode: str) -> str:
    """A file-name-safe form of a mode ("entropy+ngd" → "entropy-ngd")."""
    check_mode(mode)
    return mode.replace("+", "-")
