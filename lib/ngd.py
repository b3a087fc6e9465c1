"""The natural-gradient metric of image space under a perceptual distance (docs/method.md, "The transfer-learning framework").

For an image x and a distance d (LPIPS-style, d(x, x) = 0, d ≥ 0), the local Riemannian
metric of image space is the Hessian

    H(x) = ∇²_δ d(x, x + δ) |_{δ=0}        (dim × dim, dim = C·H·W, positive semi-definite).

It is never formed: ``hessian_vector_product`` computes H v by double back-propagation.
Lanczos (``scipy.sparse.linalg.eigsh``) on that operator gives the top k eigenpairs
(λ_i, v_i), and a loss's image-space gradient g is preconditioned (``precondition``) in one of
two forms:

- ``form="paper"``: g̃ = V diag(1 / (λ + damping)) Vᵀ g, a rank-k pseudo-inverse of H (the
  paper: k = 20, no damping). It keeps only the part of g inside the k *stiffest* directions
  (where the image changes most perceptually) and drops everything else;
- ``form="damped"`` (ours, a labelled deviation): g̃ = (H_k + γI)⁻¹ g with H_k = V diag(λ) Vᵀ,
  i.e. V diag(1 / (λ + γ)) Vᵀ g + (g − V Vᵀ g) / γ: a natural gradient in the usual sense,
  which keeps the complement of the top-k space and favours perceptually cheap directions.

The paper computes the eigenpairs once at a few random reference codes and indexes them by
batch position (``ReferenceMetric``, the faithful mode); ``metric_at`` gives the per-sample
metric (a labelled deviation). ``perceptual_efficiency`` measures what a direction buys:
gᵀδ / √(δᵀHδ), the decrease of the loss per unit of perceptual cost.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .artifacts import PartialState
from .errors import InputError

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
HVP = Callable[[torch.Tensor], torch.Tensor]
METHODS = ("lanczos", "exact")
FORMS = ("paper", "damped")


def _hvp_rows(distance: Distance, xs: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
    """Row i: H(xs[i]) vs[i] (flattened), by one double back-propagation through the batch
    (each pair's distance depends only on its own image, so the rows do not mix)."""
    delta = torch.zeros_like(xs, requires_grad=True)
    with torch.enable_grad():
        total = distance(xs, xs + delta).sum()
        (grad,) = torch.autograd.grad(total, delta, create_graph=True)
        if not grad.requires_grad:  # d is at most linear in δ: H = 0
            return torch.zeros_like(vs)
        (out,) = torch.autograd.grad((grad.flatten(1) * vs).sum(), delta)
    return out.flatten(1).detach()


def _as_rows(v: torch.Tensor, dim: int, shape: tuple) -> tuple[torch.Tensor, bool]:
    v = torch.as_tensor(v)
    single = v.dim() == 1
    vs = v.unsqueeze(0) if single else v
    if vs.dim() != 2 or vs.shape[1] != dim:
        raise InputError(f"hvp needs vectors (dim,) or (m, dim) with dim = {dim} "
                         f"(= C·H·W of the image {shape}), got shape {tuple(v.shape)}")
    return vs, single


def hessian_vector_product(distance: Distance, image: torch.Tensor) -> HVP:
    """``hvp(v) = H v`` with H = ∇²_δ d(image, image + δ) at δ = 0.

    ``distance(x, y)`` returns per-pair distances (N,); ``image`` is (C, H, W) or
    (1, C, H, W). ``v`` is (dim,) or (m, dim), dim = C·H·W; m vectors cost one double
    back-propagation through m copies of the image. The result has v's shape, the image's
    dtype and device, and is detached.
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise InputError(f"hessian_vector_product needs one image (C, H, W) or (1, C, H, W), "
                         f"got shape {tuple(image.shape)}; build one operator per image")
    x = image.detach()
    dim = x[0].numel()

    def hvp(v: torch.Tensor) -> torch.Tensor:
        vs, single = _as_rows(v, dim, tuple(x.shape[1:]))
        vs = vs.to(x.device, x.dtype)
        out = _hvp_rows(distance, x.repeat(len(vs), 1, 1, 1), vs)
        return out[0] if single else out

    return hvp


class LockstepHVP:
    """The Hessian-vector products of several images' operators, run together: each
    operator's caller (one thread per image, each running its own Lanczos) waits until every
    image still being solved has asked for its products, and one batched double
    back-propagation answers them all. On a GPU that turns n small passes into one wide one;
    the numbers equal the per-image operator's up to the floating-point order of a wider
    batch (so the CPU never uses it: its results stay the per-image ones)."""

    def __init__(self, distance: Distance, images: torch.Tensor) -> None:
        self.distance, self.x = distance, images.detach()
        self.dim = self.x[0].numel()
        self.pending: dict[int, torch.Tensor] = {}
        self.answers: dict[int, torch.Tensor] = {}
        self.active: set[int] = set()
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def operator(self, i: int) -> HVP:
        """Image ``i``'s ``hvp`` (as ``hessian_vector_product``'s), answered in a batch."""
        with self.cond:
            self.active.add(i)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            vs, single = _as_rows(v, self.dim, tuple(self.x.shape[1:]))
            with self.cond:
                self.pending[i] = vs.to(self.x.device, self.x.dtype)
                self._run_when_all_asked()
                while i not in self.answers and self.error is None:
                    self.cond.wait()
                if self.error is not None:
                    raise RuntimeError("a batched Hessian-vector product failed") from self.error
                out = self.answers.pop(i)
            return out[0] if single else out

        return hvp

    def finished(self, i: int) -> None:
        """Image ``i`` needs no more products (its solver ended, or failed)."""
        with self.cond:
            self.active.discard(i)
            self._run_when_all_asked()

    def _run_when_all_asked(self) -> None:        # called with the lock held
        if not self.pending or not self.active <= set(self.pending):
            return
        asked, self.pending = self.pending, {}
        order = sorted(asked)
        sizes = [len(asked[i]) for i in order]
        try:
            xs = torch.cat([self.x[i:i + 1].expand(n, *self.x.shape[1:])
                            for i, n in zip(order, sizes)])
            rows = _hvp_rows(self.distance, xs, torch.cat([asked[i] for i in order]))
            self.answers.update(zip(order, rows.split(sizes)))
        except BaseException as err:   # every waiting solver raises instead of hanging
            self.error = err
        self.cond.notify_all()


def exact_hessian(hvp: HVP, dim: int, batch: int = 256) -> torch.Tensor:
    """H (dim, dim), materialised by applying ``hvp`` to the identity ``batch`` columns at a
    time and symmetrised, (H + Hᵀ)/2. Costs dim Hessian-vector products: small dims, tests."""
    if dim < 1 or batch < 1:
        raise InputError(f"exact_hessian needs dim ≥ 1 and batch ≥ 1, got {dim} and {batch}")
    eye = torch.eye(dim, dtype=torch.float64)
    rows = torch.cat([hvp(eye[i:i + batch]) for i in range(0, dim, batch)])  # row i = H e_i
    return (rows + rows.T) / 2


def _fix_signs(vecs: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its largest-magnitude entry is positive."""
    idx = vecs.abs().argmax(dim=0)
    signs = torch.sign(vecs[idx, torch.arange(vecs.shape[1])])
    return vecs * torch.where(signs == 0, torch.ones_like(signs), signs)


def top_eigenpairs(hvp: HVP, dim: int, k: int, method: str = "lanczos", tol: float = 1e-6,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenvalues (k,) and eigenvectors (dim, k) of the symmetric operator
    ``hvp``, largest first, float64 on the CPU, each eigenvector's largest-|entry| positive.

    ``method="lanczos"``: ARPACK (``eigsh``, which="LA") with relative tolerance ``tol`` and a
    start vector drawn from ``numpy.random.default_rng(seed)``; needs k < dim.
    ``method="exact"``: ``exact_hessian`` + ``torch.linalg.eigh`` (dim Hessian-vector products).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if not 1 <= k <= dim:
        raise InputError(f"k must be in 1..dim = {dim}, got {k}")
    if method == "exact":
        vals, vecs = torch.linalg.eigh(exact_hessian(hvp, dim).to("cpu", torch.float64))
        vals, vecs = vals.flip(0)[:k], vecs.flip(1)[:, :k]
        return vals.contiguous(), _fix_signs(vecs).contiguous()
    if k >= dim:
        raise InputError(f"Lanczos (eigsh) needs k < dim, got k = {k}, dim = {dim}; "
                         "use method=\"exact\" for the full spectrum")

    def matmat(block: np.ndarray) -> np.ndarray:  # (dim, m) → (dim, m)
        out = hvp(torch.from_numpy(np.ascontiguousarray(block.T, dtype=np.float64)))
        return out.to("cpu", torch.float64).numpy().T

    operator = LinearOperator((dim, dim), dtype=np.float64, matmat=matmat,
                              matvec=lambda v: matmat(np.reshape(v, (dim, 1)))[:, 0])
    v0 = np.random.default_rng(seed).standard_normal(dim)
    try:
        vals, vecs = eigsh(operator, k=k, which="LA", tol=tol, v0=v0)
    except ArpackNoConvergence as err:
        raise InputError(f"Lanczos did not converge to tol = {tol} for k = {k} ({err}); "
                           "raise tol, compute in float64, or use method=\"exact\" for "
                           "small dims") from err
    order = np.argsort(vals)[::-1].copy()
    vals = torch.from_numpy(vals[order].copy())
    vecs = torch.from_numpy(vecs[:, order].copy())
    return vals, _fix_signs(vecs)


def precondition(grad: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor,
                 damping: float = 0.0, form: str = "paper") -> torch.Tensor:
    """The preconditioned gradient of each row g of ``grad`` (see the module):
    ``form="paper"``: V diag(1/(λ + damping)) Vᵀ g; ``form="damped"``: that plus
    (g − V Vᵀ g) / damping, i.e. (V diag(λ) Vᵀ + damping·I)⁻¹ g (needs damping > 0).

    ``grad``: (B, dim) or (B, C, H, W) (result in the same shape and dtype). Either one
    metric for the whole batch, ``eigvals`` (k,) and ``eigvecs`` (dim, k), or one per
    sample, ``eigvals`` (B, k) and ``eigvecs`` (B, dim, k).
    """
    if form not in FORMS:
        raise InputError(f"unknown preconditioner form {form!r}; valid: {', '.join(FORMS)}")
    if form == "damped" and not (math.isfinite(damping) and damping > 0):
        raise InputError(f"form='damped' needs damping > 0 (it divides the complement of the "
                         f"top-k space by it), got {damping}")
    if grad.dim() < 2:
        raise InputError(f"precondition needs a batch of gradients (B, dim) or (B, C, H, W), "
                         f"got shape {tuple(grad.shape)}")
    g = grad.reshape(len(grad), -1)
    batch, dim = g.shape
    shared = eigvals.dim() == 1 and eigvecs.dim() == 2
    per_sample = (eigvals.dim() == 2 and eigvecs.dim() == 3
                  and eigvals.shape[0] == eigvecs.shape[0] == batch)
    if not (shared or per_sample) or eigvecs.shape[-2:] != (dim, eigvals.shape[-1]):
        raise InputError(f"precondition: eigvals {tuple(eigvals.shape)} and eigvecs "
                         f"{tuple(eigvecs.shape)} do not fit {batch} gradients of dim {dim}; "
                         f"give eigvals (k,) with eigvecs ({dim}, k), or per sample eigvals "
                         f"({batch}, k) with eigvecs ({batch}, {dim}, k)")
    denom = eigvals.detach().to("cpu", torch.float64) + float(damping)
    if not torch.isfinite(denom).all() or (denom <= 0).any():
        raise InputError(f"precondition: λ + damping must be finite and > 0, got min "
                         f"{denom.min().item():.3g} (damping {damping}); use damping > 0 or "
                         "fewer eigenpairs (drop the non-positive eigenvalues)")
    if shared:
        eigvals, eigvecs = eigvals[None], eigvecs[None]
    vecs = eigvecs.to(g.device, g.dtype)
    scale = 1.0 / (eigvals.to(g.device, g.dtype) + float(damping))     # (1 or B, k)
    projected = g.unsqueeze(1) @ vecs                                  # (B, 1, k): Vᵀ g
    coeffs = projected.squeeze(1) * scale                              # (B, k)
    out = (coeffs.unsqueeze(1) @ vecs.transpose(-1, -2)).squeeze(1)    # (B, dim)
    if form == "damped":
        inside = (projected @ vecs.transpose(-1, -2)).squeeze(1)       # V Vᵀ g
        out = out + (g - inside) / float(damping)
    return out.reshape(grad.shape)


def perceptual_efficiency(grad: torch.Tensor, direction: torch.Tensor,
                          hessian: torch.Tensor) -> torch.Tensor:
    """gᵀδ / √(δᵀHδ) per row: how much a step along δ lowers a loss of gradient g per unit of
    perceptual cost under the metric H (dim, dim) — or per-row metrics (B, dim, dim)."""
    g, d = grad.reshape(len(grad), -1).double(), direction.reshape(len(direction), -1).double()
    h = hessian.double()
    hd = d @ h if h.dim() == 2 else (h @ d.unsqueeze(-1)).squeeze(-1)
    cost = (d * hd).sum(1).clamp_min(0).sqrt()
    return (g * d).sum(1) / cost.clamp_min(1e-300)


def direction_efficiencies(grad: torch.Tensor, hessian: torch.Tensor, k: int,
                           reference: "ReferenceMetric | None" = None,
                           reference_code: int = 0) -> dict[str, float]:
    """For one image's gradient ``grad`` (any shape, dim values) and the exact metric
    ``hessian`` (dim, dim) at that image: ``perceptual_efficiency`` of the plain gradient and
    of both preconditioner forms with the top ``k`` eigenpairs of the exact metric (damped:
    γ = λ_k), and, given a ``reference`` metric, with its ``reference_code`` (as the transfer
    uses it); plus the share of ‖g‖ inside the top-k space of the exact metric."""
    g = grad.reshape(1, -1).double()
    h = hessian.double()
    vals, vecs = torch.linalg.eigh(h)
    vals, vecs = vals.flip(0)[:k], vecs.flip(1)[:, :k]
    directions = {"plain gradient": g,
                  "paper (top-k at the image)": precondition(g, vals, vecs, 0.0, "paper"),
                  "damped (top-k at the image)": precondition(g, vals, vecs,
                                                              float(vals[-1]), "damped")}
    if reference is not None:
        ref_vals = reference.eigvals[reference_code]
        ref_vecs = reference.eigvecs[reference_code].double()
        directions["paper (reference metric)"] = precondition(
            g, ref_vals, ref_vecs, reference.damping_of(reference_code, "paper"), "paper")
        directions["damped (reference metric)"] = precondition(
            g, ref_vals, ref_vecs, reference.damping_of(reference_code, "damped"), "damped")
    out = {name: perceptual_efficiency(g, d, h).item() for name, d in directions.items()}
    out["share of ‖g‖ in the top-k space"] = ((g @ vecs).norm() / g.norm()).item()
    return out


def metric_at(distance: Distance, images: torch.Tensor, k: int, method: str = "lanczos",
              seed: int = 0, tol: float = 1e-6, partial: PartialState | None = None,
              lockstep: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k metric at each of ``images`` (n, C, H, W): eigvals (n, k) and eigvecs
    (n, dim, k), float64 on the CPU (``top_eigenpairs`` of each image's Hessian).

    ``lockstep`` (default: when the images are on CUDA): the images' Lanczos solvers run
    side by side and their Hessian-vector products are batched (``LockstepHVP``); on the CPU
    each image is solved on its own. ``partial`` (enabled): the eigenpairs found so far are
    saved as each image finishes, and a build cut short resumes with the images not done
    (each image's eigenpairs are computed on their own, so on the CPU the result equals an
    uncut build bit for bit)."""
    if images.dim() != 4 or len(images) == 0:
        raise InputError(f"metric_at needs a non-empty batch of images (n, C, H, W), got "
                         f"shape {tuple(images.shape)}")
    dim = images[0].numel()
    saved = partial.load() if partial is not None else None
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = (
        {} if saved is None else {int(i): (p["eigvals"], p["eigvecs"])
                                  for i, p in saved["done"].items()})
    lock = threading.Lock()

    def keep(i: int, pair: tuple[torch.Tensor, torch.Tensor]) -> None:
        with lock:
            done[i] = pair
            if partial is not None and partial.enabled:
                partial.save({"done": {str(j): {"eigvals": v, "eigvecs": w}
                                       for j, (v, w) in sorted(done.items())}})

    todo = [i for i in range(len(images)) if i not in done]
    if (images.is_cuda if lockstep is None else lockstep) and len(todo) > 1:
        batch = LockstepHVP(distance, images)
        operators = {i: batch.operator(i) for i in todo}
        errors: list[BaseException] = []

        def solve(i: int) -> None:
            try:
                keep(i, top_eigenpairs(operators[i], dim, k, method, tol, seed))
            except BaseException as err:
                errors.append(err)
            finally:
                batch.finished(i)

        threads = [threading.Thread(target=solve, args=(i,)) for i in todo]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    else:
        for i in todo:
            keep(i, top_eigenpairs(hessian_vector_product(distance, images[i]), dim, k,
                                   method, tol, seed))
    return (torch.stack([done[i][0] for i in range(len(images))]),
            torch.stack([done[i][1] for i in range(len(images))]))


@dataclass
class ReferenceMetric:
    """The paper's metric: top-k eigenpairs at n_codes reference images, used by batch
    position (row i of a batch uses reference i mod n_codes). ``eigvals`` (n_codes, k),
    ``eigvecs`` (n_codes, dim, k); eigvals are stored in float64, eigvecs in float32."""

    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    damping: float = 0.0

    def __post_init__(self) -> None:
        self.eigvals = torch.as_tensor(self.eigvals).detach().to("cpu", torch.float64)
        self.eigvecs = torch.as_tensor(self.eigvecs).detach().to("cpu", torch.float32)
        vals, vecs = self.eigvals, self.eigvecs
        if (vals.dim() != 2 or vecs.dim() != 3 or len(vals) == 0 or len(vecs) != len(vals)
                or vecs.shape[2] != vals.shape[1]):
            raise InputError(f"ReferenceMetric needs eigvals (n_codes, k) and eigvecs "
                             f"(n_codes, dim, k), got {tuple(self.eigvals.shape)} and "
                             f"{tuple(self.eigvecs.shape)}")
        self.damping = float(self.damping)

    @property
    def n_codes(self) -> int:
        return len(self.eigvals)

    def precondition(self, grad: torch.Tensor, form: str = "paper",
                     damping: float | None = None) -> torch.Tensor:
        """The preconditioned gradient (``precondition``) of each row of ``grad`` (B, dim) or
        (B, C, H, W), row i under reference metric i mod n_codes; same shape and dtype.
        ``damping``: None takes this metric's ``damping`` for ``form="paper"`` and, for
        ``form="damped"``, γ = the smallest kept eigenvalue λ_k of each reference metric (no
        direction is amplified more than the softest kept one)."""
        out = torch.empty_like(grad)
        for code in range(min(len(grad), self.n_codes)):
            out[code::self.n_codes] = precondition(grad[code::self.n_codes], self.eigvals[code],
                                                   self.eigvecs[code],
                                                   self.damping_of(code, form, damping), form)
        return out

    def damping_of(self, code: int, form: str = "paper", damping: float | None = None) -> float:
        """The damping ``precondition`` uses for reference ``code`` (see there)."""
        if damping is not None:
            return float(damping)
        return self.damping if form == "paper" else float(self.eigvals[code, -1])

    def spectrum(self) -> np.ndarray:
        """The eigenvalues (n_codes, k) as a float64 numpy array, largest first per code."""
        return self.eigvals.numpy().copy()

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """{"eigvals", "eigvecs"}, contiguous (for ``safetensors.torch.save_file``)."""
        return {"eigvals": self.eigvals.contiguous(), "eigvecs": self.eigvecs.contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor],
                     damping: float = 0.0) -> "ReferenceMetric":
        """The inverse of ``to_tensors``."""
        missing = {"eigvals", "eigvecs"} - set(tensors)
        if missing:
            raise InputError(f"ReferenceMetric.from_tensors: missing {sorted(missing)}; "
                             "give the dict written by to_tensors")
        return cls(tensors["eigvals"], tensors["eigvecs"], damping)


def build_reference_metric(distance: Distance, images: torch.Tensor, k: int,
                           method: str = "lanczos", damping: float = 0.0, seed: int = 0,
                           tol: float = 1e-6,
                           partial: PartialState | None = None) -> ReferenceMetric:
    """``ReferenceMetric`` from the top-k metric at each reference image (n, C, H, W) (the
    caller generates them from random codes); ``partial``: saved after each reference code
    (``metric_at``)."""
    eigvals, eigvecs = metric_at(distance, images, k, method, seed, tol, partial)
    return ReferenceMetric(eigvals, eigvecs, damping)
