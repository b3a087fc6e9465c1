"""The memorisation regime, a committed study (``make regimes``): would sample-level leakage
show where the target memorises a few images per class?

For each regime size n (``REGIME_SIZES`` per private class), D′ and R′ are seeded subsets of
the committed D and R (so the prior, P and E, which never saw D or R, stay valid and are
reused), and a target is trained on D′ without augmentation until its training accuracy is 1.0
(the epochs double from ``EPOCH_LADDER[0]`` until it is; the train/test gap is reported). The
PPA-style attack (as many reconstructions per class as D′ has) runs on ``vanilla`` (its generator does not depend on the target) and on
``entropy+ngd`` (fine-tuned against the regime's target), for the first two profile seeds; its
reconstructions are scored against D′ and R′ with the main run's definitions: C1b, C1c and
their detection limit. Results go to ``results/regimes.json``, which notebook 08 reads.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import paths
from ..artifacts import read_json_if_present
from ..attacks.interface import run_attack
from ..claims import DETECTED, detection_limit, membership_claim, read_result, shift_claim
from ..data import dataset
from ..data.images import subset, to_private_labels
from ..data.split import Split
from ..errors import InputError
from ..inference import generate, predict_logits
from ..metrics.fidelity import topk_accuracy
from ..metrics.stats import holm
from ..seeding import derive_seed
from ..transfer import TransferSettings, fine_tune
from .attacks import attack_seed
from .classifiers import fit_classifier, require_classifier
from .evaluation import Sets, build_judge, dose_response, leak_scores, score_sets, strongest_attack
from .transfer import require_metric, require_transfer, transfer_inputs, transfer_seed

REGIME_SIZES = (10, 20)
EPOCH_LADDER = (50, 100, 200, 400, 800, 1600)


def results_file() -> Path:
    return paths.results_dir() / "regimes.json"


def load_results() -> dict | None:
    """The committed study's results, or None when it has not been run."""
    return read_json_if_present(results_file())


def regime_split(split: Split, labels: np.ndarray, per_class: int, seed: int) -> Split:
    """D′ and R′: ``per_class`` seeded members of each class of the committed D and of R; the
    public set, E's data and the test set unchanged."""
    rng = np.random.default_rng(seed)

    def pick(indices: np.ndarray) -> np.ndarray:
        out = []
        for c in split.private_classes:
            pool = indices[labels[indices] == c]
            if pool.size < per_class:
                raise InputError(f"class {c} has {pool.size} images; the regime needs {per_class}")
            out.append(np.sort(rng.choice(pool, per_class, replace=False)))
        return np.concatenate(out)

    return dataclasses.replace(split, per_class=per_class, private=pick(split.private),
                               reference=pick(split.reference))


def memorising_target(cfg, data, split: Split, seed: int,
                      device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """T trained on D′ without augmentation until its training accuracy is 1.0: trained afresh
    for each number of epochs of ``EPOCH_LADDER`` until one reaches it. Returns (T, facts:
    epochs, train and test accuracy, their gap). Trained and tested on ``device``."""
    classes = list(cfg["private_classes"])
    x_train, y_train = subset(data, split.private)
    x_test, y_test = subset(data, split.test, train=False)
    y_train, y_test = to_private_labels(y_train, classes), to_private_labels(y_test, classes)
    for epochs in EPOCH_LADDER:
        regime_cfg = {**cfg, "target_augment": False, "target_epochs": epochs}
        model, _, _ = fit_classifier("target", regime_cfg, data, split, seed, device)
        train_acc = topk_accuracy(predict_logits(model, x_train, device=device), y_train)
        if train_acc == 1.0:
            break
    test_acc = topk_accuracy(predict_logits(model, x_test, device=device), y_test)
    return model, {"epochs": epochs, "train_acc": train_acc, "test_acc": test_acc,
                   "gap": train_acc - test_acc, "reached_1": train_acc == 1.0}


def regime_sets(ctx, inputs, target: torch.nn.Module, seeds: list[int], per_class: int) -> Sets:
    """The PPA-style attack on ``vanilla`` and on ``entropy+ngd`` fine-tuned against
    ``target``, per seed: (images, original labels, starting points); ``per_class``
    reconstructions per class, as many as D′ has (the main run's rule: as many as D has)."""
    classes = list(ctx.cfg["private_classes"])
    attack_cfg = {**ctx.cfg, "recon_per_class": per_class}
    settings = TransferSettings.from_config(ctx.cfg, "entropy+ngd")
    sets: Sets = {}
    for seed in seeds:
        generators = {"vanilla": require_transfer(ctx, "vanilla", seed, inputs)[0].generator_ema}
        metric, _ = require_metric(ctx, seed, inputs)
        generators["entropy+ngd"] = fine_tune(
            "entropy+ngd", inputs.generator, inputs.discriminator, target, inputs.public_images,
            settings, transfer_seed(ctx, seed), generator_ema=inputs.generator_ema,
            metric=metric, device=ctx.device).generator_ema
        for mode, generator in generators.items():
            out = run_attack("ppa", generator.to(ctx.device), target.to(ctx.device), len(classes),
                             attack_cfg, attack_seed(ctx, "ppa", seed))
            labels = np.asarray(classes)[out["labels"].numpy()]
            sets[f"ppa/{mode}", seed] = (out["images"].cpu(), labels,
                                         generate(generator, out["start_latents"],
                                                  device=ctx.device))
    return sets


def run_regime(ctx, data, split: Split, per_class: int, inputs) -> dict[str, Any]:
    """One regime (see the module): the target's facts, every metric of every set, C1b, C1c
    and the detection limit."""
    start = time.perf_counter()
    seeds = list(ctx.cfg["seeds"])[:2]
    labels = data.train_labels.numpy()
    regime = regime_split(split, labels, per_class, ctx.subseed(f"regime/{per_class}"))
    target, facts = memorising_target(ctx.cfg, data, regime,
                                      derive_seed(ctx.subseed("target"), f"regime/{per_class}"),
                                      ctx.device)
    evaluator = require_classifier(ctx, "evaluator", data, split)[0]
    # D′ has 10 or 20 images per class: FID-E and per-class PRDC need more, and say so
    judge = build_judge(ctx, data, regime, evaluator, inputs.distance)
    sets = regime_sets(ctx, inputs, target, seeds, per_class)
    results = score_sets(ctx, judge, sets, audit=False).results
    strongest = strongest_attack(results)
    leaks = leak_scores(ctx, data, regime, judge, inputs.generator_ema)
    doses = dose_response(ctx, judge, {k: v for k, v in sets.items() if k[0] == strongest}, leaks)
    c1b, c1c = membership_claim(results), shift_claim(results)
    return {"per_class": per_class, "seeds": seeds, "target": facts, "strongest": strongest,
            "C1b": {k: v for k, v in c1b.items() if k != "table"},
            "C1b_table": c1b["table"].reset_index().to_dict(orient="records"),
            "C1c": {k: v for k, v in c1c.items() if k != "table"},
            "C1c_table": c1c["table"].reset_index().to_dict(orient="records"),
            "detection_limit": detection_limit(doses), "doses": doses.to_dict(orient="records"),
            "metrics": results.to_dict(orient="records"),
            "seconds": time.perf_counter() - start}


def run_study(ctx) -> dict[str, Any]:
    """Every regime of ``REGIME_SIZES`` (see the module)."""
    data, split = dataset.load(ctx.cfg)
    inputs = transfer_inputs(ctx, data, split)
    return {"regimes": [run_regime(ctx, data, split, n, inputs) for n in REGIME_SIZES],
            "sizes": list(REGIME_SIZES), "epoch_ladder": list(EPOCH_LADDER)}


def _limit_words(limit: dict[str, float | None]) -> str:
    seen = {kind: f for kind, f in limit.items() if f is not None}
    if not seen:
        return "no leak of any kind, even with every reconstruction replaced"
    return ", ".join(f"{kind} from f = {f:g}" for kind, f in sorted(seen.items(),
                                                                   key=lambda kv: kv[1]))


def study_tests(study: dict) -> list[dict]:
    """Every test of the study (per regime: C1b and C1c per attack × mode), each with its
    reading under the wording rules (verdict from its own regime's Holm family) and ``p_all``,
    Holm over all of the study's tests, printed beside."""
    rows = [{"per_class": r["per_class"], "claim": claim, **row} for r in study["regimes"]
            for claim in ("C1b", "C1c") for row in r[f"{claim}_table"]]
    for row, p_all in zip(rows, holm([row["p"] for row in rows])):
        row["p_all"] = float(p_all)
        row["reading"] = read_result(f"{row['per_class']}/class {row['claim']} {row['source']}",
                                     row["value"], row["low"], row["high"],
                                     bool(row["significant"]))
    return rows


def reading(study: dict) -> list[str]:
    """What the committed study says, in words generated from its numbers under the wording
    rules (docs/protocol.md): per regime, the target's facts, each test's reading with its Holm
    p within the regime and over all of the study's tests, and the tests' detection limits;
    then which tests were detected, under either correction."""
    tests = study_tests(study)
    lines = []
    for r in study["regimes"]:
        t = r["target"]
        mine = [row for row in tests if row["per_class"] == r["per_class"]]
        lines.append(
            f"{r['per_class']} per class (T: {t['epochs']} epochs, train accuracy "
            f"{t['train_acc']:.2f}, test {t['test_acc']:.2f}, gap {t['gap']:.2f}): "
            + "; ".join(f"{row['reading'].text} (Holm p {row['p_holm']:.2g} in the regime, "
                        f"{row['p_all']:.2g} over all {len(tests)})" for row in mine)
            + f". C1b's test sees {_limit_words(r['detection_limit']['C1b'])}; C1c's sees "
            f"{_limit_words(r['detection_limit']['C1c'])}.")
    detected = [row for row in tests if row["reading"].kind == DETECTED]
    if detected:
        lines.append("Detected within its regime: "
                     + "; ".join(f"{row['per_class']}/class {row['claim']} {row['source']}"
                                 for row in detected)
                     + f"; under Holm over all {len(tests)} of the study's tests, "
                     + f"{sum(row['p_all'] < 0.05 for row in detected)} of them stay below 0.05.")
    else:
        lines.append(f"None of the study's {len(tests)} tests is detected.")
    return lines
