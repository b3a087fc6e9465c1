"""Inception-v3 pool3 features for FID in the paper profile, from local weights only.

torchvision's ImageNet Inception-v3 (``inception_v3_google-0cc3c7bd.pth``) read from a
folder the user provides; nothing is downloaded at run time. Note: the widely quoted FID
numbers use the TensorFlow 2015 Inception port, whose weights differ slightly; FIDs from
this extractor are comparable with each other, not with published tables.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..weights import INCEPTION_WEIGHTS_FILE
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class InceptionPool3(nn.Module):
    """Images in [-1, 1] (grey or RGB, any size) → 2048-d pool3 features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(((x + 1) / 2 - self.mean) / self.std)


def inception_pool3(weights_dir: str | Path) -> InceptionPool3:
    """The pool3 extractor with ImageNet weights from ``weights_dir``; clear error if absent."""
    import torchvision  # only the paper profile builds Inception-v3

    path = Path(weights_dir) / INCEPTION_WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(
            f"Inception FID needs {INCEPTION_WEIGHTS_FILE} at {path}; nothing is downloaded at "
            "run time. On a machine with internet run python -c \"import torchvision; "
            "torchvision.models.inception_v3(weights='IMAGENET1K_V1')\" and copy "
            f"~/.cache/torch/hub/checkpoints/{INCEPTION_WEIGHTS_FILE} into {weights_dir}")
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                          transform_input=False)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    return InceptionPool3(net)
