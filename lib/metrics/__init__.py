"""Metrics: DDCS (``ddcs``), membership-calibrated DDCS (``membership``), LPIPS-style
distances (``distances``), fidelity and diversity (``fidelity``), intervals and p-values
(``stats``), Inception features (``inception``), the controls that calibrate an attack
(``controls``) and the one evaluation entry point (``evaluate.Judge``).

Submodules load on first use: ``import lib.metrics.ddcs`` loads numpy and torch, nothing else
of this package."""
import importlib

__all__ = ["arrays", "controls", "ddcs", "distances", "evaluate", "fidelity", "inception",
           "membership", "stats"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
