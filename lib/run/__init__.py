"""Running the pipeline: the notebooks' context (``context.setup``), provenance, the runner
that executes the notebooks headlessly (``runner``), the summary of a run (``summary``), its
tables (``report``), its findings in words (``findings``) and ``compare``.
Submodules load on first use."""
import importlib

__all__ = ["compare", "context", "findings", "provenance", "report", "runner", "summary"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
