"""Model-inversion attacks on a GAN prior: PPA-style (``ppa``), GMI-style (``gmi``), and the
attacker's whole interface (``interface.run_attack``). Submodules load on first use."""
import importlib

__all__ = ["gmi", "interface", "ppa"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
