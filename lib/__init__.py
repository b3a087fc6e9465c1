"""ddcs-mi: sample-level evaluation (DDCS) and a generative framework for model inversion.

The layout mirrors the pipeline; dependencies run one way, from top to bottom:

- ``cli`` (every ``python -m`` command), ``audit`` (the ``ddcs-audit`` command: DDCS on folders of
  images) and ``run`` (the notebooks' context, the runner, the
  summary of a run);
- ``stages``: the only code that takes a run context, one module per notebook stage
  (``require_*``: load an artefact from the run folder or build it);
- the algorithms: ``training``, ``transfer`` (with ``ngd``), ``attacks``, ``metrics``,
  ``defense``, ``claims``;
- the data and the networks: ``data``, ``models``, ``inference``, ``augment``;
- leaf utilities: ``config``, ``paths``, ``errors``, ``seeding``, ``artifacts``, ``weights``,
  ``plotting``, ``paper``.

Submodules load on first use: after ``import lib``, ``lib.run.context.setup(...)`` works.
"""
import importlib

__all__ = ["artifacts", "attacks", "audit", "augment", "claims", "cli", "config", "data", "defense",
           "errors", "inference", "metrics", "models", "ngd", "paper", "paths", "plotting",
           "run", "seeding", "stages", "training", "transfer", "weights"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
