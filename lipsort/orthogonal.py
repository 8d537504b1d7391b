"""Orthonormalization for 2-norm constrained layers: Björck, power iteration, polar.

Björck orthonormalization (order p, step β) drives every singular value of W to 1:

    order 1:  W ← W (I + β (I − WᵀW)) = (1+β) W − β W WᵀW
    order p:  W ← W Σ_{k=0..p} c_k (I − WᵀW)^k,   c_k = binom(2k, k) / 4^k   (β = 1/2)

Order p is the p-th Taylor polynomial of (WᵀW)^{-1/2} around I, so it is exact in the
limit and on a singular value σ ∈ [0, 1] acts as σ ↦ σ·S_p(1 − σ²) with S_p a partial
sum of (1 − t)^{-1/2} = Σ c_k t^k (all c_k > 0). Hence σ ≤ 1 stays ≤ 1: the
iteration never lifts the operator norm above 1 *provided the start has σ_max ≤ 1*.
For order 1 that holds for any β ∈ (0, 1/2]; order > 1 is defined only for β = 1/2.

The start is made safe by :func:`certified_scale`, which divides W by an upper bound
of σ_max that cannot be low (unlike a power-iteration estimate):

    σ_max² = λ_max(G) ≤ min(‖G‖_∞, tr G),   G = WᵀW (the Gram on the smaller side).

‖G‖_∞ (max absolute row sum) is tight near the manifold (G ≈ I), where training lives,
and the Gram it needs is reused by the first Björck step, so the scaling is free.

Tall (m ≥ n) and wide (m < n) matrices are both handled with the Gram on the smaller
side: W ← W P(WᵀW) or W ← P(WWᵀ) W. Every matmul runs at ``Precision.HIGHEST``:
TF32/bf16 defaults on GPU/TPU stall ‖WᵀW − I‖ near 1e-3.

The faster polynomial schedules (optimized odd polynomials per step) live in
:mod:`lipsort.fast_orthogonal`; they build on the public helpers here (``matmul``,
``gram_matrix``, ``bjorck_step``, ``certified_norm_from_gram``, …).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST
MAX_ORDER = 4


def matmul(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=HIGHEST)


def check_matrix(w: Array, name: str = "w") -> None:
    if w.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D matrix (kernel of shape (in, out)), got shape {tuple(w.shape)}."
        )


def taylor_coefficients(order: int, beta: float = 0.5) -> tuple[float, ...]:
    """Coefficients (c_0, …, c_p) of P(R) = Σ c_k R^k with R = I − WᵀW.

    Order 1 allows any step β (c = (1, β)); higher orders are the Taylor series of
    (1 − t)^{-1/2}, c_k = binom(2k, k)/4^k, which fixes β = 1/2.
    """
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an integer in 1..{MAX_ORDER}, got {order!r}.")
    if order == 1:
        if not 0.0 < beta <= 0.5:
            raise ValueError(
                f"beta must be in (0, 0.5] so that no singular value is pushed above 1, got {beta}."
            )
        return (1.0, float(beta))
    if beta != 0.5:
        raise ValueError(
            f"Björck order {order} > 1 is the Taylor series of (WᵀW)^(-1/2) and requires "
            f"beta=0.5, got beta={beta}; use order=1 for another step size."
        )
    return tuple(math.comb(2 * k, k) / 4**k for k in range(order + 1))


def gram_matrix(w: Array) -> Array:
    """Gram matrix on the smaller side: WᵀW for tall W, WWᵀ for wide W."""
    return matmul(w.T, w) if w.shape[0] >= w.shape[1] else matmul(w, w.T)


def apply_on_small_side(w: Array, p: Array) -> Array:
    """W·P for tall W (P acts on columns' space), P·W for wide W."""
    return matmul(w, p) if w.shape[0] >= w.shape[1] else matmul(p, w)


def certified_norm_from_gram(gram: Array, safety: float) -> Array:
    """An upper bound of σ_max from the Gram: sqrt(min(‖G‖_∞, tr G)) · safety."""
    inf_bound = jnp.max(jnp.sum(jnp.abs(gram), axis=1))
    frobenius_sq = jnp.trace(gram)
    bound = jnp.sqrt(jnp.minimum(inf_bound, frobenius_sq)) * safety
    return jnp.maximum(bound, jnp.finfo(gram.dtype).tiny)


def rounding_safety(w: Array) -> float:
    # Each Gram entry carries a relative rounding error of at most ~k·eps (k = inner
    # dimension); inflating the bound by that much keeps it an upper bound in floats.
    k = max(w.shape)
    return 1.0 + 2.0 * k * float(jnp.finfo(w.dtype).eps)


def certified_scale(w: Array) -> tuple[Array, Array]:
    """Returns (W / s, s) with s ≥ σ_max(W) guaranteed, so σ_max(W / s) ≤ 1."""
    w = jnp.asarray(w)
    check_matrix(w)
    s = certified_norm_from_gram(gram_matrix(w), rounding_safety(w))
    return w / s, s


def bjorck_step(w: Array, gram: Array, coeffs: tuple[float, ...]) -> Array:
    if len(coeffs) == 2:
        # Order 1 as (1+β)W − β·W·G: exactly two matmuls per step (Gram + product).
        beta = coeffs[1]
        return (1.0 + beta) * w - beta * apply_on_small_side(w, gram)
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    residual = eye - gram
    # Horner: P = c0 I + R (c1 I + R (c2 I + … c_p R)).
    poly = coeffs[-1] * residual
    for c in reversed(coeffs[1:-1]):
        poly = matmul(residual, poly + c * eye)
    return apply_on_small_side(w, poly + coeffs[0] * eye)


def bjorck(
    w: Array, num_iters: int, order: int = 1, beta: float = 0.5, *, prescale: bool = True
) -> Array:
    """Björck orthonormalization of a matrix (any shape (m, n)), differentiable.

    Args:
      w: the matrix, e.g. a kernel of shape (in, out).
      num_iters: number of Björck steps (≥ 0).
      order: Taylor order 1..4 (order > 1 requires beta = 0.5).
      beta: step of the order-1 iteration, in (0, 0.5].
      prescale: divide by a certified upper bound of σ_max first (default). Turn off
        only when w is known to have σ_max ≤ 1 already.
    Returns:
      The iterate; its singular values approach 1 and never exceed 1 (up to rounding)
      when the start has σ_max ≤ 1.
    """
    w = jnp.asarray(w)
    check_matrix(w)
    coeffs = taylor_coefficients(order, beta)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative integer, got {num_iters!r}.")
    if num_iters == 0:
        return certified_scale(w)[0] if prescale else w
    gram = gram_matrix(w)
    if prescale:
        s = certified_norm_from_gram(gram, rounding_safety(w))
        w, gram = w / s, gram / (s * s)  # reuse the Gram: scaling is free
    w = bjorck_step(w, gram, coeffs)
    return jax.lax.fori_loop(
        1, num_iters, lambda _, x: bjorck_step(x, gram_matrix(x), coeffs), w
    )


def orthogonality_residual(w: Array) -> Array:
    """‖G − I‖₂ with G the Gram on the smaller side; 0 iff W is (semi-)orthogonal."""
    w = jnp.asarray(w)
    check_matrix(w)
    gram = gram_matrix(w)
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(gram - jnp.eye(gram.shape[0], dtype=gram.dtype))))


def polar(w: Array) -> Array:
    """The orthogonal polar factor U Vᵀ of W = U Σ Vᵀ (the SVD reference)."""
    w = jnp.asarray(w)
    check_matrix(w)
    u, _, vt = jnp.linalg.svd(w, full_matrices=False)
    return matmul(u, vt)


def _unit(v: Array) -> Array:
    return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)


def power_iteration(w: Array, u: Array, num_iters: int = 1) -> tuple[Array, Array]:
    """Estimates σ_max(W) for a kernel W of shape (in, out) from a persistent vector.

    Iterates v ← W u / ‖W u‖, u ← Wᵀ v / ‖Wᵀ v‖ (u ∈ R^out), then σ = vᵀ W u.
    The vectors carry no gradient (as in spectral normalization); σ is differentiable
    in W. The estimate is a *lower* bound of σ_max: W / σ may have norm slightly above 1,
    which is why certificates are computed from exact norms at export.

    Returns:
      (sigma, u_new) — keep ``u_new`` for the next call.
    """
    w = jnp.asarray(w)
    check_matrix(w)
    if u.shape != (w.shape[1],):
        raise ValueError(f"u must have shape ({w.shape[1]},) for a kernel {tuple(w.shape)}, got {u.shape}.")
    w_fixed = jax.lax.stop_gradient(w)

    def step(_, u):
        v = _unit(matmul(w_fixed, u))
        return _unit(matmul(w_fixed.T, v))

    u = jax.lax.fori_loop(0, max(int(num_iters), 1), step, jax.lax.stop_gradient(u))
    v = jax.lax.stop_gradient(_unit(matmul(w_fixed, u)))
    sigma = v @ matmul(w, u)
    return sigma, u


def finish_orthonormalization(
    w: Array, tol: float = 1e-7, max_iters: int = 100, order: int = 1
) -> np.ndarray:
    """Orthonormalizes to float32 precision in float64: the exact step of an export.

    Björck steps of ``order`` (β = 1/2) in numpy float64 until the certified residual

        r = ‖G − I‖_F + γ_{m+1}·tr G  ≥  ‖WᵀW − I‖₂      (G the computed Gram, m its inner
                                                        dimension, γ the rounding bound)

    is ≤ ``tol`` (for order 1 also when the bound 7/8·r² of the next residual is). Each
    step's Gram is reused for the residual, so a step costs one Gram and one product and
    nothing else (no eigendecomposition). A start with r > 1/2 is first divided by the certified bound of :func:`certified_norm_from_gram`, so σ_max ≤ 1
    and Björck converges; with r ≤ 1/2 every σ² is in [1/2, 3/2], where the steps
    converge quadratically without scaling. Starting from a training-time iterate this
    takes one or two steps and moves W by about its residual, so the exported function
    matches the trained one. (The certificate itself is the exact norm of the stored
    kernel: :func:`lipsort.export.fit_under`.)
    """
    coeffs = taylor_coefficients(order, 0.5)
    x = np.array(w, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"w must be a 2-D matrix (kernel of shape (in, out)), got shape {tuple(x.shape)}.")
    tall = x.shape[0] >= x.shape[1]
    k, m = min(x.shape), max(x.shape)
    eye = np.eye(k)
    gamma = (m + 1) * 2.0**-53 / (1.0 - (m + 1) * 2.0**-53)
    for i in range(max_iters + 1):
        gram = x.T @ x if tall else x @ x.T
        residual = float(np.linalg.norm(gram - eye)) + gamma * float(np.trace(gram))
        if residual <= tol or i == max_iters:
            break
        if i == 0 and residual > 0.5:
            s = float(np.sqrt(min(np.abs(gram).sum(axis=1).max(), np.trace(gram)))) * (1.0 + 2.0 * gamma)
            s = max(s, np.finfo(np.float64).tiny)
            x, gram = x / s, gram / (s * s)
        if order == 1:
            x = 1.5 * x - 0.5 * (x @ gram if tall else gram @ x)
            # Each σ² = 1 − t becomes 1 − t²(3 + t)/4, so from r ≤ 1/2 the new residual is
            # ≤ 7/8·r² (+ the step's rounding): stop without forming another Gram.
            if residual <= 0.5:  # (no rescale this step: that needs r > 1/2)
                rounding = 4.0 * gamma * float(np.sqrt(np.trace(gram))) * float(np.linalg.norm(gram))
                if 0.875 * residual * residual + rounding <= tol:
                    break
            continue
        r = eye - gram  # Horner: P = c0 I + R (c1 I + R (c2 I + … c_p R))
        poly = coeffs[-1] * r
        for c in reversed(coeffs[1:-1]):
            poly = r @ (poly + c * eye)
        poly += coeffs[0] * eye
        x = x @ poly if tall else poly @ x
    return x
