"""Every heavy call of the pipeline receives the run's device: a network pass that defaults to
the CPU would move a GPU run's networks back to the CPU without a word."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import torch

from lib.stages import evaluation

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"predict_logits", "generate", "embed", "penultimate", "apply", "class_probabilities",
         "project", "label_view", "random_generator", "public_by_target", "cheap_signals",
         "test_classifiers", "evaluator_row", "embed_batched", "memorising_target",
         "embed_and_logits"}
"""Functions that run a network over a set (``lib.inference`` and the helpers built on it)."""
LIB_MODULES = {"lib.inference", "lib.defense", "lib.stages.classifiers", "lib.stages.transfer",
               "lib.metrics.controls", "lib.metrics.leaks", "lib.stages.regimes"}


def calls_without_device(source: str) -> list[str]:
    """Heavy calls in ``source`` with neither a ``device`` keyword nor an argument naming a
    device (``ctx.device``, ``self.device``, ``device``)."""
    missing = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
        if name not in HEAVY or (isinstance(f, ast.Attribute) and name != "embed_batched"
                                 and ast.unparse(f.value) not in LIB_MODULES):
            continue
        if not (any(k.arg == "device" for k in node.keywords)
                or any("device" in ast.unparse(a) for a in node.args)):
            missing.append(f"line {node.lineno}: {ast.unparse(node)[:100]}")
    return missing


def test_every_heavy_call_of_the_stages_and_notebooks_passes_the_device():
    sources = {str(p.relative_to(ROOT)): p.read_text()
               for p in sorted((ROOT / "lib" / "stages").glob("*.py"))}
    for rel in ("lib/metrics/controls.py", "lib/defense.py", "lib/metrics/evaluate.py"):
        sources[rel] = (ROOT / rel).read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                sources[f"{nb.name} cell {i}"] = "\n".join(
                    line for line in lines if not line.lstrip().startswith(("%", "!")))
    missing = {where: found for where, src in sources.items()
               if (found := calls_without_device(src))}
    assert missing == {}


def test_the_scan_sees_a_call_that_forgets_the_device():
    assert calls_without_device("x = predict_logits(model, images)")
    assert calls_without_device("x = lib.inference.generate(G, z)")
    assert not calls_without_device("x = predict_logits(model, images, device=ctx.device)")
    assert not calls_without_device("x = generate(G, z, 64, ctx.device)")


class Stub:
    """A run context whose device is the CPU under another name (``cpu:0``)."""
    device = torch.device("cpu", 0)
    cfg = {"private_classes": [0, 1], "recon_per_class": 2, "projection_steps": 1,
           "projection_restarts": 1, "checkpoint_every_s": 0}

    @staticmethod
    def subseed(name: str) -> int:
        return 0

    @staticmethod
    def path(rel: str) -> Path:
        return Path("/nonexistent") / rel


def test_the_controls_and_projections_receive_the_context_device(monkeypatch):
    seen = []

    def spy(name):
        def record(*args, device=None, **kwargs):
            seen.append((name, device))
            return {"public_by_target": (torch.zeros(4, 1, 8, 8), np.array([0, 0, 1, 1])),
                    "random_generator": (torch.zeros(4, 1, 8, 8), np.array([0, 0, 1, 1])),
                    "project": (None, None, None)}[name]
        monkeypatch.setattr(evaluation, name, record)

    for name in ("public_by_target", "random_generator", "project"):
        spy(name)
    draws = evaluation.control_draws(Stub(), None, None, None, None)
    draws["public_by_target"](0), draws["random_generator"](0)

    class Judge:
        distances = {"d_P": None}
    evaluation._project(Stub(), None, Judge(), torch.zeros(1), "stream")
    assert [name for name, _ in seen] == ["public_by_target", "random_generator", "project"]
    assert all(device == Stub.device for _, device in seen)


def test_build_judge_in_every_profile_records_too_small_sets_and_uses_the_run_device(monkeypatch):
    """The ``real_test`` control at 3 images per identity is too small for FID and per-class
    PRDC: every profile records it "not computed" and goes on; the paper profile streams."""
    from lib import config

    made = []
    monkeypatch.setattr(evaluation, "StoredJudge", lambda *a, **kw: made.append(kw))
    monkeypatch.setattr(evaluation, "stored_features", lambda ctx: {})
    monkeypatch.setattr(evaluation, "score_store", lambda ctx: None)
    monkeypatch.setattr(evaluation, "subset", lambda data, idx: (torch.zeros(1), torch.zeros(1)))
    monkeypatch.setattr(evaluation, "inception_pool3", lambda path: None)
    monkeypatch.setattr(evaluation.weights, "require", lambda files: None)

    class Data:
        class_names = ["a"]

    for profile in config.PROFILES:
        ctx = Stub()
        ctx.cfg, ctx.profile = config.resolve(profile), profile
        evaluation.build_judge(ctx, Data(), type("Split", (), {"private": [], "reference": []}),
                               None, None)
        kw = made[-1]
        assert kw["allow_not_computed"] is True and kw["device"] == Stub.device
        assert kw["stream"] is (profile == "paper")


def test_a_set_too_small_for_fid_and_prdc_is_recorded_not_computed():
    from lib.metrics.evaluate import Judge
    from lib.models import ConvClassifier

    torch.manual_seed(0)
    e, p = ConvClassifier("scnn", 10, width=4).eval(), ConvClassifier("mcnn", 10, width=4).eval()
    x = torch.rand(30, 1, 32, 32) * 2 - 1
    labels = np.repeat([0, 1, 2], 10)
    judge = Judge(e, p, (x, labels, None), (x.flip(0), labels, None), [0, 1, 2],
                  n_permutations=10, allow_not_computed=True, stream=True)
    test_set, test_labels = x[::10][:3].repeat(3, 1, 1, 1), np.repeat([0, 1, 2], 3)
    metrics = judge.evaluate(test_set, test_labels).metrics
    for name in ("fid_e", "precision", "coverage"):
        assert metrics[name]["value"] is None and "too few samples" in metrics[name]["not_computed"]
    assert metrics["ddcs_best_d_P"]["value"] > 0
