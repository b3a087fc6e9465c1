"""The random augmentations (kornia), one builder per purpose.

Their draws come from torch's global RNG, so every caller runs them inside
``lib.seeding.seeded_rng`` / ``global_seed`` (a forked, seeded stream)."""
from __future__ import annotations

import kornia.augmentation as K
from torch import nn


def classifier_shifts(size: int = 32, flip: bool = True) -> nn.Module:
    """Classifier training: random shifts (crop with 2-pixel padding) and horizontal flips."""
    augs: list[nn.Module] = [K.RandomCrop((size, size), padding=2, padding_mode="replicate")]
    if flip:
        augs.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*augs)


def discriminator_view(size: int = 32) -> nn.Module:
    """The GAN discriminator's inputs (DiffAugment-style): random translation by up to 1/8 of
    the side and a random 1/4-side cutout, applied alike to real and generated images, so D
    never learns the augmentation itself."""
    return K.AugmentationSequential(
        K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), padding_mode="zeros", p=1.0),
        K.RandomErasing(scale=(1 / 16, 1 / 16), ratio=(1.0, 1.0), value=0.0, p=1.0),
    )


def _resized_crop(size: int, scale: tuple[float, float], ratio: tuple[float, float],
                  flip: bool) -> nn.Module:
    augs: list[nn.Module] = [K.RandomResizedCrop((size, size), scale=scale, ratio=ratio)]
    if flip:
        augs.append(K.RandomHorizontalFlip())
    return K.AugmentationSequential(*augs)


def target_view(size: int = 32, flip: bool = True) -> nn.Module:
    """The transfer's view of generated images for the target: a random resized crop covering
    80–100% of the image, resized to the target's input size, and a horizontal flip
    (Fashion-MNIST items and faces are left/right symmetric)."""
    return _resized_crop(size, (0.8, 1.0), (0.9, 1.1), flip)


def attack_view(size: int = 32, flip: bool = True) -> nn.Module:
    """The PPA-style attack's random view: a resized crop of 50–90% of the image, a flip."""
    return _resized_crop(size, (0.5, 0.9), (0.8, 1.25), flip)
