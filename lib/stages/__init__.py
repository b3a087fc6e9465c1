"""The pipeline's stages: the only code that takes a run context (``ctx``).

One module per stage, each with the ``require_*`` functions a notebook calls: they load an
artefact from the run folder when it was made under the same config (verified against the
manifest), and build and save it otherwise, by calling the algorithms in ``lib``. A notebook
run on its own rebuilds what it is missing through the same calls. Submodules load on first use.
"""
import importlib

__all__ = ["attacks", "classifiers", "damped_study", "defense", "evaluation", "gan", "heavy",
           "regimes", "split_selection", "sweep_attacks", "transfer"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
