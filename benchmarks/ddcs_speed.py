"""DDCS with the LPIPS-style distance: batched embedding path vs a per-reconstruction loop.

Both sides go from images to DDCS scores, feature extraction included. Both run the same
float32 network and compute distances from its feature maps in float64 (the matrix-product
form in float32 would lose digits), so their scores must agree to rounding:
- batched (ours): one feature pass per image (``PerceptualDistance.embed``), then per class one
  float64 matrix product between reconstruction and training embeddings, then ``ddcs``;
- loop (the reference code's style): training activations cached per class (normalised, one
  batched pass), then one reconstruction at a time through the network and the layer-wise
  LPIPS formula against every cached training sample of its class.

Sizes: the cpu profile's (5 classes × 100 training images × 100 reconstructions per class) and
a larger one (10 classes × 500 × 200). Images are real Fashion-MNIST (train images play the
training set, test images the reconstructions); the network is the perceptual-network
architecture with seeded random weights (speed and agreement do not depend on the weights).
Run: .venv/bin/python benchmarks/ddcs_speed.py
"""
from __future__ import annotations

import time

import numpy as np
import torch

import lib.data.fashion_mnist as D
from lib.data.images import to_model_input
from lib.metrics.ddcs import ddcs
from lib.metrics.distances import PerceptualDistance, unit_normalise
from lib.metrics.evaluate import class_block_distances
from lib.models import ConvClassifier


def pick(labels: torch.Tensor, classes, per_class: int) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels.numpy() == c)[:per_class] for c in classes])


def batched(dist_fn, recon, recon_labels, train, train_labels):
    t0 = time.perf_counter()
    e_recon, e_train = dist_fn.embed_batched(recon), dist_fn.embed_batched(train)
    dist = class_block_distances(e_recon, recon_labels, e_train, train_labels)
    res = ddcs(dist, recon_labels, train_labels)
    return time.perf_counter() - t0, res


@torch.no_grad()
def loop(net, recon, recon_labels, train, train_labels):
    t0 = time.perf_counter()
    cache = {}
    for c in np.unique(train_labels):
        cols = np.flatnonzero(train_labels == c)
        maps = net.feature_maps(train[cols])
        cache[c] = (cols, [unit_normalise(f.double()) for f in maps])
    dist = np.full((len(recon), len(train)), 1e30)
    for i in range(len(recon)):
        cols, cached = cache[recon_labels[i]]
        total = 0.0
        for f_r, f_t in zip(net.feature_maps(recon[i:i + 1]), cached):
            total = total + (unit_normalise(f_r.double()) - f_t).pow(2).sum(1).mean((1, 2))
        dist[i, cols] = total.numpy()
    res = ddcs(dist, recon_labels, train_labels)
    return time.perf_counter() - t0, res


def run(data, classes, n_train, n_recon):
    train_idx = pick(data.train_labels, classes, n_train)
    recon_idx = pick(data.test_labels, classes, n_recon)
    train = to_model_input(data.train_images[train_idx])
    recon = to_model_input(data.test_images[recon_idx])
    tl, rl = data.train_labels[train_idx].numpy(), data.test_labels[recon_idx].numpy()
    torch.manual_seed(0)
    net = ConvClassifier("mcnn", 10, width=32).eval()
    t_fast, fast = batched(PerceptualDistance(net), recon, rl, train, tl)
    t_slow, slow = loop(net, recon, rl, train, tl)
    rel = max(abs(fast.best - slow.best) / slow.best,
              np.max(np.abs(fast.per_sample_best - slow.per_sample_best)
                     / np.maximum(slow.per_sample_best, 1e-300)))
    label = f"{len(classes)} classes × {n_train} train × {n_recon} recon/class"
    print(f"{label:42s} batched {t_fast:7.2f} s | loop {t_slow:7.2f} s | speed-up "
          f"{t_slow / t_fast:5.1f}× | DDCS_best {fast.best:.6g} vs {slow.best:.6g} | "
          f"max rel. diff {rel:.1e} | same assignment {np.array_equal(fast.assignment, slow.assignment)}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    data = D.load_fashion_mnist()
    run(data, [0, 2, 3, 5, 7], 100, 100)
    run(data, list(range(10)), 500, 200)
