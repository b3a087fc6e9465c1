"""Natural-gradient metric: Hessian-vector products, Lanczos top-k, preconditioning."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from lib.metrics.distances import PerceptualDistance
from lib.models import ConvClassifier
from lib.ngd import (ReferenceMetric, build_reference_metric, exact_hessian,
                     hessian_vector_product, metric_at, perceptual_efficiency, precondition,
                     top_eigenpairs)


def perceptual(width: int = 4, dtype: torch.dtype = torch.float64) -> PerceptualDistance:
    torch.manual_seed(0)
    return PerceptualDistance(ConvClassifier("mcnn", 5, width=width).eval()).to(dtype)


def image(size: int, seed: int = 0, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (1, size, size) if n is None else (n, 1, size, size)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def spd(dim: int, eigvals: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigvals) Qᵀ with a random orthogonal Q."""
    q, _ = torch.linalg.qr(randn(dim, dim, seed=seed))
    return q @ torch.diag(eigvals) @ q.T


def assert_same_vectors(a: torch.Tensor, b: torch.Tensor) -> None:
    """Columns equal up to sign: |⟨a_i, b_i⟩| > 1 − 1e-6 (unit columns)."""
    overlap = (a * b).sum(0).abs()
    assert (overlap > 1 - 1e-6).all(), overlap


# ---------------------------------------------------------------------------- HVP
def test_hvp_equals_autograd_hessian_of_perceptual_distance():
    d, x = perceptual(), image(8)
    dim = x.numel()
    expected = torch.autograd.functional.hessian(
        lambda delta: d(x[None], (x + delta.view_as(x))[None]).sum(),
        torch.zeros(dim, dtype=torch.float64))
    hvp = hessian_vector_product(d, x)
    v = randn(dim, seed=1)
    vs = randn(5, dim, seed=2)
    assert expected.abs().max() > 0
    assert torch.allclose(hvp(v), expected @ v, rtol=1e-8, atol=1e-12)
    assert torch.allclose(hvp(vs), vs @ expected, rtol=1e-8, atol=1e-12)
    assert torch.allclose(exact_hessian(hvp, dim, batch=24), expected, rtol=1e-8, atol=1e-12)
    assert hvp(v).shape == (dim,) and hvp(vs).shape == (5, dim) and not hvp(v).requires_grad


def test_hvp_of_quadratic_distance_is_2_AtA():
    a = randn(6, 12, seed=3)

    def distance(x, y):
        return ((x - y).flatten(1) @ a.T).pow(2).sum(1)

    hvp = hessian_vector_product(distance, randn(3, 2, 2))   # dim 12
    assert torch.allclose(exact_hessian(hvp, 12, batch=5), 2 * a.T @ a, rtol=1e-12)
    v = randn(12, seed=4).float()                    # cast to the image's dtype
    assert hvp(v).dtype == torch.float64


def test_hvp_is_finite_at_zero_perturbation():
    d = perceptual(width=8, dtype=torch.float32)
    for x in (torch.zeros(1, 32, 32), image(32).float()):  # zero image: all-zero features
        hv = hessian_vector_product(d, x)(randn(3, 1024, seed=5))
        assert hv.dtype == torch.float32 and torch.isfinite(hv).all()


def test_hvp_rejects_bad_shapes():
    d = perceptual()
    with pytest.raises(ValueError, match="one image"):
        hessian_vector_product(d, image(8, n=2))
    hvp = hessian_vector_product(d, image(8))
    with pytest.raises(ValueError, match="dim = 64"):
        hvp(torch.zeros(63))
    with pytest.raises(ValueError, match="dim = 64"):
        hvp(torch.zeros(2, 2, 64))


# ---------------------------------------------------------------------------- eigenpairs
def test_lanczos_matches_exact_on_operator_with_gap():
    dim, k = 200, 10
    vals = torch.cat([torch.linspace(10.0, 5.0, k), torch.linspace(2.0, 0.01, dim - k)])
    h = spd(dim, vals.double())
    hvp = lambda v: v @ h  # noqa: E731 (H symmetric: rows of v times H)
    lam, vec = top_eigenpairs(hvp, dim, k, "lanczos")
    lam_e, vec_e = top_eigenpairs(hvp, dim, k, "exact")
    assert lam.dtype == vec.dtype == torch.float64 and vec.shape == (dim, k)
    assert torch.allclose(lam, vals[:k].double(), rtol=1e-4)
    assert torch.allclose(lam, lam_e, rtol=1e-4)
    assert_same_vectors(vec, vec_e)
    assert torch.allclose(vec, vec_e, atol=1e-5)      # deterministic signs: equal outright
    assert torch.equal(top_eigenpairs(hvp, dim, k)[1], vec)  # same seed, same result


@pytest.mark.slow  # ~2.5 s on one CPU thread: the exact Hessian takes 1024 products
def test_lanczos_matches_exact_on_perceptual_metric_32px():
    d, x = perceptual(width=8), image(32)
    hvp = hessian_vector_product(d, x)
    lam, vec = top_eigenpairs(hvp, 1024, 5, "lanczos")
    lam_e, vec_e = top_eigenpairs(hvp, 1024, 5, "exact")
    assert (lam > 0).all() and (lam[:-1] >= lam[1:]).all()
    assert torch.allclose(lam, lam_e, rtol=1e-4)
    assert_same_vectors(vec, vec_e)


def test_top_eigenpairs_rejects_bad_arguments():
    hvp = lambda v: v  # noqa: E731
    with pytest.raises(ValueError, match="method=\"exact\""):
        top_eigenpairs(hvp, 5, 5, "lanczos")
    with pytest.raises(ValueError, match="k must be"):
        top_eigenpairs(hvp, 5, 0, "exact")
    with pytest.raises(ValueError, match="unknown method"):
        top_eigenpairs(hvp, 5, 2, "arnoldi")


# ---------------------------------------------------------------------------- precondition
def test_precondition_equals_formula():
    dim, k = 30, 4
    vecs, lam, g = randn(dim, k, seed=1), torch.rand(k, dtype=torch.float64) + 0.5, randn(3, dim)
    expected = g @ (vecs @ torch.diag(1 / (lam + 0.1)) @ vecs.T).T
    assert torch.allclose(precondition(g, lam, vecs, damping=0.1), expected, rtol=1e-12)


def test_precondition_full_rank_is_inverse_and_low_rank_is_pseudo_inverse():
    dim = 12
    h = spd(dim, torch.linspace(3.0, 0.2, dim, dtype=torch.float64))
    lam, vecs = torch.linalg.eigh(h)
    g = randn(4, dim, seed=6)
    assert torch.allclose(precondition(g, lam, vecs), torch.linalg.solve(h, g.T).T, rtol=1e-9)
    b = randn(dim, 5, seed=7)
    psd = b @ b.T                                    # rank 5
    lam, vecs = top_eigenpairs(lambda v: v @ psd, dim, 5, "exact")
    assert torch.allclose(precondition(g, lam, vecs), g @ torch.linalg.pinv(psd).T,
                          rtol=1e-8, atol=1e-10)


def _orthonormal(dim: int, k: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(randn(dim, dim, seed=seed))
    return q[:, :k]


@pytest.mark.parametrize("damping", [0.0, 1e-3, 0.1, 2.0])
def test_paper_form_is_the_rank_k_formula_for_every_damping(damping):
    dim, k = 40, 6
    vecs, lam, g = _orthonormal(dim, k, 2), torch.rand(k, dtype=torch.float64) + 0.5, randn(5, dim)
    expected = g @ (vecs @ torch.diag(1 / (lam + damping)) @ vecs.T).T
    out = precondition(g, lam, vecs, damping=damping, form="paper")
    assert torch.equal(out, precondition(g, lam, vecs, damping))      # the default form
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gamma", [1e-3, 0.05, 1.0])
def test_damped_form_is_the_dense_damped_inverse(gamma):
    """(H_k + γI)⁻¹ g with H_k = V diag(λ) Vᵀ, dense, to 1e-8 (float64); shared and per sample."""
    dim, k = 40, 6
    vecs, lam = _orthonormal(dim, k, 3), torch.rand(k, dtype=torch.float64) + 0.5
    g = randn(5, dim, seed=4)
    dense = vecs @ torch.diag(lam) @ vecs.T + gamma * torch.eye(dim, dtype=torch.float64)
    expected = torch.linalg.solve(dense, g.T).T
    out = precondition(g, lam, vecs, damping=gamma, form="damped")
    assert torch.allclose(out, expected, rtol=1e-8, atol=1e-8 * expected.abs().max().item())
    per = precondition(g, lam.expand(5, k), vecs.expand(5, dim, k), damping=gamma, form="damped")
    assert torch.allclose(per, expected, rtol=1e-8, atol=1e-8 * expected.abs().max().item())


def test_damped_form_with_every_eigenpair_is_the_damped_inverse_of_h():
    dim, gamma = 16, 0.3
    h = spd(dim, torch.linspace(4.0, 0.1, dim, dtype=torch.float64), seed=5)
    lam, vecs = torch.linalg.eigh(h)
    g = randn(3, dim, seed=6)
    expected = torch.linalg.solve(h + gamma * torch.eye(dim, dtype=torch.float64), g.T).T
    assert torch.allclose(precondition(g, lam, vecs, gamma, "damped"), expected, rtol=1e-8,
                          atol=1e-12)


def test_damped_form_needs_positive_damping():
    g, lam, vecs = randn(2, 6), torch.ones(2, dtype=torch.float64), _orthonormal(6, 2, 1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="damping > 0"):
            precondition(g, lam, vecs, bad, "damped")
    with pytest.raises(ValueError, match="valid: paper, damped"):
        precondition(g, lam, vecs, 1.0, "natural")


def test_reference_metric_damped_uses_the_smallest_kept_eigenvalue_of_each_code():
    n_codes, dim, k = 3, 10, 2
    lam = torch.rand(n_codes, k, dtype=torch.float64).sort(dim=1, descending=True).values + 0.5
    vecs = torch.stack([_orthonormal(dim, k, s) for s in range(n_codes)]).float()
    metric = ReferenceMetric(lam, vecs)
    g = randn(6, dim, seed=12)
    out = metric.precondition(g, "damped")
    for i in range(6):
        c = i % n_codes
        want = precondition(g[i:i + 1], lam[c], vecs[c], float(lam[c, -1]), "damped")[0]
        assert torch.allclose(out[i], want)
    fixed = metric.precondition(g, "damped", damping=0.2)
    assert torch.allclose(fixed[0], precondition(g[:1], lam[0], vecs[0], 0.2, "damped")[0])


def test_perceptual_efficiency():
    """gᵀδ / √(δᵀHδ): the natural gradient H⁻¹g maximises it (Cauchy–Schwarz in the H norm)."""
    dim = 8
    h = spd(dim, torch.linspace(5.0, 0.2, dim, dtype=torch.float64), seed=8)
    g = randn(1, dim, seed=9)
    natural = torch.linalg.solve(h, g.T).T
    best = perceptual_efficiency(g, natural, h)
    assert best.item() == pytest.approx(torch.sqrt(g @ natural.T).item(), rel=1e-10)
    for other in (g, randn(1, dim, seed=10), natural + 0.1 * g):
        assert perceptual_efficiency(g, other, h).item() <= best.item() + 1e-12
    assert torch.allclose(perceptual_efficiency(g.expand(2, dim), g.expand(2, dim),
                                                h.expand(2, dim, dim)),
                          perceptual_efficiency(g, g, h).expand(2))


def test_precondition_per_sample_equals_loop_and_keeps_shape():
    batch, k = 3, 5
    g = randn(batch, 1, 4, 4, seed=8).float()
    lam = torch.rand(batch, k, dtype=torch.float64) + 0.5
    vecs = randn(batch, 16, k, seed=9)
    out = precondition(g, lam, vecs)
    assert out.shape == g.shape and out.dtype == torch.float32
    for i in range(batch):
        assert torch.allclose(out[i], precondition(g[i:i + 1], lam[i], vecs[i])[0])


def test_precondition_rejects_bad_metric():
    g, vecs = randn(2, 6), randn(6, 2)
    with pytest.raises(ValueError, match="damping > 0"):
        precondition(g, torch.tensor([1.0, 0.0]), vecs)
    with pytest.raises(ValueError, match="damping > 0"):
        precondition(g, torch.tensor([1.0, float("nan")]), vecs, damping=1.0)
    precondition(g, torch.tensor([1.0, 0.0]), vecs, damping=1e-3)   # fixed by damping
    with pytest.raises(ValueError, match="do not fit"):
        precondition(g, torch.ones(2), randn(5, 2))
    with pytest.raises(ValueError, match="do not fit"):
        precondition(g, torch.ones(3, 2), randn(3, 6, 2))        # 3 metrics, 2 gradients
    with pytest.raises(ValueError, match="do not fit"):
        precondition(g, torch.ones(3), vecs)


# ---------------------------------------------------------------------------- ReferenceMetric
def test_reference_metric_uses_code_i_mod_n():
    n_codes, dim, k, batch = 3, 10, 2, 7
    lam = torch.rand(n_codes, k, dtype=torch.float64) + 0.5
    vecs = randn(n_codes, dim, k, seed=10).float()
    metric = ReferenceMetric(lam, vecs, damping=0.05)
    g = randn(batch, dim, seed=11)
    out = metric.precondition(g)
    assert out.shape == g.shape and out.dtype == g.dtype
    for i in range(batch):
        c = i % n_codes
        assert torch.allclose(out[i], precondition(g[i:i + 1], lam[c], vecs[c], 0.05)[0])
    assert metric.spectrum().shape == (n_codes, k)


def test_reference_metric_round_trip(tmp_path):
    metric = ReferenceMetric(torch.rand(2, 3), randn(2, 8, 3), damping=0.1)
    save_file(metric.to_tensors(), tmp_path / "metric.safetensors")
    loaded = ReferenceMetric.from_tensors(load_file(tmp_path / "metric.safetensors"), 0.1)
    assert loaded.damping == 0.1 and loaded.eigvecs.dtype == torch.float32
    assert torch.equal(loaded.eigvals, metric.eigvals)
    assert torch.equal(loaded.eigvecs, metric.eigvecs)
    with pytest.raises(ValueError, match="n_codes"):
        ReferenceMetric(torch.rand(2, 3), randn(2, 8, 4))


def test_build_reference_metric_is_top_eigenpairs_at_each_image():
    d, xs = perceptual(), image(8, seed=3, n=2)
    metric = build_reference_metric(d, xs, k=3, damping=0.2)
    lam, vecs = metric_at(d, xs, k=3, method="exact")
    assert metric.eigvecs.shape == (2, 64, 3) and metric.damping == 0.2
    for i in range(2):
        lam_i, vec_i = top_eigenpairs(hessian_vector_product(d, xs[i]), 64, 3)
        assert torch.allclose(metric.eigvals[i], lam_i)
        assert torch.allclose(metric.eigvecs[i], vec_i.float())
        assert torch.allclose(lam[i], lam_i, rtol=1e-4)


def _pinned_metric() -> tuple[ReferenceMetric, torch.Tensor]:
    """The natural-gradient path at smoke size, from seeded untrained networks: a 32-px DCGAN
    generator's images, P's LPIPS-style distance, the top 4 eigenpairs at 4 reference codes
    (float32, as in the transfer), and a seeded gradient of a batch of 8."""
    from lib.models import Generator
    from lib.training import standing_statistics

    torch.manual_seed(0)
    P = PerceptualDistance(ConvClassifier("mcnn", 10, width=8).eval())
    torch.manual_seed(1)
    G = standing_statistics(Generator(z_dim=16, width=8), seed=2, batches=4, batch_size=64)
    with torch.no_grad():
        images = G(torch.randn(4, 16, generator=torch.Generator().manual_seed(3)))
    metric = build_reference_metric(P, images, 4, seed=4)
    grad = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    return metric, metric.precondition(grad)


# Pinned values of the natural-gradient path (see _pinned_metric); an intended change of the
# path updates them, an unintended one fails here. CPU kernels are pinned (lib.paths).
PINNED_EIGVALS = [[1.26997, 1.17029], [0.895027, 0.83579], [6.32098, 4.77958],
                  [0.413422, 0.399377]]
PINNED_NATURAL_NORMS = [2.43203, 2.26976, 0.85209, 4.32408]


def test_the_natural_gradient_path_is_pinned():
    metric, natural = _pinned_metric()
    assert metric.eigvals[:, :2].flatten().tolist() == pytest.approx(
        [v for row in PINNED_EIGVALS for v in row], rel=1e-5)
    norms = natural.flatten(1).norm(dim=1)[:4].tolist()
    assert norms == pytest.approx(PINNED_NATURAL_NORMS, rel=1e-5)


def test_lockstep_hvps_give_the_per_image_eigenpairs():
    """On CUDA the reference codes' Lanczos solvers run side by side with their
    Hessian-vector products batched; forced here on the CPU, the eigenpairs equal the
    per-image ones to the solver's tolerance, and a failing product raises in every solver
    rather than hanging."""
    d, xs = perceptual(), image(8, seed=3, n=3)
    alone_vals, alone_vecs = metric_at(d, xs, k=3, lockstep=False)
    vals, vecs = metric_at(d, xs, k=3, lockstep=True)
    assert torch.allclose(vals, alone_vals, rtol=1e-6)
    assert torch.allclose(vecs, alone_vecs, atol=1e-5)
    calls = []

    def failing(x, y):
        calls.append(len(x))
        if len(calls) == 3:
            raise ValueError("the device ran out of memory")
        return d(x, y)

    with pytest.raises(RuntimeError, match="batched Hessian-vector product failed"):
        metric_at(failing, xs, k=3, lockstep=True)
    assert calls[0] == 3                      # the first product was batched over all 3 images
