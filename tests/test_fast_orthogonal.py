"""The fast orthonormalization schedule: σ_max ≤ 1 always, the target residual reached."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import polar_factor

from lipsort.fast_orthogonal import (
    FAST_MARGIN,
    _exact_range,
    fast_num_iters,
    fast_orthonormalize,
    fast_schedule,
    odd_polynomial_step,
    polynomial_step_matmuls,
)
from lipsort.orthogonal import bjorck_step, certified_scale, gram_matrix, orthogonality_residual, polar

SHAPES = [(32, 32), (48, 16), (16, 40)]


@functools.lru_cache(maxsize=None)
def _jitted(num_iters, lower=1e-3, prescale=True):
    # One compilation per (shape, dtype, num_iters): keeps this file fast.
    return jax.jit(functools.partial(fast_orthonormalize, num_iters=num_iters, lower=lower,
                                     prescale=prescale))


def run(w, num_iters, **kw):
    return _jitted(num_iters, **kw)(w)


def conditioned(shape, cond, seed=0, dtype=np.float32, rank=None):
    """Random matrix with singular values in [1, cond] (× a random scale), optional rank."""
    rng = np.random.default_rng(seed)
    m, n = shape
    k = min(m, n)
    u, _ = np.linalg.qr(rng.normal(size=(m, k)))
    v, _ = np.linalg.qr(rng.normal(size=(n, k)))
    s = np.geomspace(1.0, cond, k) * rng.uniform(0.1, 10.0)
    if rank is not None:
        s[rank:] = 0.0
    return jnp.asarray((u * s) @ v.T, dtype)


def sigma_max(w):
    return float(np.linalg.norm(np.asarray(w, np.float64), 2))


def poly(coeffs, x):
    return sum(a * x ** (2 * j + 1) for j, a in enumerate(coeffs))


def test_schedule_maps_unit_interval_into_itself():
    grid = np.linspace(0.0, 1.0 + FAST_MARGIN, 200_001)
    for lower in (1e-2, 1e-3, 1e-4, 1e-6):
        for tol in (1e-5, 1e-10):
            sched = fast_schedule(lower, tol=tol)
            assert 3 <= len(sched) <= 15
            ell = lower
            for coeffs in sched:
                p = poly(coeffs, grid)
                assert p.max() <= 1.0 and p.min() >= 0.0
                # Excursions up to 1 + margin (rounding) land back in [0, 1], not above.
                assert p[-1] <= 1.0
                # Exact range (endpoints and zeros of p') agrees with the grid.
                lo, hi = _exact_range(np.asarray(coeffs), 0.0, 1.0 + FAST_MARGIN)
                assert lo >= 0.0 and hi <= 1.0 and hi >= p.max() - 1e-14
                new_ell = _exact_range(np.asarray(coeffs), ell, 1.0)[0]
                assert ell < new_ell <= p[(grid >= ell) & (grid <= 1.0)].min() + 1e-14
                ell = new_ell
            assert ell * ell >= 1.0 - tol  # every σ ∈ [lower, 1] lands at |σ² − 1| ≤ tol
    assert fast_schedule(1e-3) is fast_schedule(1e-3)  # cached


def test_default_schedule_costs_half_of_order_one_bjorck():
    """Default: six degree-9 steps, 24 matmuls, take [1e-4, 1] to |σ² − 1| ≤ 1e-5."""
    sched = fast_schedule()
    assert [2 * len(c) - 1 for c in sched] == [9] * 6
    assert sum(polynomial_step_matmuls(c) for c in sched) == 24
    assert fast_num_iters() == 7  # + one Björck step: 26 matmuls, ≤ 1e-10 in exact arithmetic
    # Order-1 Björck on the same interval: σ ↦ (3σ − σ³)/2 from 1e-4 needs 2 matmuls a step.
    s, steps = 1e-4, 0
    while s * s < 1.0 - 1e-5:
        s, steps = (3 * s - s**3) / 2, steps + 1
    assert 24 <= 0.5 * 2 * steps


def test_fixed_and_restricted_degrees():
    quintics = fast_schedule(1e-3, degree=5)
    assert all(len(c) == 3 for c in quintics)
    looser = fast_schedule(1e-3, degree=5, tol=1e-2)
    assert len(looser) < len(quintics) and looser == quintics[: len(looser)]
    assert all(len(c) in (2, 3) for c in fast_schedule(1e-3, degree=(3, 5)))


@pytest.mark.parametrize("num_coeffs", range(2, 11))
def test_polynomial_step_matmuls_counts_the_traced_matmuls(num_coeffs):
    coeffs = tuple(1.0 / (j + 1) for j in range(num_coeffs))
    w = jnp.ones((6, 4))
    traced = str(jax.make_jaxpr(lambda x: odd_polynomial_step(x, coeffs))(w))
    assert traced.count("dot_general") == polynomial_step_matmuls(coeffs) == polynomial_step_matmuls(num_coeffs)
    with_gram = str(jax.make_jaxpr(lambda x, g: odd_polynomial_step(x, coeffs, g))(w, w.T @ w))
    assert with_gram.count("dot_general") == polynomial_step_matmuls(coeffs) - 1
    # Paterson–Stockmeyer: degree 9 (5 coefficients) in 4 matmuls, degree 19 in 6.
    assert [polynomial_step_matmuls(n) for n in (2, 3, 5, 7, 10)] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("degree", [3, 5, 9, 13])
def test_odd_polynomial_step_matches_singular_value_map(degree):
    coeffs = fast_schedule(1e-3, degree=degree)[1]
    assert len(coeffs) == (degree + 1) // 2
    with jax.enable_x64(True):
        for shape in ((12, 7), (7, 12)):
            w = conditioned(shape, 5.0, seed=1, dtype=np.float64) / 60.0
            out = np.asarray(odd_polynomial_step(w, coeffs))
            s_in = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
            s_out = np.linalg.svd(out, compute_uv=False)
            np.testing.assert_allclose(s_out, np.sort(poly(coeffs, s_in))[::-1], rtol=1e-10, atol=1e-12)


def _peaks(coeffs):
    """Where p is largest on [0, 1 + margin]: the zeros of p' there, 1 and 1 + margin."""
    deriv = [(2 * j + 1) * a for j, a in enumerate(coeffs)]
    roots = np.roots(deriv[::-1])
    roots = roots[np.abs(roots.imag) < 1e-9].real
    x = np.sqrt(roots[(roots > 0) & (roots < (1 + FAST_MARGIN) ** 2)])
    return np.concatenate([x, [1.0, 1.0 + FAST_MARGIN]])


# float32: an early step (|coefficients| ~ 500) may overshoot 1 by ~1e-6, far inside the
# margin that the next step pulls back; the output of fast_orthonormalize is checked below.
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float64, 1e-12)])
def test_each_step_keeps_sigma_max_at_most_one_at_its_maxima(dtype, tol):
    """Singular values placed where each step's polynomial reaches 1 (and at 1 + margin,
    a rounding overshoot) stay ≤ 1 up to rounding; a zero singular value stays zero."""
    steps = set(fast_schedule()) | set(fast_schedule(1e-3, tol=1e-10)) | set(fast_schedule(1e-3, degree=19))
    rng = np.random.default_rng(0)
    with jax.enable_x64(dtype == np.float64):
        for coeffs in sorted(steps):
            s = np.concatenate([_peaks(coeffs), [0.5, 1e-3, 0.0]])
            n = len(s) + 3
            u, _ = np.linalg.qr(rng.normal(size=(n + 5, n)))
            v, _ = np.linalg.qr(rng.normal(size=(n, n)))
            s_full = np.concatenate([s, np.zeros(n - len(s))])
            w = (u * s_full) @ v.T
            out = np.asarray(odd_polynomial_step(jnp.asarray(w, dtype), coeffs), np.float64)
            assert sigma_max(out) <= 1.0 + tol, coeffs
            # Signs are kept: Uᵀ·out·V is diag(p(σ)) with p(σ) ≥ 0 (the polar direction).
            d = np.diag(u.T @ out @ v)
            np.testing.assert_allclose(d, poly(coeffs, s_full), atol=50 * tol)
            assert d.min() >= -50 * tol


@pytest.mark.parametrize("shape", SHAPES)
def test_fast_never_lifts_sigma_max_above_one(shape):
    rng = np.random.default_rng(sum(shape))
    k = min(shape)
    starts = [
        conditioned(shape, 1e3, seed=1),  # ill-conditioned
        conditioned(shape, 1e6, seed=2),  # very ill-conditioned (below the design bound)
        conditioned(shape, 10.0, seed=3, rank=k // 2),  # rank-deficient
        jnp.ones(shape, jnp.float32),  # rank one: the certified bound is tight
        jnp.asarray(rng.normal(size=shape) * 50.0, jnp.float32),
        jnp.asarray(np.eye(*shape) * 0.999 + 1e-3 * rng.normal(size=shape), jnp.float32),
    ]
    for iters in (0, 1, 4, 7, 10):
        for w in starts:
            assert sigma_max(run(w, iters)) <= 1 + 1e-6, (iters, shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_adversarial_start_at_the_certified_bound(dtype):
    """A diagonal start has ‖G‖_∞ = σ_max², so the certified start has σ_max = 1 (÷ 1 + O(n·eps))
    exactly; its other singular values sit where the first polynomial reaches 1, plus zeros."""
    sched = fast_schedule()
    s = np.concatenate([[1.0], _peaks(sched[0])[:-2], [0.3, 2e-4, 0.0, 0.0]])
    s = s[np.argsort(-s)]
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(s))
    w = np.zeros((len(s) + 2, len(s)))
    w[perm, np.arange(len(s))] = s * 7.5  # permuted diagonal, any scale
    bound = 1 + (1e-6 if dtype == np.float32 else 1e-13)
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(w, dtype)
        for iters in range(0, len(sched) + 3):
            out = fast_orthonormalize(x, iters)
            assert sigma_max(out) <= bound, iters
        sv = np.linalg.svd(np.asarray(out, np.float64), compute_uv=False)
        assert sv[-2:].max() <= 1e-6  # the rank is kept: zeros stay zero
        assert np.abs(sv[:-2] ** 2 - 1).max() <= (1e-5 if dtype == np.float32 else 1e-10)


def test_fast_pulls_back_a_small_overshoot():
    """Without prescaling, a start with σ_max = 1 + 5e-4 still ends with σ_max ≤ 1."""
    w = conditioned((24, 24), 20.0, seed=5)
    w = w / sigma_max(w) * (1 + 5e-4)
    for iters in (1, 2, 7):
        assert sigma_max(run(w, iters, prescale=False)) <= 1 + 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_fast_reaches_float32_target_and_agrees_with_polar(shape):
    n = fast_num_iters()  # schedule + 1 Björck step
    for cond, seed in ((4.0, 0), (300.0, 1)):
        w = conditioned(shape, cond, seed=seed)
        out = run(w, n)
        assert float(orthogonality_residual(out)) <= 1e-5
        assert sigma_max(out) <= 1 + 1e-6
        # Against the exact polar factor (float64 SVD of the float32 input): stopping at
        # ‖WᵀW − I‖ ≤ 1e-5 leaves σ within ~5e-6 of 1, and float32 rounding moves the
        # singular vectors by ~κ·eps₃₂ more (measured ≤ 8e-6 here). A float32 SVD as the
        # reference would add its own κ·eps₃₂ error (up to 5e-6 measured), which made an
        # atol of 1e-5 fail by 5 % on another machine's rounding.
        exact = np.asarray(polar_factor(w), np.float32)
        np.testing.assert_allclose(np.asarray(out), exact, atol=2e-5)


def test_fast_reaches_float64_target():
    """Schedule (to 1e-5) + one Björck step: the error is squared, ≤ 1e-10 in float64."""
    with jax.enable_x64(True):
        for shape in SHAPES:
            w = jnp.asarray(np.asarray(conditioned(shape, 300.0, seed=7), np.float64))
            out = run(w, fast_num_iters())
            assert out.dtype == jnp.float64
            assert float(orthogonality_residual(out)) <= 1e-10
            assert sigma_max(out) <= 1 + 1e-12
            np.testing.assert_allclose(np.asarray(out), np.asarray(polar(w)), atol=1e-10)


def _matmuls_to(x, steps, tol):
    used = 0
    for fn, cost in steps:
        r = np.asarray(gram_matrix(x), np.float64) - np.eye(x.shape[1])
        if np.abs(np.diag(r)).max() <= tol and np.abs(np.linalg.eigvalsh(r)).max() <= tol:
            return used
        x, used = fn(x), used + cost
    return None


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_fast_needs_at_most_half_the_matmuls_of_order_one_bjorck(dtype, tol):
    """Gaussian 256×256 from the certified start (σ_min ≈ 6e-4 there, the design bound 5e-4):
    20 / 22 matmuls against 44 / 46 for order-1 Björck (float32 to 1e-5 / float64 to 1e-10)."""
    lower = 5e-4
    with jax.enable_x64(dtype == np.float64):
        start = certified_scale(jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)), dtype))[0]
        assert np.linalg.svd(np.asarray(start, np.float64), compute_uv=False).min() >= lower
        order1 = (jax.jit(lambda x: bjorck_step(x, gram_matrix(x), (1.0, 0.5))), 2)
        fast = [(jax.jit(functools.partial(odd_polynomial_step, coeffs=c)), polynomial_step_matmuls(c))
                for c in fast_schedule(lower)]
        slow_mm = _matmuls_to(start, [order1] * 40, tol)
        fast_mm = _matmuls_to(start, fast + [order1] * 10, tol)
    assert fast_mm <= 0.5 * slow_mm, (fast_mm, slow_mm)


def test_fast_is_differentiable():
    w = conditioned((6, 4), 3.0, seed=4)
    g = jax.grad(lambda w: jnp.sum(jnp.sin(fast_orthonormalize(w, 8))))(w)
    assert np.all(np.isfinite(np.asarray(g)))


def test_fast_validates_arguments():
    w = jnp.ones((3, 3))
    with pytest.raises(ValueError):
        fast_orthonormalize(w, -1)
    with pytest.raises(ValueError):
        fast_orthonormalize(jnp.ones(3), 2)
    with pytest.raises(ValueError):
        fast_schedule(0.0)
    with pytest.raises(ValueError):
        fast_schedule(1e-3, degree=4)
    with pytest.raises(ValueError):
        fast_schedule(1e-3, degree=(3, 4))
    with pytest.raises(ValueError):
        fast_schedule(1e-3, tol=0.0)
    with pytest.raises(ValueError):
        fast_schedule(1e-3, tol=1e-13)
    with pytest.raises(ValueError):  # quintics alone stall near 1 below ~1e-9 (margin 1e-3)
        fast_schedule(1e-3, degree=5, tol=1e-10)
    with pytest.raises(ValueError):
        odd_polynomial_step(w, (1.0,))
