"""The three classifiers of the CPU protocol: target T, evaluator E, perceptual network P.

All are ``ConvClassifier``s: a stack of conv blocks (conv, batch norm, LeakyReLU), global
average pooling, a linear head. ``feature_maps(x)`` returns every block's output (the
LPIPS-style distance uses them), ``embed(x)`` the pooled penultimate vector (FID-E, KNN).

- ``mcnn``: GMI's MNIST "MCNN" family, 3 conv blocks (the target T; also P by default).
- ``scnn``: GMI's "SCNN" family, 5 conv blocks, deeper (the evaluator E).
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import InputError

# (channel multiplier of the width, stride) per block
ARCHITECTURES: dict[str, list[tuple[int, int]]] = {
    "mcnn": [(1, 2), (2, 2), (4, 2)],                        # 32 → 16 → 8 → 4
    "scnn": [(1, 1), (1, 2), (2, 1), (2, 2), (4, 2)],        # 32 → 32 → 16 → 16 → 8 → 4
}


class StagedClassifier(nn.Module):
    """Shared interface: ``stages`` (set by subclasses) → global average → linear ``head``."""

    stages: nn.ModuleList
    head: nn.Linear

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, shallow to deep."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (global average of the last stage), shape (N, embed_dim)."""
        return self.feature_maps(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class ConvClassifier(StagedClassifier):
    """Conv blocks + global average pooling + linear head."""

    def __init__(self, arch: str, n_classes: int, width: int = 32, in_channels: int = 1,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        self.arch_spec = {"arch": arch, "n_classes": n_classes, "width": width,
                          "in_channels": in_channels, "kernel_size": kernel_size}
        blocks, channels = [], in_channels
        for mult, stride in ARCHITECTURES[arch]:
            out = width * mult
            blocks.append(nn.Sequential(
                nn.Conv2d(channels, out, kernel_size, stride, kernel_size // 2, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, n_classes)
        self.embed_dim = channels

    @property
    def stages(self) -> nn.ModuleList:
        return self.blocks


class TorchvisionClassifier(StagedClassifier):
    """VGG16-BN or a ResNet from torchvision (random initialisation: no weights are ever
    downloaded) behind ``ConvClassifier``'s interface, for the ``paper`` profile.

    ``feature_maps`` returns the output of each stage (VGG: before every max-pool; ResNet:
    layer1–layer4). ``head="gap"``: ``embed`` is their global average and the head a linear
    layer on it (any input size). ``head="flatten-bn"`` (VGG16-BN only): the head of the
    VGG16 face targets of GMI/KEDMI/PLG-MI that the paper attacks: the last max-pool, flatten,
    batch norm, linear; ``embed`` is the batch-normed flat vector, and ``image_size`` is fixed.
    """

    ARCHS = ("vgg16_bn", "resnet18", "resnet50", "resnet")
    HEADS = ("gap", "flatten-bn")

    def __init__(self, arch: str, n_classes: int, width: int = 64, in_channels: int = 3,
                 kernel_size: int = 3, head: str = "gap", image_size: int = 0) -> None:
        super().__init__()
        import torchvision.models as tvm

        if arch not in self.ARCHS:
            raise InputError(f"unknown architecture {arch!r}; valid: {', '.join(self.ARCHS)}")
        if head not in self.HEADS or (head == "flatten-bn" and (arch != "vgg16_bn"
                                                                or image_size < 32)):
            raise InputError(f"head {head!r} with {arch!r}: valid heads {', '.join(self.HEADS)}; "
                             "flatten-bn needs vgg16_bn and image_size ≥ 32")
        self.arch_spec = {"arch": arch, "n_classes": n_classes, "width": width,
                          "in_channels": in_channels, "kernel_size": kernel_size}
        if head != "gap":
            self.arch_spec.update(head=head, image_size=image_size)
        self.head_kind = head
        if arch == "vgg16_bn":
            layers = list(tvm.vgg16_bn(weights=None).features)
            if in_channels != 3:
                layers[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
            stages, current = [], []
            for layer in layers:
                if isinstance(layer, nn.MaxPool2d):
                    stages.append(nn.Sequential(*current))
                    current = [layer]
                else:
                    current.append(layer)
            self.stages = nn.ModuleList(stages)
            self.embed_dim = 512
        else:
            net = (tvm.resnet18 if arch == "resnet18" else tvm.resnet50)(weights=None)
            if in_channels != 3:
                net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            self.stages = nn.ModuleList([nn.Sequential(stem, net.layer1), net.layer2,
                                         net.layer3, net.layer4])
            self.embed_dim = net.fc.in_features
        if head == "flatten-bn":
            self.final_pool = nn.MaxPool2d(2, 2)
            side = image_size
            for _ in range(5):
                side //= 2
            self.embed_dim = 512 * side * side
            self.head_norm = nn.BatchNorm1d(self.embed_dim)
        self.head = nn.Linear(self.embed_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "gap":
            return super().embed(x)
        return self.head_norm(self.final_pool(self.feature_maps(x)[-1]).flatten(1))


def build_classifier(spec: dict) -> nn.Module:
    """Build a classifier from its ``arch_spec`` (as stored in checkpoint metadata)."""
    if spec["arch"] in TorchvisionClassifier.ARCHS:
        return TorchvisionClassifier(**spec)
    return ConvClassifier(**spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------- GAN
GAN_SIZES = {32: (4, 3), 56: (7, 3), 64: (4, 4), 112: (7, 4), 128: (4, 5)}


def _upsampling_steps(size: int) -> tuple[int, int]:
    """(side of the smallest map, stride-2 steps up to ``size``): 32 → (4, 3), 64 → (4, 4),
    128 → (4, 5); the face sizes 56 and 112 start from a 7×7 map (112 → (7, 4))."""
    if size not in GAN_SIZES:
        raise InputError(f"GAN image size must be one of {sorted(GAN_SIZES)}; got {size}")
    return GAN_SIZES[size]


class Generator(nn.Module):
    """DCGAN-style generator: z (N, z_dim) → image (N, channels, size, size) in [-1, 1].

    A linear layer to a 4×4 map (7×7 for 56 and 112 px) with ``width · 2^(steps − 1)``
    channels, then transposed-conv blocks (4×4 kernels, stride 2, batch norm, ReLU) halving
    the channels and doubling the size up to ``size`` (32, 56, 64, 112 or 128), tanh output.
    At 32 px: 4·width → 2·width → width.
    """

    def __init__(self, z_dim: int = 64, width: int = 32, channels: int = 1,
                 size: int = 32) -> None:
        super().__init__()
        base, n_up = _upsampling_steps(size)
        self.arch_spec = {"z_dim": z_dim, "width": width, "channels": channels}
        if size != 32:
            self.arch_spec["size"] = size
        self.z_dim = z_dim
        top = width * 2 ** (n_up - 1)
        self.stem = nn.Sequential(nn.Linear(z_dim, top * base * base, bias=False),
                                  nn.Unflatten(1, (top, base, base)),
                                  nn.BatchNorm2d(top), nn.ReLU())
        layers: list[nn.Module] = []
        c = top
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*layers)

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       truncation: float = 1.0) -> torch.Tensor:
        """Standard normal codes, shrunk toward 0 by ``truncation`` (1 = none)."""
        return truncation * torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(z))


class Discriminator(nn.Module):
    """DCGAN-style discriminator: image (N, channels, size, size) → logit (N,).

    Strided 4×4 conv blocks with LeakyReLU, doubling the channels from ``width`` down to a
    4×4 map (no batch norm: it would couple the R1 penalty across the batch), then a linear
    layer on that map (7×7 for 56 and 112 px).
    """

    def __init__(self, width: int = 32, channels: int = 1, size: int = 32) -> None:
        super().__init__()
        base, n_down = _upsampling_steps(size)
        self.arch_spec = {"width": width, "channels": channels}
        if size != 32:
            self.arch_spec["size"] = size
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for _ in range(n_down):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        layers += [nn.Flatten(), nn.Linear(c_in * base * base, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
