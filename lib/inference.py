"""Batched inference: one helper (``batched``) runs any function over a large tensor in
chunks on a device and gathers the result on the CPU; the named wrappers below are what the
rest of the package calls."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU when it has none)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` for ``modules``; both restored on exit."""
    saved = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for m in modules:
        m.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            m.train(training)
            for p, flag in zip(m.parameters(), flags):
                p.requires_grad_(flag)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
            batch_size: int = 1024, device: str | torch.device = "cpu",
            input_dtype: torch.dtype | None = None,
            output_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``fn`` applied to ``inputs`` ``batch_size`` rows at a time on ``device`` (inputs cast
    to ``input_dtype`` when given), results concatenated on the CPU (in ``output_dtype``)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size}")
    parts = [fn(inputs[i:i + batch_size].to(device, input_dtype)).to("cpu", output_dtype)
             for i in range(0, len(inputs), batch_size)]
    if not parts:
        raise InputError("no inputs to run the model on")
    return torch.cat(parts)


def apply(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024,
          device: str | torch.device = "cpu", method: str = "forward") -> torch.Tensor:
    """``model.<method>(inputs)`` with the model in eval mode on ``device``, batched."""
    model.eval().to(device)
    return batched(getattr(model, method), inputs, batch_size, device)


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``images``, batched, on the CPU."""
    return apply(model, images, batch_size, device)


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
          device: str | torch.device = "cpu") -> torch.Tensor:
    """Penultimate features ``model.embed`` of ``images``, batched."""
    return apply(model, images, batch_size, device, method="embed")


def embed_and_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(``embed``, ``predict_logits``) of a classifier (``forward`` = ``head`` ∘ ``embed``) in
    one pass: each batch's logits are its features through the head, the same numbers as the
    two functions' separate passes over the same batches."""
    def both(x: torch.Tensor) -> torch.Tensor:
        features = model.embed(x)
        return torch.cat([features, model.head(features)], dim=1)

    model.eval().to(device)
    out = batched(both, images, batch_size, device)
    n_features = out.shape[1] - model.head.out_features
    return out[:, :n_features].contiguous(), out[:, n_features:].contiguous()


def generate(generator: nn.Module, latents: torch.Tensor, batch_size: int = 512,
             device: str | torch.device = "cpu") -> torch.Tensor:
    """Images of ``generator`` (eval mode) for ``latents``, batched, on the CPU."""
    return apply(generator, latents, batch_size, device)


def class_probabilities(target: nn.Module, images: torch.Tensor, batch_size: int,
                        device: str | torch.device,
                        view: nn.Module | None = None) -> torch.Tensor:
    """softmax(T(view(images))) batched on ``device``, on the CPU, shape (N, C)."""
    return batched(lambda x: F.softmax(target(view(x) if view is not None else x), dim=1),
                   images, batch_size, device)
