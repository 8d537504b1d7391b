"""The fast orthonormalization schedule: σ_max ≤ 1 always, the target residual reached."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lipsort.orthogonal import (
    FAST_MARGIN,
    fast_num_iters,
    fast_orthonormalize,
    fast_schedule,
    odd_polynomial_step,
    orthogonality_residual,
    polar,
)

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


def test_schedule_maps_unit_interval_into_itself():
    grid = np.linspace(0.0, 1.0 + FAST_MARGIN, 200_001)
    for lower in (1e-2, 1e-3, 1e-4, 1e-6):
        sched = fast_schedule(lower)
        assert 3 <= len(sched) <= 15
        ell = lower
        for coeffs in sched:
            p = sum(a * grid ** (2 * j + 1) for j, a in enumerate(coeffs))
            assert p.max() <= 1.0 + 1e-12 and p.min() >= -1e-12
            # Excursions up to 1 + margin (rounding) land back in [0, 1], not above.
            assert p[-1] <= 1.0 + 1e-12
            new_ell = p[grid >= ell].min()
            assert new_ell > ell
            ell = new_ell
        assert ell >= 0.99
    assert fast_schedule(1e-3) is fast_schedule(1e-3)  # cached


def test_odd_polynomial_step_matches_singular_value_map():
    coeffs = fast_schedule(1e-3)[2]
    with jax.enable_x64(True):
        w = conditioned((12, 7), 5.0, seed=1, dtype=np.float64) / 60.0
        out = np.asarray(odd_polynomial_step(w, coeffs))
    s_in = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
    s_out = np.linalg.svd(out, compute_uv=False)
    expect = np.sort(sum(a * s_in ** (2 * j + 1) for j, a in enumerate(coeffs)))[::-1]
    np.testing.assert_allclose(s_out, expect, rtol=1e-5, atol=1e-6)


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


def test_fast_pulls_back_a_small_overshoot():
    """Without prescaling, a start with σ_max = 1 + 5e-4 still ends with σ_max ≤ 1."""
    w = conditioned((24, 24), 20.0, seed=5)
    w = w / sigma_max(w) * (1 + 5e-4)
    for iters in (1, 2, 7):
        assert sigma_max(run(w, iters, prescale=False)) <= 1 + 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_fast_reaches_float32_target_and_agrees_with_polar(shape):
    n = fast_num_iters()  # schedule + 3 Björck steps
    for cond, seed in ((4.0, 0), (300.0, 1)):
        w = conditioned(shape, cond, seed=seed)
        out = run(w, n)
        assert float(orthogonality_residual(out)) <= 1e-5
        assert sigma_max(out) <= 1 + 1e-6
        np.testing.assert_allclose(np.asarray(out), np.asarray(polar(w)), atol=1e-5)


def test_fast_reaches_float64_target():
    with jax.enable_x64(True):
        for shape in SHAPES:
            w = jnp.asarray(np.asarray(conditioned(shape, 300.0, seed=7), np.float64))
            out = run(w, fast_num_iters(finish_iters=4))
            assert out.dtype == jnp.float64
            assert float(orthogonality_residual(out)) <= 1e-10
            assert sigma_max(out) <= 1 + 1e-12
            np.testing.assert_allclose(np.asarray(out), np.asarray(polar(w)), atol=1e-10)


def test_fast_uses_fewer_steps_than_bjorck_for_the_same_residual():
    from lipsort.orthogonal import bjorck

    w = conditioned((32, 32), 300.0, seed=8)
    fast = run(w, fast_num_iters())  # 6 × 3 + 3 × 2 = 24 matmuls
    slow = bjorck(w, 12)  # 24 matmuls of order-1 Björck
    assert float(orthogonality_residual(fast)) <= 1e-5 < float(orthogonality_residual(slow))


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
