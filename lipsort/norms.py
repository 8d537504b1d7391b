"""Norm constraints for ∞-norm layers and exact operator norms.

Kernel convention (the one place it is documented)
--------------------------------------------------
A layer computes ``y = x @ kernel + bias`` with ``kernel`` of shape ``(in, out)``.
The math of the paper writes ``y = W x`` with W of shape (out, in), so W = kernelᵀ:
a *row* of W — the weights of one output unit — is a *column* of the kernel,
``kernel[:, j]``. All functions here take kernels and act per output unit, i.e. per
column.

Operator norms of x ↦ x @ kernel between ℓp (inputs) and ℓq (outputs):

    ‖·‖_{2→2}  = σ_max(kernel)
    ‖·‖_{∞→∞}  = max_j Σ_i |kernel[i, j]|       (max ℓ1 norm of an output unit)
    ‖·‖_{2→∞}  = max_j ‖kernel[:, j]‖₂          (the "(2,∞)" norm of the paper)
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _check_kernel(w: Array) -> None:
    if w.ndim != 2:
        raise ValueError(
            f"kernel must be a 2-D matrix of shape (in, out), got shape {tuple(w.shape)}."
        )


def _l1_ball_active_set(a: Array, radius: Array) -> Array:
    """The entries of each column of ``a`` ≥ 0 that stay nonzero when the column is
    projected onto {‖x‖₁ ≤ radius}, without a sort.

    The projection is max(a − θ*, 0) where θ* is the root of the decreasing, convex,
    piecewise-linear f(θ) = Σᵢ max(aᵢ − θ, 0) − r. Newton's method on f from any θ₀ with
    f(θ₀) ≥ 0 is Michelot's (1986) active-set iteration: θ_{t+1} = (Σ_{a>θ_t} a − r) /
    |{a > θ_t}| only grows and reaches θ* after finitely many rounds, each one fused pass
    over the column (a sum and a count), with no boolean array kept between rounds.
    Start: θ* = max_k (sum of the k largest − r)/k, so both k = n, (Σa − r)/n, and k = 1,
    max a − r, are lower bounds; the larger one saves the rounds a column dominated by one
    entry would take. Columns inside the ball (f(0) ≤ 0) stop at once; the caller keeps
    them unchanged. The loop stops when no θ grows (a NaN compares false and stops it too).
    """
    def newton(theta):
        above = a > theta
        return jnp.maximum(theta, (jnp.sum(jnp.where(above, a, 0.0), axis=0) - radius)
                           / jnp.maximum(jnp.sum(above, axis=0), 1))

    def body(carry):
        theta, _ = carry
        grown = newton(theta)
        return grown, jnp.any(grown > theta)

    start = jnp.maximum(jnp.max(a, axis=0, initial=0.0) - radius, (jnp.sum(a, axis=0) - radius) / max(a.shape[0], 1))
    theta, _ = jax.lax.while_loop(lambda c: c[1], body, (start, jnp.array(True)))
    return a > theta


def project_linf(w: Array, radius: float = 1.0) -> Array:
    """Projects each output unit (kernel column) onto the ℓ1 ball of ``radius``.

    Afterwards ‖x ↦ x @ w‖_{∞→∞} = max column ℓ1 norm ≤ radius. The projection is the
    exact Euclidean one, so it is idempotent and leaves units inside the ball unchanged.
    """
    w = jnp.asarray(w)
    _check_kernel(w)
    if isinstance(radius, (int, float)) and not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    radius = jnp.asarray(radius, w.dtype)
    a = jnp.abs(w)
    # The active set is found without gradients; θ is then the differentiable function
    # of the kernel that the sort-based formula (Duchi et al., 2008) also gives.
    active = _l1_ball_active_set(jax.lax.stop_gradient(a), jax.lax.stop_gradient(radius))
    theta = (jnp.sum(jnp.where(active, a, 0.0), axis=0) - radius) / jnp.maximum(jnp.sum(active, axis=0), 1)
    projected = jnp.sign(w) * jnp.maximum(a - theta, 0.0)
    return jnp.where(jnp.sum(a, axis=0) <= radius, w, projected)


def normalize_two_inf(w: Array, eps: float = 1e-12) -> Array:
    """Scales each output unit (kernel column) to unit ℓ2 norm: ‖·‖_{2→∞} = 1.

    The first layer of an ∞-norm network that must be Lipschitz in ℓ2 (the paper's
    (2,∞) constraint). Units are normalized exactly (not merely clipped), which keeps
    the gradient norm of each unit at 1.
    """
    w = jnp.asarray(w)
    _check_kernel(w)
    norms = jnp.linalg.norm(w, axis=0, keepdims=True)
    return w / jnp.maximum(norms, eps)


_NORM_ALIASES = {2: 2, "2": 2, "l2": 2, math.inf: math.inf, "inf": math.inf, "linf": math.inf}


def _parse_p(p, name: str) -> float:
    try:
        return _NORM_ALIASES[p]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be 2 or inf (also 'l2', 'linf'), got {p!r}.") from None


def operator_norm(w, p, q=None) -> float:
    """Exact operator norm of x ↦ x @ w from ℓp to ℓq, in float64 (q defaults to p).

    Supported: (2, 2) largest singular value; (inf, inf) max column ℓ1 norm;
    (2, inf) max column ℓ2 norm. Used for certificates, so it is computed with
    numpy in float64 regardless of the input dtype.

    (2, 2) is :func:`certified_spectral_norm`: an upper bound of σ_max proven with every
    float64 rounding accounted for, within ~1e-10 (relative) of it, and cached by the
    array's bytes, so an export and the certificate that follows it pay for it once.
    """
    p = _parse_p(p, "p")
    q = p if q is None else _parse_p(q, "q")
    if (p, q) == (2, 2):
        return certified_spectral_norm(w)
    w = np.asarray(w, dtype=np.float64)
    _check_kernel(w)
    if (p, q) == (math.inf, math.inf):
        return float(np.abs(w).sum(axis=0).max(initial=0.0))
    if (p, q) == (2, math.inf):
        return float(np.sqrt((w * w).sum(axis=0)).max(initial=0.0))
    raise ValueError(f"operator norm from ℓ{p} to ℓ{q} is not supported; use (2,2), (inf,inf) or (2,inf).")


# --- the exact spectral norm, fast and rounding-safe ----------------------------------------

_U = 2.0**-53  # unit roundoff of float64


def _gamma(k: int) -> float:
    """γ_k = k·u / (1 − k·u): the relative error bound of a k-term float64 sum/product."""
    return k * _U / (1.0 - k * _U)


def _one_blas_thread():
    """BLAS on one thread: Lanczos' matrix-vector products and the Cholesky have many
    synchronization points, and threaded OpenBLAS runs them 20–50× slower on shared cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def _small_gram(w: np.ndarray) -> np.ndarray:
    """WᵀW for tall W, WWᵀ for wide W (float64): the Gram on the smaller side."""
    return w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T


def _lambda_max_estimate(gram: np.ndarray, tol: float = 1e-10) -> float:
    """λ_max of a symmetric PSD matrix (not certified: a Ritz value, ≤ λ_max up to
    rounding; relative error about ``tol``² / relative gap). Lanczos (ARPACK) for large
    matrices, LAPACK below."""
    n = gram.shape[0]
    if n > 64:
        from scipy.sparse.linalg import ArpackError, eigsh

        v0 = np.random.default_rng(0).standard_normal(n)  # deterministic: same bytes, same bound
        try:
            return float(eigsh(gram, k=1, which="LA", v0=v0, tol=tol, return_eigenvectors=False)[0])
        except ArpackError:
            pass
    return float(np.linalg.eigvalsh(gram)[-1])


def _certify_lambda_max(gram: np.ndarray, mu: float) -> float | None:
    """A proven upper bound of λ_max(gram) close to ``mu`` if μI − gram passes a float64
    Cholesky, else None.

    With B = fl(μI − G) (off-diagonal exact, |fl(μ − g_ii) − (μ − g_ii)| ≤ 2u·b_ii), a
    completed Cholesky gives RᵀR = B + ΔB with ‖ΔB‖₂ ≤ γ_{n+1}‖R‖_F² ≤ α·tr B,
    α = γ_{n+1}/(1 − γ_{n+1}) (Demmel 1989; Rump 2006), so λ_min(B) ≥ −α·tr B and
    λ_max(G) ≤ μ + α·tr B + 2u·max b_ii (+ a term for underflow).
    """
    n = gram.shape[0]
    b = -gram
    diag = mu - np.diagonal(gram)
    b[np.diag_indices(n)] = diag
    try:
        np.linalg.cholesky(b)
    except np.linalg.LinAlgError:
        return None
    if not np.all(diag > 0):
        return None
    gamma = _gamma(n + 1)
    bound = mu + gamma / (1.0 - gamma) * float(diag.sum()) * (1.0 + _gamma(n)) + 2.0 * _U * float(diag.max())
    return (bound + 1e-290) * (1.0 + 8.0 * _U)


def certified_spectral_norm(w) -> float:
    """σ_max(w) for a 2-D array, as a proven float64 upper bound within ~1e-10 of it.

    The Gram G on the smaller side is formed in float64 (error ‖ΔG‖₂ ≤ γ_{m+1}‖W‖_F² with
    m the inner dimension; exact products for float32 inputs); its λ_max is estimated by
    Lanczos and certified by one Cholesky of (λ̂ + δ)I − G (:func:`_certify_lambda_max`).
    Gram + Lanczos + Cholesky cost a fraction of a dense SVD or eigendecomposition. Should
    the certification fail (it does not for a converged estimate), δ grows, then LAPACK's
    eigenvalue is tried, then the Gershgorin bound ‖G‖_∞ (always valid) is used.

    Results are cached by the array's bytes (large arrays only): an export records the
    bound of its float32 kernel and the certificate recomputes it from the same bytes.
    """
    w = np.asarray(w)
    _check_kernel(w)
    if w.size < 4096:
        return _spectral_norm_upper(w)
    key = (hashlib.blake2b(np.ascontiguousarray(w).view(np.uint8), digest_size=20).digest(), w.shape, w.dtype.str)
    if key in _SPECTRAL_CACHE:
        _SPECTRAL_CACHE.move_to_end(key)
        return _SPECTRAL_CACHE[key]
    value = _spectral_norm_upper(w)
    _SPECTRAL_CACHE[key] = value
    while len(_SPECTRAL_CACHE) > _SPECTRAL_CACHE_SIZE:
        _SPECTRAL_CACHE.popitem(last=False)
    return value


_SPECTRAL_CACHE: collections.OrderedDict = collections.OrderedDict()
_SPECTRAL_CACHE_SIZE = 64


def _spectral_norm_upper(w: np.ndarray) -> float:
    w = np.asarray(w, np.float64)
    if w.size == 0:
        return 0.0
    if not np.all(np.isfinite(w)):
        return math.inf
    gram = _small_gram(w)
    n, m = gram.shape[0], max(w.shape)
    frobenius_sq = float(np.trace(gram)) * (1.0 + _gamma(m * n + 1))
    if frobenius_sq == 0.0:
        return 0.0
    gram_error = _gamma(m + 1) * frobenius_sq  # ‖computed G − WᵀW‖₂
    with _one_blas_thread():
        bound = _certified_lambda_max(gram)
    return math.sqrt((bound + gram_error) * (1.0 + 4.0 * _U)) * (1.0 + 2.0 * _U)


def _certified_lambda_max(gram: np.ndarray) -> float:
    n = gram.shape[0]
    bound = None
    for estimate in (_lambda_max_estimate, lambda g: float(np.linalg.eigvalsh(g)[-1])):
        top = max(estimate(gram), float(np.diagonal(gram).max()))
        delta = 8.0 * n * _U * top
        for _ in range(3):
            bound = _certify_lambda_max(gram, top + delta)
            if bound is not None:
                break
            delta *= 64.0
        if bound is not None:
            break
    if bound is None:  # Gershgorin: λ_max ≤ max row sum of |G|
        bound = float(np.abs(gram).sum(axis=1).max()) * (1.0 + _gamma(n + 1))
    return bound


def sigma_max_estimate(w, tol: float = 1e-7) -> float:
    """σ_max(w) to ~1e-7 relative or better, *not* certified: for scaling before a
    certified check. Near a multiple of an orthonormal matrix, a bound from the Gram;
    otherwise Lanczos on the Gram (a Ritz value: not above σ_max up to rounding)."""
    w = np.asarray(w, np.float64)
    _check_kernel(w)
    if w.size == 0 or not np.any(w):
        return 0.0
    gram = _small_gram(w)
    # Near c·(an orthonormal matrix) (Björck exports, spectral layers at init), the
    # upper bound c·sqrt(1 + ‖G/c² − I‖_F) is already within ~‖G/c² − I‖_F/2 of σ_max.
    c2 = float(np.trace(gram)) / gram.shape[0]
    if c2 > 0:
        r = float(np.linalg.norm(gram / c2 - np.eye(gram.shape[0])))
        if r <= 1e-7:
            return math.sqrt(c2 * (1.0 + r))
    with _one_blas_thread():
        return math.sqrt(max(_lambda_max_estimate(gram, tol), 0.0))


def normalize_spectral(w) -> np.ndarray:
    """w / σ̂ in float64, σ̂ = :func:`sigma_max_estimate` (the spectral constraint's export:
    :func:`lipsort.export.fit_under` then certifies the stored float32 kernel exactly)."""
    w = np.asarray(w, np.float64)
    return w / max(sigma_max_estimate(w), np.finfo(np.float64).tiny)


# --- float64 numpy projections (exports: no JAX dispatch, no compilation) ---------------------


def project_linf_numpy(w, radius: float = 1.0) -> np.ndarray:
    """:func:`project_linf` in numpy float64: each kernel column onto the ℓ1 ball of
    ``radius`` (the sort-based formula of Duchi et al., 2008, all columns at once)."""
    w = np.asarray(w, np.float64)
    _check_kernel(w)
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    a = np.abs(w)
    u = -np.sort(-a, axis=0)  # each column descending
    css = np.cumsum(u, axis=0)
    j = np.arange(1, w.shape[0] + 1, dtype=np.float64)[:, None]
    rho = np.maximum(np.sum(u * j > css - radius, axis=0), 1)  # the active set is a prefix
    theta = (css[rho - 1, np.arange(w.shape[1])] - radius) / rho
    projected = np.sign(w) * np.maximum(a - theta, 0.0)
    return np.where(a.sum(axis=0) <= radius, w, projected)


def normalize_two_inf_numpy(w, eps: float = 1e-12) -> np.ndarray:
    """:func:`normalize_two_inf` in numpy float64: each kernel column to unit ℓ2 norm."""
    w = np.asarray(w, np.float64)
    _check_kernel(w)
    return w / np.maximum(np.sqrt((w * w).sum(axis=0, keepdims=True)), eps)


def column_norms(w: Array, p: float) -> Array:
    """The ℓp norm (p = 1, 2) of each output unit (kernel column)."""
    return jnp.sum(jnp.abs(w), axis=0) if p == 1 else jnp.linalg.norm(w, axis=0)


def project_l1_sphere(w: Array, radius: float = 1.0) -> Array:
    """Projects each output unit (kernel column) onto the ℓ1 *sphere* {‖v‖₁ = radius}.

    Units outside the ball get the ball's projection (:func:`project_linf`); a unit v
    inside is pushed out to its nearest point on the sphere, the facet {s·u = r} of its
    sign pattern s: u = v + s·(r − ‖v‖₁)/n (zeros count as +). This is the projection
    the paper's code applies after every update (it inflates units inside the ball).
    """
    w = jnp.asarray(w)
    _check_kernel(w)
    l1 = jnp.sum(jnp.abs(w), axis=0, keepdims=True)
    signs = jnp.where(w < 0, -1.0, 1.0).astype(w.dtype)
    inflated = w + signs * (radius - l1) / w.shape[0]
    return jnp.where(l1 < radius, inflated, project_linf(w, radius))


def project_l1_sphere_numpy(w, radius: float = 1.0) -> np.ndarray:
    """:func:`project_l1_sphere` in numpy float64 (units inside the ball pushed out to the
    facet of their sign pattern, the others projected onto the ball)."""
    w = np.asarray(w, np.float64)
    _check_kernel(w)
    l1 = np.abs(w).sum(axis=0, keepdims=True)
    signs = np.where(w < 0, -1.0, 1.0)
    return np.where(l1 < radius, w + signs * (radius - l1) / w.shape[0], project_linf_numpy(w, radius))
