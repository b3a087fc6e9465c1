"""LPIPS-style distances as embeddings (PAPER.md §1).

LPIPS is a weighted squared L2 between channel-unit-normalised feature maps, averaged over
space and summed over layers. With non-negative per-channel weights w, scaling each
normalised map by sqrt(w / (H·W)) and flattening gives a vector e(x) with
d(x, y) = ||e(x) − e(y)||²: pairwise distances are one feature pass per image plus a matrix
product. ``PerceptualDistance`` offers both the embedding and the direct, twice
differentiable per-pair formula (the natural-gradient metric needs Hessian-vector products).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-10
LPIPS_VGG_WEIGHTS_FILE = "vgg16-397923af.pth"
_VGG_SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]  # relu1_2 … relu5_3
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def unit_normalise(f: torch.Tensor) -> torch.Tensor:
    """Divide each spatial position's channel vector by its norm (as LPIPS does)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


class PerceptualDistance(nn.Module):
    """d(x, y) = Σ_l mean_hw Σ_c w_lc (f̂_l(x) − f̂_l(y))² over a frozen network's feature maps."""

    def __init__(self, network: nn.Module, layer_weights: Sequence | None = None,
                 layers: Sequence[int] | None = None,
                 input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 name: str = "d_P") -> None:
        super().__init__()
        self.network = network.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.layers = list(layers) if layers is not None else None
        self.input_transform = input_transform
        self.name = name
        weights = []
        for w in (layer_weights or []):
            w = torch.as_tensor(w, dtype=torch.float32).flatten()
            if (w < 0).any():
                raise ValueError(f"{name}: layer weights must be ≥ 0 (LPIPS weights are)")
            weights.append(w)
        self.layer_weights = weights or None

    def train(self, mode: bool = True) -> "PerceptualDistance":
        super().train(mode)
        self.network.eval()  # batch-norm statistics stay frozen
        return self

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.input_transform is not None:
            x = self.input_transform(x)
        maps = self.network.feature_maps(x)
        if self.layers is not None:
            maps = [maps[i] for i in self.layers]
        if self.layer_weights is not None and len(self.layer_weights) != len(maps):
            raise ValueError(f"{self.name}: {len(self.layer_weights)} layer weights for "
                             f"{len(maps)} feature maps")
        return maps

    def _weight(self, i: int, f: torch.Tensor) -> torch.Tensor:
        if self.layer_weights is None:
            return torch.ones((), dtype=f.dtype, device=f.device)
        w = self.layer_weights[i].to(f.device, f.dtype)
        return w.view(1, -1, 1, 1) if w.numel() > 1 else w.reshape(())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors whose squared Euclidean distances are this distance."""
        maps = self._maps(x)
        sizes = [f[0].numel() for f in maps]
        out = maps[0].new_empty((len(x), sum(sizes)))
        offset = 0
        for i, (f, size) in enumerate(zip(maps, sizes)):
            h, w = f.shape[-2:]
            # f / ||f||_channels * sqrt(w / HW), written straight into the output (one pass)
            scale = (self._weight(i, f) / (h * w)).sqrt()
            inv_norm = 1.0 / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            out[:, offset:offset + size].view_as(f).copy_(f * inv_norm * scale
                                                          if scale.dim() else f * (inv_norm * scale))
            offset += size
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-pair formula, (N,), differentiable in x and y (twice)."""
        total = 0.0
        for i, (fx, fy) in enumerate(zip(self._maps(x), self._maps(y))):
            diff = (unit_normalise(fx) - unit_normalise(fy)).pow(2) * self._weight(i, fx)
            total = total + diff.sum(dim=1).mean(dim=(1, 2))
        return total

    @torch.no_grad()
    def embed_batched(self, images: torch.Tensor, batch_size: int = 256, device: str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``embed`` over a large set in batches, returned on the CPU in ``dtype``."""
        self.to(device)
        return torch.cat([self.embed(images[i:i + batch_size].to(device)).to("cpu", dtype)
                          for i in range(0, len(images), batch_size)])


def pairwise_sq_distances(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64,
                          chunk: int = 4096) -> torch.Tensor:
    """||a_i − b_j||² for all pairs via norms and a matrix product (float64 by default)."""
    a, b = a.to(dtype), b.to(dtype)
    b_sq = b.pow(2).sum(1)
    rows = []
    for i in range(0, len(a), chunk):
        part = a[i:i + chunk]
        d = part.pow(2).sum(1, keepdim=True) + b_sq[None] - 2.0 * part @ b.T
        rows.append(d.clamp_(min=0.0))
    return torch.cat(rows) if rows else torch.zeros((0, len(b)), dtype=dtype)


# ---------------------------------------------------------------------------- LPIPS-VGG
class VGGFeatures(nn.Module):
    """The five VGG16 slices LPIPS uses, exposing ``feature_maps``."""

    def __init__(self, vgg_features: nn.Sequential) -> None:
        super().__init__()
        self.slices = nn.ModuleList(nn.Sequential(*[vgg_features[i] for i in range(a, b)])
                                    for a, b in _VGG_SLICES)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for s in self.slices:
            x = s(x)
            maps.append(x)
        return maps


def _lpips_head_weights() -> list[torch.Tensor]:
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"].flatten() for i in range(5)]


def lpips_vgg(weights_dir: str | Path, resize: int | None = 256) -> PerceptualDistance:
    """LPIPS-VGG (v0.1) from local files: VGG16 weights in ``weights_dir``, heads from lpips."""
    import torchvision

    path = Path(weights_dir) / LPIPS_VGG_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS-VGG needs the ImageNet VGG16 weights {LPIPS_VGG_WEIGHTS_FILE} at {path}, "
            "and nothing is downloaded at run time. On a machine with internet run "
            "python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\" "
            f"and copy ~/.cache/torch/hub/checkpoints/{LPIPS_VGG_WEIGHTS_FILE} into {weights_dir}")
    vgg = torchvision.models.vgg16(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # only the convolutional part is used; the classifier weights may be absent
    vgg.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                  if k.startswith("features.")})
    shift = torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1)

    def transform(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if resize is not None and x.shape[-1] != resize:
            x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)
        return (x - shift.to(x)) / scale.to(x)

    return PerceptualDistance(VGGFeatures(vgg.features), _lpips_head_weights(),
                              input_transform=transform, name="LPIPS-VGG")
