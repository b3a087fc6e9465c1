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

# (channel multiplier of the width, stride) per block
ARCHITECTURES: dict[str, list[tuple[int, int]]] = {
    "mcnn": [(1, 2), (2, 2), (4, 2)],                        # 32 → 16 → 8 → 4
    "scnn": [(1, 1), (1, 2), (2, 1), (2, 2), (4, 2)],        # 32 → 32 → 16 → 16 → 8 → 4
}


class ConvClassifier(nn.Module):
    """Conv blocks + global average pooling + linear head."""

    def __init__(self, arch: str, n_classes: int, width: int = 32, in_channels: int = 1,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
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

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv block, shallow to deep."""
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (global average of the last block), shape (N, embed_dim)."""
        return self.feature_maps(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build_classifier(spec: dict) -> ConvClassifier:
    """Rebuild a classifier from its ``arch_spec`` (as stored in checkpoint metadata)."""
    return ConvClassifier(**spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------- GAN
class Generator(nn.Module):
    """DCGAN-style generator: z (N, z_dim) → image (N, channels, 32, 32) in [-1, 1].

    A linear layer to a 4×4 map with ``4 · width`` channels, three transposed-conv blocks
    (4×4 kernels, stride 2, batch norm, ReLU) doubling the size to 32×32, tanh output.
    """

    def __init__(self, z_dim: int = 64, width: int = 32, channels: int = 1) -> None:
        super().__init__()
        self.arch_spec = {"z_dim": z_dim, "width": width, "channels": channels}
        self.z_dim = z_dim
        self.stem = nn.Sequential(nn.Linear(z_dim, 4 * width * 16, bias=False),
                                  nn.Unflatten(1, (4 * width, 4, 4)),
                                  nn.BatchNorm2d(4 * width), nn.ReLU())
        self.blocks = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False),   # 8×8
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),       # 16×16
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),                    # 32×32
            nn.Tanh(),
        )

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       truncation: float = 1.0) -> torch.Tensor:
        """Standard normal codes, shrunk toward 0 by ``truncation`` (1 = none)."""
        return truncation * torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(z))


class Discriminator(nn.Module):
    """DCGAN-style discriminator: image (N, channels, 32, 32) → logit (N,).

    Three strided 4×4 conv blocks with LeakyReLU (no batch norm: it would couple the R1
    penalty across the batch), then a linear layer on the 4×4 map.
    """

    def __init__(self, width: int = 32, channels: int = 1) -> None:
        super().__init__()
        self.arch_spec = {"width": width, "channels": channels}
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),          # 16×16
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),         # 8×8
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),     # 4×4
            nn.Flatten(), nn.Linear(4 * width * 16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
