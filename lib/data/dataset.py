"""The one data interface: from a resolved config to its data set and split.

Each data set module (``fashion_mnist``, ``faces``) provides ``load_for_config(cfg, data)``,
``split_file(cfg)``, ``check_inputs(cfg)`` and ``class_slug(label)``; its data object
(``FashionMNIST``, ``FaceData``) provides the images and labels, ``channels``,
``image_size``, ``class_names``, ``label_name``, ``source_line``, ``role_counts``,
``evaluator_test_indices``, ``public_contrast`` and ``summary_lines``. Nothing else in the
package branches on the data set.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from .. import weights
from ..errors import ConfigError
from . import faces, fashion_mnist
from .split import Split

DATASETS: dict[str, ModuleType] = {"fashion-mnist": fashion_mnist, "faces": faces}


def module(cfg: Mapping[str, Any]) -> ModuleType:
    """The data set module a config names."""
    try:
        return DATASETS[cfg["dataset"]]
    except KeyError:
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; valid: "
                          f"{', '.join(DATASETS)}") from None


def load(cfg: Mapping[str, Any], data=None) -> tuple[Any, Split]:
    """(data, split) of a resolved config; ``data`` reuses an already loaded data set."""
    return module(cfg).load_for_config(cfg, data)


def split_file(cfg: Mapping[str, Any]) -> Path:
    """The split file a resolved config reads (committed for Fashion-MNIST; the user's for faces)."""
    return module(cfg).split_file(cfg)


def class_slug(cfg: Mapping[str, Any], label: int) -> str:
    """A file-name form of class ``label`` of the config's data set."""
    return module(cfg).class_slug(label)


def check_inputs(cfg: Mapping[str, Any]) -> None:
    """Fail early, with the fix in the message, when the data or the pretrained weights a
    resolved config needs are missing (the paper profile's face split and folders,
    LPIPS-VGG's and Inception's weights); Fashion-MNIST is checked where it is loaded."""
    module(cfg).check_inputs(cfg)
    needed = weights.needed_for(cfg)
    if needed:
        weights.require(needed)
