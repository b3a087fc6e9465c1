"""Audit your own attack: which training images do your reconstructions expose?

``audit(members, reconstructions, nonmembers=None, distance=...)`` scores every member (a
training image of the attacked model) with DDCS (``lib.metrics.ddcs``) against an attack's
reconstructions, under one of three distances (``lib.audit.distances``): ``lpips-vgg`` (the
paper's), ``pixel`` (a weight-free baseline) or ``perceptual:CHECKPOINT`` (the pipeline's d_P
on a classifier checkpoint of this repository). With non-members (images of the same classes
the model did not train on) it runs the pipeline's membership permutation test.

Each set is a folder in the ImageFolder layout (``ROOT/<class>/<image>``, the same class
names in every folder) or in-memory ``(images, labels)`` (uint8, or float in [-1, 1]).
The command ``ddcs-audit`` (``python -m lib.audit``) writes the result's ``save(folder)``:
``audit.csv``, ``summary.json``, ``most_exposed.png`` and ``report.md``.
"""
import importlib

__all__ = ["api", "arguments", "cli", "distances", "example", "images", "report", "scoring"]
API = ("audit", "AuditResult", "load_sets")
"""Names of ``lib.audit.api`` available as ``lib.audit.<name>``."""


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
