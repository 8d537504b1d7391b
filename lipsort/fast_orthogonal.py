"""Fast orthonormalization: per-step optimized odd polynomials, finished by Björck.

From a cold start, :func:`fast_orthonormalize` replaces the first Björck steps by
optimized odd polynomials (minimax per step, degrees chosen by dynamic programming over
the matmul count, evaluated by Paterson–Stockmeyer in powers of I − WᵀW), each mapping
[0, 1 + 1e-3] into [0, 1], and ends with an order-1 Björck step: about half the matmuls
of order-1 Björck to the same residual, with σ_max ≤ 1 kept.

Selected for unrolled Björck layers by ``config.model.bjorck_method = "fast"``
(:mod:`lipsort.constraints`); :func:`fast_schedule` designs the steps once per setting.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lipsort.orthogonal import (
    apply_on_small_side,
    bjorck_step,
    certified_norm_from_gram,
    certified_scale,
    check_matrix,
    gram_matrix,
    matmul,
    rounding_safety,
    taylor_coefficients,
)

Array = jax.Array


FAST_DEGREES = (3, 5, 9, 13)  # the highest degree for each cost: 2, 3, 4, 5 matmuls
FAST_LOWER = 1e-4
FAST_MARGIN = 1e-3
FAST_TOL = 1e-5
# Each step is divided by its computed maximum plus this many float64 ulps of Σ|a_j|·u^(2j+1)
# (u = 1 + margin): a bound on the evaluation error of that maximum, so it cannot stay above 1.
_NORMALIZE_ULPS = 16
# Steps are evaluated in powers of R = I − G with coefficients b_k (:func:`odd_polynomial_step`);
# a float32 evaluation errs by ~eps·Σ|b_k| relative to q. Candidates with Σ|b_k| above this
# (high degrees far from 1: ~1e4 for degree 13 at ℓ = 0.01) are rejected: ≤ 1e-4 in float32.
_MAX_COEFF_SUM = 1e3


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
    of p', a polynomial in x²). A failed exchange returns the last iterate: callers check
    every step exactly (:func:`_design_step`), so it can cost speed, never safety.
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
        x = np.concatenate([[lower], inner, [upper]])
        # Converged when the error at the new extrema is the levelled error (to 1e-9
        # relative): the extrema's locations themselves are only known to ~√eps.
        if np.max(np.abs(1.0 - _odd_poly(coeffs, x))) <= abs(sol[-1]) * (1.0 + 1e-9) + 1e-15:
            break
    return coeffs


def _baby_steps(num_coeffs: int) -> int:
    """Paterson–Stockmeyer split s for q(G) = Σ_{j≤m} a_j G^j, m = num_coeffs − 1.

    The powers G², …, G^s cost s − 1 products; Horner in G^s over blocks of degree < s
    (the top block ≤ s, it may use G^s itself) costs ⌈m/s⌉ − 1 more. The cheapest s wins
    (the smaller on ties; s = 1 is plain Horner).
    """
    m = num_coeffs - 1
    return min(range(1, max(m, 1) + 1), key=lambda s: (s - 1 + max(math.ceil(m / s) - 1, 0), s))


def polynomial_step_matmuls(coeffs) -> int:
    """Matmuls of one :func:`odd_polynomial_step` (its Gram included), from the coefficient
    tuple or its length L: 2 + (s − 1) + ⌈(L − 1)/s⌉ − 1 with the split s of
    Paterson–Stockmeyer. L = 2, 3, 4, 5, 6, 7, 8, 9, 10 (degree 2L − 1) → 2, 3, 4, 4, 5, 5,
    6, 6, 6 matmuls: degrees 3, 5, 9, 13, 19 are the highest at their price.
    """
    num_coeffs = int(coeffs) if isinstance(coeffs, (int, np.integer)) else len(coeffs)
    if num_coeffs < 2:
        raise ValueError(f"an odd polynomial step needs at least 2 coefficients, got {num_coeffs}.")
    m = num_coeffs - 1
    s = _baby_steps(num_coeffs)
    return 2 + (s - 1) + math.ceil(m / s) - 1


def _taylor_odd(degree: int) -> np.ndarray:
    """Björck of order n = (degree − 1)/2 as an odd polynomial: σ·Σ_k c_k (1 − σ²)^k."""
    n = (degree - 1) // 2
    c = [math.comb(2 * k, k) / 4**k for k in range(n + 1)]
    return np.array([(-1) ** j * math.fsum(c[k] * math.comb(k, j) for k in range(j, n + 1))
                     for j in range(n + 1)])


def _design_step(ell: float, degree: int, margin: float):
    """The best safe step of the given degree for singular values in [ell, 1].

    Candidates: the minimax odd polynomial for 1 on [ell, 1 + margin] and on [ell, 1]
    (Remez), and the Taylor (Björck order (degree − 1)/2) polynomial, whose
    coefficients stay exact where Remez in monomials is ill-conditioned (ℓ within ~1e-4
    of 1 at high degree); each divided by its exact maximum on [0, 1 + margin]. A
    candidate is kept only if 0 ≤ p ≤ 1 on [0, 1 + margin] (checked at the endpoints and
    the zeros of p'), min p on [ell, 1] > ell, and its coefficients in powers of 1 − σ²
    sum (in absolute value) to at most ``_MAX_COEFF_SUM`` (rounding). Returns
    (min p on [ell, 1], coefficients) or None.
    """
    upper = 1.0 + margin
    best = None
    for design_upper in (upper, 1.0, None):
        with np.errstate(all="ignore"):
            try:
                coeffs = _taylor_odd(degree) if design_upper is None else _remez_odd(ell, design_upper, degree)
            except np.linalg.LinAlgError:
                continue
        if coeffs is None or not np.all(np.isfinite(coeffs)):
            continue
        _, top = _exact_range(coeffs, 0.0, upper)
        if not top > 0.0:
            continue
        slack = _NORMALIZE_ULPS * np.finfo(np.float64).eps * float(_odd_poly(np.abs(coeffs), upper))
        coeffs = coeffs / (top + slack)
        low_all, top_all = _exact_range(coeffs, 0.0, upper)
        new_ell, _ = _exact_range(coeffs, ell, 1.0)
        # p ≥ 0 keeps the singular vectors' signs (convergence to the polar factor, not to
        # another orthogonal matrix); p ≤ 1 keeps σ_max ≤ 1; p > ℓ on [ℓ, 1] is progress.
        if low_all < 0.0 or top_all > 1.0 or not new_ell > ell:
            continue
        if sum(abs(b) for b in _residual_basis(coeffs)) > _MAX_COEFF_SUM:
            continue
        if best is None or new_ell > best[0]:
            best = (new_ell, tuple(float(c) for c in coeffs))
    return best


_design_step_cached = functools.lru_cache(maxsize=4096)(_design_step)


def fast_schedule(
    lower: float = FAST_LOWER,
    *,
    degree: int | tuple[int, ...] | None = None,
    margin: float = FAST_MARGIN,
    tol: float = FAST_TOL,
    max_steps: int = 40,
) -> tuple[tuple[float, ...], ...]:
    """Coefficients of the optimized polynomial steps of :func:`fast_orthonormalize`.

    Step k applies p_k(σ) = Σ_j a_j σ^(2j+1) to every singular value. Given the design
    interval [ℓ_k, 1] of the singular values, a step of degree d is the minimax odd
    polynomial for 1 on [ℓ_k, 1 + margin] or on [ℓ_k, 1] (Remez), or the Taylor (Björck)
    polynomial of that degree, whichever lifts ℓ most, divided by its exact maximum on
    [0, 1 + margin] (endpoints and zeros of p'), so that

        p_k([0, 1 + margin]) ⊆ [0, 1],   p_k ≥ 0 there                 (safety)

    and ℓ_{k+1} = min p_k on [ℓ_k, 1] is as large as possible for that degree (speed; the
    greedy minimax choice is optimal for compositions of fixed degrees, up to the
    normalization and the margin: "Polar Express", Amsel et al. 2025). The degrees are
    chosen by dynamic programming over the matmul count (:func:`polynomial_step_matmuls`,
    Paterson–Stockmeyer evaluation, so degree 9 costs 4 matmuls like Björck order 3): the
    schedule is the cheapest one whose guaranteed ℓ reaches √(1 − tol), i.e. that brings
    every singular value of [lower, 1] to |σ² − 1| ≤ tol (exact arithmetic). ℓ_{k+1} grows
    with ℓ_k for every degree, which makes the dynamic programme exact. Steps whose
    coefficients in powers of I − WᵀW sum to more than 1e3 (high degrees far from 1) are
    excluded, to bound float32 rounding.

    Args:
      lower: design lower bound of σ_min of the certified start (σ_max ≤ 1). Smaller
        singular values are still lifted (by p'(0) ≈ 0.84·degree per step), only later.
      degree: None (default: per-step choice among ``FAST_DEGREES`` = 3, 5, 9, 13),
        one odd degree ≥ 3 for every step, or a tuple of allowed degrees.
      margin: rounding excursions up to 1 + margin are mapped back into [0, 1].
      tol: target residual ‖WᵀW − I‖₂ of the polynomial steps (default 1e-5, float32's).
        One order-1 Björck step after it squares the error (→ ≤ 1e-10 from 1e-5).
      max_steps: bound on the number of steps.

    Returns a tuple of coefficient tuples (a_0, …, a_{(d−1)/2}), one per step; the tuples'
    lengths differ when the degrees do. The default (lower 1e-4, tol 1e-5) is six degree-9
    steps, 24 matmuls.
    """
    if degree is None:
        degrees = FAST_DEGREES
    elif isinstance(degree, (tuple, list)):
        degrees = tuple(degree)
    else:
        degrees = (degree,)
    for d in degrees:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 3 or d % 2 == 0:
            raise ValueError(f"degree must be an odd integer ≥ 3 (or a tuple of them), got {degree!r}.")
    if not 0.0 < lower < 1.0:
        raise ValueError(f"lower must be in (0, 1), got {lower}.")
    if not 0.0 < margin <= 0.5:
        raise ValueError(f"margin must be in (0, 0.5], got {margin}.")
    if not 1e-12 <= tol < 1.0:
        raise ValueError(f"tol must be in [1e-12, 1), got {tol}.")
    target = math.sqrt(1.0 - tol)
    return _fast_schedule(float(lower), tuple(sorted(set(int(d) for d in degrees))), float(margin),
                          target, int(max_steps))


@functools.lru_cache(maxsize=64)
def _fast_schedule(lower, degrees, margin, target, max_steps):
    # best[c] = (largest guaranteed ℓ after steps costing exactly c matmuls, the steps).
    # Each step's ℓ ↦ ℓ' is increasing, so extending the best state of each cost is optimal.
    cost = {d: polynomial_step_matmuls((d + 1) // 2) for d in degrees}
    best = {0: (lower, ())}
    if lower >= target:
        return ()
    for c in range(1, max_steps * max(cost.values()) + 1):
        candidate = None
        for d in degrees:
            prev = best.get(c - cost[d])
            if prev is None or len(prev[1]) >= max_steps:
                continue
            step = _design_step_cached(prev[0], d, margin)
            if step is not None and (candidate is None or step[0] > candidate[0]):
                candidate = (step[0], prev[1] + (step[1],))
        if candidate is not None:
            best[c] = candidate
            if candidate[0] >= target:
                return candidate[1]
    raise ValueError(
        f"no schedule of ≤ {max_steps} steps of degrees {degrees} takes [{lower}, 1] to ℓ ≥ {target}: "
        f"with margin {margin}, degrees 5, 9, 13, … may stall near 1 (p must stay ≤ 1 on [1, 1 + margin]); "
        f"allow degree 3 (e.g. degree=(3, 5)) or use a larger tol."
    )


def _residual_basis(coeffs) -> tuple[float, ...]:
    """(b_0, …, b_m) with Σ_j a_j g^j = Σ_k b_k (1 − g)^k: b_k = (−1)^k Σ_{j≥k} C(j, k) a_j."""
    a = [float(c) for c in coeffs]
    return tuple(
        (-1) ** k * math.fsum(math.comb(j, k) * a[j] for j in range(k, len(a))) for k in range(len(a))
    )


def odd_polynomial_step(w: Array, coeffs: tuple[float, ...], gram: Array | None = None) -> Array:
    """W ← W·q(WᵀW) with q(G) = Σ_j a_j G^j, i.e. σ ↦ Σ_j a_j σ^(2j+1) on singular values.

    q is evaluated in powers of R = I − G (coefficients converted exactly in float64):
    near convergence R is small and q(G) = I + R/2 + …, so rounding stays at the level of
    a Björck step (in powers of G the large alternating a_j cancel and lose ~5× more in
    float32). The powers are combined by Paterson–Stockmeyer (R, …, R^s, then Horner in
    R^s), so the step costs :func:`polynomial_step_matmuls` matmuls: the Gram (skipped when
    given), the products on the small side, and the product with W. For 2 or 3
    coefficients this is plain Horner (2 and 3 matmuls); 5 coefficients (degree 9) cost 4.
    """
    if len(coeffs) < 2:
        raise ValueError(f"an odd polynomial step needs at least 2 coefficients, got {len(coeffs)}.")
    b = _residual_basis(coeffs)
    gram = gram_matrix(w) if gram is None else gram
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    m = len(b) - 1
    s = _baby_steps(len(b))
    powers = [eye, eye - gram]
    for _ in range(2, s + 1):
        powers.append(matmul(powers[-1], powers[1]))

    def block(start, stop):  # Σ_{k = start..stop} b_k R^(k − start)
        out = b[start] * eye
        for k in range(start + 1, stop + 1):
            out = out + b[k] * powers[k - start]
        return out

    giant = math.ceil(m / s) - 1
    poly = block(giant * s, m)
    for i in range(giant - 1, -1, -1):
        poly = matmul(powers[s], poly) + block(i * s, i * s + s - 1)
    return apply_on_small_side(w, poly)


def fast_orthonormalize(
    w: Array,
    num_iters: int,
    *,
    lower: float = FAST_LOWER,
    degree: int | tuple[int, ...] | None = None,
    prescale: bool = True,
    tol: float = FAST_TOL,
) -> Array:
    """Faster Björck: optimized odd-polynomial steps, then order-1 Björck steps.

    ``num_iters`` counts all steps. The first ``min(K, num_iters − 1)`` apply the K
    polynomials of :func:`fast_schedule` (``lower``, ``degree``, ``tol``), the remaining
    ones (at least the last) are order-1 Björck steps (β = 1/2, 2 matmuls). For the
    defaults K = 6 degree-9 steps of 4 matmuls (Paterson–Stockmeyer), which take every
    singular value of [1e-4, 1] to |σ² − 1| ≤ 1e-5; the Björck step after them squares
    that error (≤ 1e-10): ``fast_num_iters()`` = 7 steps, 26 matmuls, against ~50 for
    order-1 Björck from a Gaussian 1024² start. ``lower`` is the design lower bound of
    σ_min of the certified start; singular values below it are still lifted (by the
    slope p'(0), ≈ 7.6 per degree-9 step) but need more steps. It tunes speed only,
    never safety.

    Why σ_max ≤ 1 holds at the output (exact arithmetic; rounding adds O(n·eps)):

    * the start W / s has σ_max ≤ 1 (:func:`certified_scale`, s is an upper bound);
    * every polynomial step maps [0, 1 + margin] into [0, 1] (by construction: the
      maximum over the interval is computed exactly from the zeros of p', then divided
      out, plus a bound of its float64 evaluation error), so all iterates keep
      σ_max ≤ 1, and rounding excursions up to ``margin`` = 1e-3 above 1 are pulled back
      below 1 at the next step instead of being amplified;
    * p ≥ 0 on [0, 1 + margin], so singular values never change sign and the limit is
      the polar factor U Vᵀ of the input;
    * the last step is always an order-1 Björck step f(σ) = (3σ − σ³)/2, monotone on
      [0, 1] with 1 − f(σ) = (σ − 1)²(σ + 2)/2 ≥ 0 and f ≥ 0 on [0, √3]: it maps [0, √3]
      into [0, 1], so it alone restores σ_max ≤ 1 after any overshoot of up to √3.

    Tall and wide matrices use the Gram on the smaller side; matmuls run at HIGHEST.
    """
    w = jnp.asarray(w)
    check_matrix(w)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative integer, got {num_iters!r}.")
    schedule = fast_schedule(lower, degree=degree, tol=tol)
    if num_iters == 0:
        return certified_scale(w)[0] if prescale else w
    gram = gram_matrix(w)
    if prescale:
        s = certified_norm_from_gram(gram, rounding_safety(w))
        w, gram = w / s, gram / (s * s)
    num_poly = min(len(schedule), num_iters - 1)
    for k in range(num_poly):
        w = odd_polynomial_step(w, schedule[k], gram if k == 0 else None)
    order1 = taylor_coefficients(1, 0.5)
    if num_poly > 0:
        gram = gram_matrix(w)
    w = bjorck_step(w, gram, order1)
    return jax.lax.fori_loop(
        num_poly + 1, num_iters, lambda _, x: bjorck_step(x, gram_matrix(x), order1), w
    )


def fast_num_iters(
    lower: float = FAST_LOWER,
    finish_iters: int = 1,
    *,
    degree: int | tuple[int, ...] | None = None,
    tol: float = FAST_TOL,
) -> int:
    """A step count for :func:`fast_orthonormalize`: the schedule plus ``finish_iters``
    order-1 Björck steps (default 1: the schedule already reaches ``tol``; the Björck
    step squares the error, 1e-5 → ≤ 1e-10, and restores σ_max ≤ 1 after rounding)."""
    return len(fast_schedule(lower, degree=degree, tol=tol)) + finish_iters
