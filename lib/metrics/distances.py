"""LPIPS-style distances as embeddings (docs/method.md, "DDCS").

LPIPS is a weighted squared L2 between channel-unit-normalised feature maps, averaged over
space and summed over layers:

    d(x, y) = Σ_l 1/(H_l W_l) Σ_{h,w} Σ_c w_{l,c} (f̂_l(x)_{c,h,w} − f̂_l(y)_{c,h,w})².

With non-negative weights, scaling each normalised map by sqrt(w / (H W)) and flattening gives
a vector e(x) with d(x, y) = ||e(x) − e(y)||²: pairwise distances are one feature pass per
image plus a matrix product. ``PerceptualDistance`` offers both the embedding and the direct,
twice differentiable per-pair formula (the natural-gradient metric needs Hessian-vector
products). ``lpips_vgg`` is the real LPIPS-VGG v0.1, built from local files only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, WeightsError
from ..inference import batched
from ..weights import LPIPS_VGG_WEIGHTS_FILE

NORM_EPS = 1e-10        # LPIPS's eps: f / (||f||_channels + eps)
_SQ_NORM_FLOOR = 1e-30  # sqrt is clamped here so an all-zero channel vector has a finite gradient
_VGG_SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]  # relu1_2 … relu5_3
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_VGG_DOWNLOAD_HINT = (
    "On a machine with internet run "
    "python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\" "
    f"(it saves ~/.cache/torch/hub/checkpoints/{LPIPS_VGG_WEIGHTS_FILE}) and copy that file "
    "into the weights folder")


def unit_normalise(f: torch.Tensor) -> torch.Tensor:
    """Divide each spatial position's channel vector by (its norm + 1e-10), as LPIPS does.

    The squared norm is floored at 1e-30 before the square root: the value is LPIPS's to
    rounding, but an all-zero channel vector no longer gives NaN gradients (0/0 in sqrt').
    """
    norm = f.pow(2).sum(dim=1, keepdim=True).clamp_min(_SQ_NORM_FLOOR).sqrt()
    return f / (norm + NORM_EPS)


def _as_weights(layer_weights: Sequence | None, name: str) -> list[torch.Tensor] | None:
    """Per-layer weights as flat float64 tensors (a scalar or one value per channel), checked."""
    if layer_weights is None:
        return None
    weights = []
    for i, w in enumerate(layer_weights):
        w = torch.as_tensor(w).detach().to("cpu", torch.float64).flatten()
        if w.numel() == 0:
            raise InputError(f"{name}: the weights of layer {i} are empty; give a scalar or "
                             "one weight per channel")
        if not torch.isfinite(w).all():
            raise InputError(f"{name}: the weights of layer {i} contain NaN or inf")
        if (w < 0).any():
            raise InputError(f"{name}: layer {i} has negative weights (min {w.min().item():.3g}); "
                             "weights must be ≥ 0 (as LPIPS's are) for the distance to be a "
                             "squared Euclidean distance. Pass non-negative weights")
        weights.append(w)
    if not weights:
        raise InputError(f"{name}: layer_weights is empty; pass None for uniform weights")
    return weights


class PerceptualDistance(nn.Module):
    """d(x, y) = Σ_l mean_hw Σ_c w_lc (f̂_l(x) − f̂_l(y))² over a frozen network's feature maps.

    ``network`` must expose ``feature_maps(x) -> list[(N, C_l, H_l, W_l)]``. It is frozen in
    place (eval mode, ``requires_grad=False`` on its parameters); gradients still flow to the
    images. ``layer_weights``: one entry per selected layer, a scalar or a (C_l,) vector of
    non-negative weights (None: all 1). ``layers``: indices of the feature maps to use (None:
    all). ``input_transform``: applied to the images first (e.g. resizing, LPIPS scaling).
    """

    def __init__(self, network: nn.Module, layer_weights: Sequence | None = None,
                 layers: Sequence[int] | None = None,
                 input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 name: str = "d_P") -> None:
        super().__init__()
        if not callable(getattr(network, "feature_maps", None)):
            raise InputError(f"{name}: the network {type(network).__name__} has no "
                             "feature_maps(x) method; wrap it in a module that returns the list "
                             "of feature maps (N, C, H, W) to compare")
        self.network = network.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.layers = [int(i) for i in layers] if layers is not None else None
        self.input_transform = input_transform
        self.name = name
        self.layer_weights = _as_weights(layer_weights, name)

    def train(self, mode: bool = True) -> "PerceptualDistance":
        super().train(mode)
        self.network.eval()  # batch-norm statistics and dropout stay frozen
        return self

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The selected feature maps of ``x`` (after ``input_transform``), not normalised."""
        if self.input_transform is not None:
            x = self.input_transform(x)
        maps = list(self.network.feature_maps(x))
        if self.layers is not None:
            bad = [i for i in self.layers if not -len(maps) <= i < len(maps)]
            if bad:
                raise InputError(f"{self.name}: layer indices {bad} out of range; the network "
                                 f"gives {len(maps)} feature maps (indices 0..{len(maps) - 1})")
            maps = [maps[i] for i in self.layers]
        if self.layer_weights is not None and len(self.layer_weights) != len(maps):
            raise InputError(f"{self.name}: {len(self.layer_weights)} layer weights for "
                             f"{len(maps)} feature maps; give one weight entry per selected layer")
        return maps

    def _weight(self, i: int, f: torch.Tensor) -> torch.Tensor:
        """Layer i's weights, shaped to broadcast against f (N, C, H, W)."""
        if self.layer_weights is None:
            return torch.ones((), dtype=f.dtype, device=f.device)
        w = self.layer_weights[i].to(f.device, f.dtype)
        if w.numel() == 1:
            return w.reshape(())
        if w.numel() != f.shape[1]:
            raise InputError(f"{self.name}: layer {i} has {w.numel()} weights but its feature "
                             f"map has {f.shape[1]} channels; give a scalar or one per channel")
        return w.view(1, -1, 1, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors e(x) with d(x, y) = ||e(x) − e(y)||² exactly."""
        return self.embed_maps(self.feature_maps(x))

    def embed_maps(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """``embed`` from the selected feature maps already computed (``feature_maps``)."""
        x = maps[0]
        sizes = [f[0].numel() for f in maps]
        out = maps[0].new_empty((len(x), sum(sizes)))
        offset = 0
        for i, (f, size) in enumerate(zip(maps, sizes)):
            scale = (self._weight(i, f) / (f.shape[-2] * f.shape[-1])).sqrt()
            out[:, offset:offset + size] = (unit_normalise(f) * scale).flatten(1)
            offset += size
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-pair formula d(x_i, y_i), shape (N,), differentiable (twice) in x and y."""
        if x.shape != y.shape:
            raise InputError(f"{self.name}: x {tuple(x.shape)} and y {tuple(y.shape)} differ in "
                             "shape; the distance compares pairs (x_i, y_i). For all pairs use "
                             "pairwise_sq_distances(d.embed(x), d.embed(y))")
        return self._to_normalised(self.feature_maps(x),
                                   [unit_normalise(f) for f in self.feature_maps(y)])

    def against(self, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x ↦ self(x, y)`` with ``y``'s normalised feature maps computed once, without a
        gradient (fixed targets: the oracle projection evaluates it at every step). The same
        numbers bit for bit: ``y`` is embedded on its own in both, and carries no gradient."""
        with torch.no_grad():
            target = [unit_normalise(f) for f in self.feature_maps(y)]

        def to_target(x: torch.Tensor) -> torch.Tensor:
            if x.shape != y.shape:
                raise InputError(f"{self.name}: x {tuple(x.shape)} and the targets "
                                 f"{tuple(y.shape)} differ in shape; one image per target")
            return self._to_normalised(self.feature_maps(x), target)
        return to_target

    def _to_normalised(self, maps_x: list[torch.Tensor], normalised_y: list[torch.Tensor]
                       ) -> torch.Tensor:
        """d(x_i, y_i) from x's feature maps and y's unit-normalised ones, shape (N,)."""
        total = maps_x[0].new_zeros(len(maps_x[0]))
        for i, (fx, fy) in enumerate(zip(maps_x, normalised_y)):
            sq = (unit_normalise(fx) - fy).pow(2) * self._weight(i, fx)
            total = total + sq.sum(dim=1).mean(dim=(1, 2))
        return total

    @torch.no_grad()
    def embed_batched(self, images: torch.Tensor, batch_size: int = 256, device: str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``embed`` over a large set in batches (module moved to ``device``), on the CPU in
        ``dtype``. Images are cast to the network's floating dtype."""
        if len(images) == 0:
            raise InputError(f"{self.name}: no images to embed")
        self.to(device)
        net_dtype = next((p.dtype for p in self.network.parameters() if p.is_floating_point()),
                         images.dtype)
        return batched(self.embed, images, batch_size, device, input_dtype=net_dtype,
                       output_dtype=dtype)


def pairwise_sq_distances(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64,
                          chunk: int = 4096) -> torch.Tensor:
    """(len(a), len(b)) squared distances ||a_i||² + ||b_j||² − 2 a_i·b_j, in ``dtype``
    (float64 by default), clamped at 0, ``chunk`` rows at a time."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"pairwise_sq_distances needs two 2-D tensors with the same number of "
                         f"columns, got {tuple(a.shape)} and {tuple(b.shape)}; embed the "
                         "images first (PerceptualDistance.embed)")
    if chunk < 1:
        raise InputError(f"chunk must be ≥ 1, got {chunk}")
    a, b = a.to(dtype), b.to(dtype)
    b_sq = b.pow(2).sum(1)
    rows = []
    for i in range(0, len(a), chunk):
        part = a[i:i + chunk]
        d = part.pow(2).sum(1, keepdim=True) + b_sq[None] - 2.0 * part @ b.T
        rows.append(d.clamp_(min=0.0))
    return torch.cat(rows) if rows else a.new_zeros((0, len(b)))


# ---------------------------------------------------------------------------- LPIPS-VGG
class VGGFeatures(nn.Module):
    """The five VGG16 slices LPIPS uses (ending at relu1_2 … relu5_3), with ``feature_maps``."""

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


class LPIPSInput(nn.Module):
    """Grey → 3 channels, optional bilinear resize, then LPIPS's ScalingLayer (inputs in [-1, 1])."""

    def __init__(self, resize: int | None = 256) -> None:
        super().__init__()
        self.resize = resize
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise InputError(f"LPIPS-VGG needs images (N, 1 or 3, H, W) in [-1, 1], got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                              align_corners=False)
        return (x - self.shift.to(x)) / self.scale.to(x)


def lpips_head_weights() -> list[torch.Tensor]:
    """LPIPS v0.1's per-channel VGG weights (5 vectors, 64 … 512), from the ``lpips`` package."""
    import lpips  # only the paper profile's LPIPS-VGG reads the package's head weights

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise WeightsError(f"the LPIPS v0.1 VGG head weights {path} are missing from the "
                                "lpips package; reinstall it (pip install lpips==0.1.4)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"].flatten() for i in range(len(_VGG_SLICES))]


def _load_vgg_features(path: Path) -> nn.Sequential:
    """torchvision's VGG16 ``features`` with the weights from ``path`` (no download)."""
    import torchvision  # only the paper profile builds VGG16

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights-only loading refuses anything but tensors, or the file is damaged
        raise InputError(f"{path} is not a readable torch state dict ({err}); replace it with "
                         f"torchvision's {LPIPS_VGG_WEIGHTS_FILE}. {_VGG_DOWNLOAD_HINT}") from err
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state dict; replace it "
                         f"with torchvision's {LPIPS_VGG_WEIGHTS_FILE}. {_VGG_DOWNLOAD_HINT}")
    features = {k.removeprefix("features."): v for k, v in state.items()
                if k.startswith("features.")}
    vgg = torchvision.models.vgg16(weights=None)
    try:
        # only the convolutional part is used; the classifier weights may be absent
        vgg.features.load_state_dict(features)
    except RuntimeError as err:
        raise InputError(f"{path} does not hold torchvision's VGG16 'features.*' weights "
                         f"({str(err).splitlines()[0]}); replace it with torchvision's "
                         f"{LPIPS_VGG_WEIGHTS_FILE}. {_VGG_DOWNLOAD_HINT}") from err
    return vgg.features


def lpips_vgg(weights_dir: str | Path, resize: int | None = 256) -> PerceptualDistance:
    """LPIPS-VGG v0.1 from local files: ImageNet VGG16 weights ``<weights_dir>/vgg16-397923af.pth``,
    per-channel heads from the ``lpips`` package. Images (N, 1 or 3, H, W) in [-1, 1]; grey is
    repeated to RGB; ``resize`` (None: keep the size) is a bilinear resize to resize × resize."""
    path = Path(weights_dir) / LPIPS_VGG_WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(
            f"LPIPS-VGG needs the ImageNet VGG16 weights {LPIPS_VGG_WEIGHTS_FILE} at {path} "
            f"(missing); nothing is downloaded at run time. {_VGG_DOWNLOAD_HINT} ({weights_dir})")
    features = _load_vgg_features(path)
    return PerceptualDistance(VGGFeatures(features), lpips_head_weights(),
                              input_transform=LPIPSInput(resize), name="LPIPS-VGG")
