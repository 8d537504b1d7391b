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
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST
MAX_ORDER = 4


def _mm(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=HIGHEST)


def _check_matrix(w: Array, name: str = "w") -> None:
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


def _gram(w: Array) -> Array:
    """Gram matrix on the smaller side: WᵀW for tall W, WWᵀ for wide W."""
    return _mm(w.T, w) if w.shape[0] >= w.shape[1] else _mm(w, w.T)


def _apply(w: Array, p: Array) -> Array:
    """W·P for tall W (P acts on columns' space), P·W for wide W."""
    return _mm(w, p) if w.shape[0] >= w.shape[1] else _mm(p, w)


def _certified_norm_from_gram(gram: Array, safety: float) -> Array:
    """An upper bound of σ_max from the Gram: sqrt(min(‖G‖_∞, tr G)) · safety."""
    inf_bound = jnp.max(jnp.sum(jnp.abs(gram), axis=1))
    frobenius_sq = jnp.trace(gram)
    bound = jnp.sqrt(jnp.minimum(inf_bound, frobenius_sq)) * safety
    return jnp.maximum(bound, jnp.finfo(gram.dtype).tiny)


def _rounding_safety(w: Array) -> float:
    # Each Gram entry carries a relative rounding error of at most ~k·eps (k = inner
    # dimension); inflating the bound by that much keeps it an upper bound in floats.
    k = max(w.shape)
    return 1.0 + 2.0 * k * float(jnp.finfo(w.dtype).eps)


def certified_scale(w: Array) -> tuple[Array, Array]:
    """Returns (W / s, s) with s ≥ σ_max(W) guaranteed, so σ_max(W / s) ≤ 1."""
    w = jnp.asarray(w)
    _check_matrix(w)
    s = _certified_norm_from_gram(_gram(w), _rounding_safety(w))
    return w / s, s


def _bjorck_step(w: Array, gram: Array, coeffs: tuple[float, ...]) -> Array:
    if len(coeffs) == 2:
        # Order 1 as (1+β)W − β·W·G: exactly two matmuls per step (Gram + product).
        beta = coeffs[1]
        return (1.0 + beta) * w - beta * _apply(w, gram)
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    residual = eye - gram
    # Horner: P = c0 I + R (c1 I + R (c2 I + … c_p R)).
    poly = coeffs[-1] * residual
    for c in reversed(coeffs[1:-1]):
        poly = _mm(residual, poly + c * eye)
    return _apply(w, poly + coeffs[0] * eye)


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
    _check_matrix(w)
    coeffs = taylor_coefficients(order, beta)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative integer, got {num_iters!r}.")
    if num_iters == 0:
        return certified_scale(w)[0] if prescale else w
    gram = _gram(w)
    if prescale:
        s = _certified_norm_from_gram(gram, _rounding_safety(w))
        w, gram = w / s, gram / (s * s)  # reuse the Gram: scaling is free
    w = _bjorck_step(w, gram, coeffs)
    return jax.lax.fori_loop(
        1, num_iters, lambda _, x: _bjorck_step(x, _gram(x), coeffs), w
    )


def orthogonality_residual(w: Array) -> Array:
    """‖G − I‖₂ with G the Gram on the smaller side; 0 iff W is (semi-)orthogonal."""
    w = jnp.asarray(w)
    _check_matrix(w)
    gram = _gram(w)
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(gram - jnp.eye(gram.shape[0], dtype=gram.dtype))))


def polar(w: Array) -> Array:
    """The orthogonal polar factor U Vᵀ of W = U Σ Vᵀ (the SVD reference)."""
    w = jnp.asarray(w)
    _check_matrix(w)
    u, _, vt = jnp.linalg.svd(w, full_matrices=False)
    return _mm(u, vt)


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
    _check_matrix(w)
    if u.shape != (w.shape[1],):
        raise ValueError(f"u must have shape ({w.shape[1]},) for a kernel {tuple(w.shape)}, got {u.shape}.")
    w_fixed = jax.lax.stop_gradient(w)

    def step(_, u):
        v = _unit(_mm(w_fixed, u))
        return _unit(_mm(w_fixed.T, v))

    u = jax.lax.fori_loop(0, max(int(num_iters), 1), step, jax.lax.stop_gradient(u))
    v = jax.lax.stop_gradient(_unit(_mm(w_fixed, u)))
    sigma = v @ _mm(w, u)
    return sigma, u


def finish_orthonormalization(
    w: Array, tol: float = 1e-7, max_iters: int = 100, order: int = 1
) -> np.ndarray:
    """Orthonormalizes to float32 precision in float64: the exact step of an export.

    Continues Björck (with a certified start) from ``w`` until ‖WᵀW − I‖₂ ≤ tol.
    Starting from a training-time iterate this takes a handful of steps and moves W by
    about its residual, so the exported function matches the trained one.
    """
    with jax.enable_x64(True):
        x = bjorck(jnp.asarray(np.asarray(w, np.float64)), 0)
        for _ in range(max_iters):
            if float(orthogonality_residual(x)) <= tol:
                break
            x = bjorck(x, 1, order=order, prescale=False)
        return np.asarray(x)


# ---------------------------------------------------------------------------------------
# Fast schedule: per-step optimized odd polynomials, finished by order-1 Björck steps.
# ---------------------------------------------------------------------------------------

FAST_DEGREE = 5
FAST_MARGIN = 1e-3
FAST_SWITCH = 0.99


def _odd_poly(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """p(x) = Σ_j a_j x^(2j+1), evaluated in float64."""
    x = np.asarray(x, np.float64)
    return sum(a * x ** (2 * j + 1) for j, a in enumerate(coeffs))


def _critical_points(coeffs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Zeros of p' in (lo, hi): p'(x) = Σ (2j+1) a_j s^j with s = x², a polynomial in s."""
    deriv = [(2 * j + 1) * a for j, a in enumerate(coeffs)]
    roots = np.roots(deriv[::-1])
    roots = roots[np.abs(roots.imag) <= 1e-12 * np.maximum(1.0, np.abs(roots.real))].real
    roots = roots[(roots > lo * lo) & (roots < hi * hi)]
    return np.sqrt(roots)


def _exact_range(coeffs: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """(min, max) of p on [lo, hi], exactly: endpoints and the zeros of p'."""
    pts = np.concatenate([[lo, hi], _critical_points(coeffs, lo, hi)])
    vals = _odd_poly(coeffs, pts)
    return float(vals.min()), float(vals.max())


def _remez_odd(lower: float, upper: float, degree: int, max_iters: int = 100) -> np.ndarray:
    """Minimax odd polynomial of the given degree approximating 1 on [lower, upper].

    The error 1 − p equioscillates at d+2 points (d+1 = number of coefficients) that
    include both endpoints; Remez exchange finds them (the interior ones are the zeros
    of p', a polynomial in x²).
    """
    n_coef = (degree + 1) // 2
    n_ref = n_coef + 1
    k = np.arange(n_ref)
    # Start from Chebyshev points, geometrically spread when the interval is wide.
    x = np.geomspace(lower, upper, n_ref) if upper / lower > 10 else (
        (lower + upper) / 2 - (upper - lower) / 2 * np.cos(np.pi * k / (n_ref - 1)))
    signs = (-1.0) ** k
    coeffs = None
    for _ in range(max_iters):
        a = np.stack([x ** (2 * j + 1) for j in range(n_coef)] + [signs], axis=1)
        sol = np.linalg.solve(a, np.ones(n_ref))
        coeffs = sol[:-1]
        inner = np.sort(_critical_points(coeffs, lower, upper))
        if len(inner) != n_ref - 2:
            break
        new_x = np.concatenate([[lower], inner, [upper]])
        converged = np.allclose(new_x, x, rtol=1e-14, atol=0.0)
        x = new_x
        if converged:
            break
    return coeffs


def fast_schedule(
    lower: float = 1e-3,
    *,
    degree: int = FAST_DEGREE,
    margin: float = FAST_MARGIN,
    switch: float = FAST_SWITCH,
    max_steps: int = 40,
) -> tuple[tuple[float, ...], ...]:
    """Coefficients of the optimized polynomial steps of :func:`fast_orthonormalize`.

    Step k applies p_k(σ) = Σ_j a_j σ^(2j+1) to every singular value. Given the design
    interval [ℓ_k, 1] for the singular values, p_k is the minimax odd polynomial for 1 on
    [ℓ_k, 1 + margin] (Remez), divided by its exact maximum on [0, 1 + margin] (endpoints
    and zeros of p'), so that

        p_k([0, 1 + margin]) ⊆ [0, 1]                                   (safety)

    and ℓ_{k+1} = min p_k on [ℓ_k, 1 + margin] is as large as possible (speed; the greedy
    minimax choice is optimal for compositions, Amsel et al. 2025 "Polar Express").
    Steps are added until ℓ_k ≥ ``switch``; order-1 Björck (quadratic) finishes.

    Returns a tuple of coefficient tuples (a_0, …, a_d), d = (degree − 1)/2.
    """
    return _fast_schedule(float(lower), int(degree), float(margin), float(switch), int(max_steps))


@functools.lru_cache(maxsize=64)
def _fast_schedule(lower, degree, margin, switch, max_steps):
    if degree < 3 or degree % 2 == 0:
        raise ValueError(f"degree must be an odd integer ≥ 3, got {degree}.")
    if not 0.0 < lower < 1.0:
        raise ValueError(f"lower must be in (0, 1), got {lower}.")
    if not 0.0 < margin <= 0.5:
        raise ValueError(f"margin must be in (0, 0.5], got {margin}.")
    upper = 1.0 + margin
    steps = []
    ell = lower
    while ell < switch and len(steps) < max_steps:
        coeffs = _remez_odd(ell, upper, degree)
        _, top = _exact_range(coeffs, 0.0, upper)
        coeffs = coeffs / top  # now max over [0, 1 + margin] is exactly 1 (up to 1 ulp)
        low_all, _ = _exact_range(coeffs, 0.0, upper)
        new_ell, _ = _exact_range(coeffs, ell, upper)
        # p ≥ 0 on [0, 1+margin] keeps singular vectors' signs (convergence to the polar
        # factor, not to another orthogonal matrix); p(ℓ) > ℓ means progress.
        if low_all < -1e-12 or new_ell <= ell:
            raise RuntimeError(f"fast schedule design failed at ℓ={ell}: coefficients {coeffs}.")
        steps.append(tuple(float(c) for c in coeffs))
        ell = new_ell
    return tuple(steps)


def odd_polynomial_step(w: Array, coeffs: tuple[float, ...], gram: Array | None = None) -> Array:
    """W ← W·q(WᵀW) with q(G) = Σ_j a_j G^j, i.e. σ ↦ Σ_j a_j σ^(2j+1) on singular values.

    Costs 1 + (len(coeffs) − 1) matmuls: the Gram (skipped when given), len(coeffs) − 2
    Horner products on the small side, and the product with W.
    """
    gram = _gram(w) if gram is None else gram
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    poly = coeffs[-1] * gram + coeffs[-2] * eye
    for c in reversed(coeffs[:-2]):
        poly = _mm(gram, poly) + c * eye
    return _apply(w, poly)


def fast_orthonormalize(
    w: Array,
    num_iters: int,
    *,
    lower: float = 1e-3,
    degree: int = FAST_DEGREE,
    prescale: bool = True,
) -> Array:
    """Faster Björck: optimized odd-polynomial steps, then order-1 Björck steps.

    ``num_iters`` counts all steps. The first ``min(K, num_iters − 1)`` apply the
    polynomials of :func:`fast_schedule` (K of them, (degree+1)/2 matmuls each; K = 6 for
    the defaults), the remaining ones (at least the last) are order-1 Björck steps
    (β = 1/2, 2 matmuls). ``lower`` is the design lower bound of σ_min/σ_max-bound of the
    start; singular values below it are still lifted (by the slope p'(0) ≈ 4.2 per step)
    but need more Björck steps afterwards. It tunes speed only, never safety.

    Why σ_max ≤ 1 holds at the output (exact arithmetic; rounding adds O(n·eps)):

    * the start W / s has σ_max ≤ 1 (:func:`certified_scale`, s is an upper bound);
    * every polynomial step maps [0, 1 + margin] into [0, 1] (by construction, the
      maximum over the interval is computed exactly from the zeros of p'), so all
      iterates keep σ_max ≤ 1, and rounding excursions up to ``margin`` = 1e-3 above 1
      are pulled back below 1 at the next step instead of being amplified;
    * p ≥ 0 on [0, 1 + margin], so singular values never change sign and the limit is
      the polar factor U Vᵀ of the input;
    * the order-1 Björck step f(σ) = (3σ − σ³)/2 satisfies 1 − f(σ) = (σ − 1)²(σ + 2)/2 ≥ 0
      and f ≥ 0 on [0, √3]: it maps [0, √3] into [0, 1], so the final step alone would
      restore σ_max ≤ 1 even after an overshoot of up to √3.

    Tall and wide matrices use the Gram on the smaller side; matmuls run at HIGHEST.
    """
    w = jnp.asarray(w)
    _check_matrix(w)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative integer, got {num_iters!r}.")
    schedule = fast_schedule(lower, degree=degree)
    if num_iters == 0:
        return certified_scale(w)[0] if prescale else w
    gram = _gram(w)
    if prescale:
        s = _certified_norm_from_gram(gram, _rounding_safety(w))
        w, gram = w / s, gram / (s * s)
    num_poly = min(len(schedule), num_iters - 1)
    for k in range(num_poly):
        w = odd_polynomial_step(w, schedule[k], gram if k == 0 else None)
    order1 = taylor_coefficients(1, 0.5)
    if num_poly > 0:
        gram = _gram(w)
    w = _bjorck_step(w, gram, order1)
    return jax.lax.fori_loop(
        num_poly + 1, num_iters, lambda _, x: _bjorck_step(x, _gram(x), order1), w
    )


def fast_num_iters(lower: float = 1e-3, finish_iters: int = 3, *, degree: int = FAST_DEGREE) -> int:
    """A step count for :func:`fast_orthonormalize`: the schedule plus ``finish_iters``."""
    return len(fast_schedule(lower, degree=degree)) + finish_iters
