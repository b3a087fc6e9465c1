"""ddcs-mi: sample-level evaluation (DDCS) and a generative framework for model inversion.

The modules mirror the pipeline: ``data`` → ``models`` / ``training`` → ``transfer`` (with ``ngd``) → ``attacks``
→ ``metrics`` → ``defense`` → ``runner``; ``notebook`` is what each notebook calls first.
Submodules load on first use (``lib.notebook.setup(...)`` works after ``import lib``).
"""
import importlib

__all__ = ["artifacts", "attacks", "data", "defense", "faces", "metrics", "models", "ngd", "notebook", "paths", "plotting", "profiles",
           "runner", "seeding", "training", "transfer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
