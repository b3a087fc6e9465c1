"""The heavy stages as commands that ``torchrun`` can launch (``python -m lib.cli stage``).

Each stage calls the same ``require_*`` functions the notebooks call, with a
``lib.distributed.World``, so it writes exactly the artefacts the notebooks look for (a
notebook run afterwards loads them): classifier training, GAN pretraining and the transfers
run data-parallel; the attacks and the evaluation's feature extraction are shared out by
class. Only rank 0 writes. Under one process (no torchrun) a stage is what the notebook does.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from ..config import ATTACKS, MODES, attack_seeds, check_attack, check_mode, trained_roles
from ..data import dataset
from ..distributed import World, main_first
from ..errors import InputError
from .attacks import require_attack
from .classifiers import require_classifier
from .evaluation import require_features
from .gan import require_gan
from .transfer import require_transfer, transfer_inputs

STAGES = ("classifiers", "gan", "transfer", "attack", "features", "all")
"""The stages in pipeline order (``all``: every one of them, every mode, seed and attack)."""


def _chosen(given: Sequence | None, every: Iterable, what: str) -> list:
    """``given`` (checked against ``every``), or ``every`` when nothing is given."""
    every = list(every)
    if not given:
        return every
    unknown = [g for g in given if g not in every]
    if unknown:
        raise InputError(f"{what} {unknown} not in this run's config; valid: "
                         f"{', '.join(map(str, every))}")
    return list(given)


def run(stage: str, ctx, world: World, *, attacks: Sequence[str] | None = None,
        modes: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
        log: Callable[[str], None] = print) -> list[dict]:
    """Run ``stage`` (one of ``STAGES``) in the run folder of ``ctx`` on the processes of
    ``world``; ``attacks``, ``modes`` and ``seeds`` narrow the transfer and attack stages
    (default: all of the config). Returns one row per artefact: what, seconds, reused."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    for mode in modes or ():
        check_mode(mode)
    for name in attacks or ():
        check_attack(name)
    say = log if world.main else (lambda _: None)
    with main_first(world):                      # rank 0 decodes (and caches) the data first
        data, split = dataset.load(ctx.cfg)
    rows: list[dict] = []

    def done(what: str, start: float, reused: bool) -> None:
        rows.append({"stage": what, "seconds": round(time.perf_counter() - start, 2),
                     "reused": reused, "processes": world.size})
        say(f"{what}: {'reused' if reused else 'built'} in {rows[-1]['seconds']:.1f} s "
            f"({world.size} process{'es' if world.distributed else ''})")

    if stage in ("classifiers", "all"):
        for role in trained_roles(ctx.cfg):
            start = time.perf_counter()
            info = require_classifier(ctx, role, data, split, world)[2]
            done(f"classifier {role}", start, info["reused"])
    if stage in ("gan", "all"):
        start = time.perf_counter()
        info = require_gan(ctx, data, split, world)[3]
        done("gan prior", start, info["reused"])
    inputs = None                 # the attacks need them only for a transfer still missing
    if stage in ("transfer", "all"):
        inputs = transfer_inputs(ctx, data, split, world)
        for seed in _chosen(seeds, ctx.cfg["seeds"], "seeds"):
            for mode in _chosen(modes, MODES, "modes"):
                start = time.perf_counter()
                _, info = require_transfer(ctx, mode, seed, inputs, world=world)
                done(f"transfer {mode} seed {seed}", start, info["reused"])
    if stage in ("attack", "all"):
        target = require_classifier(ctx, "target", data, split, world)[0]
        for name in _chosen(attacks, ATTACKS, "attacks"):
            for mode in _chosen(modes, MODES, "modes"):
                runs_in = attack_seeds(ctx.cfg, name, mode)   # given seeds it does not run in
                for seed in [s for s in _chosen(seeds, ctx.cfg["seeds"], "seeds")   # are skipped
                             if s in runs_in]:
                    start = time.perf_counter()
                    _, info = require_attack(ctx, name, mode, seed, inputs, target=target,
                                             world=world)
                    done(f"attack {name} {mode} seed {seed}", start, info["reused"])
    if stage in ("features", "all"):
        start = time.perf_counter()
        reused = require_features(ctx, data, split, world)
        done("features", start, reused)
    return rows
