"""The data: Fashion-MNIST (``fashion_mnist``) and the face data sets (``faces``), the split
type every role reads (``split``), model-ready images (``images``), and the one dispatcher from
a config to its data set (``dataset``). Submodules load on first use."""
import importlib

__all__ = ["dataset", "faces", "fashion_mnist", "images", "split"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
