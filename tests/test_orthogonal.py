import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lipsort import orthogonal
from lipsort.orthogonal import bjorck, certified_scale, orthogonality_residual, polar, power_iteration

SHAPES = [(32, 32), (48, 16), (16, 40)]
ORDERS = [1, 2, 3, 4]


def well_conditioned(shape, seed=0, cond=4.0):
    """A random matrix with singular values spread in [1, cond] times a random scale."""
    rng = np.random.default_rng(seed)
    m, n = shape
    u, _ = np.linalg.qr(rng.normal(size=(m, min(m, n))))
    v, _ = np.linalg.qr(rng.normal(size=(n, min(m, n))))
    s = np.linspace(1.0, cond, min(m, n)) * rng.uniform(0.1, 10.0)
    return jnp.asarray((u * s) @ v.T, jnp.float32)


def sigma_max(w):
    return float(np.linalg.norm(np.asarray(w, np.float64), 2))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("order", ORDERS)
def test_bjorck_agrees_with_svd_polar_factor(shape, order):
    w = well_conditioned(shape, seed=order)
    ours = bjorck(w, 25 if order == 1 else 12, order=order)
    ref = np.asarray(polar(jnp.asarray(w, jnp.float32)))
    assert np.max(np.abs(np.asarray(ours) - ref)) <= 1e-5
    assert float(orthogonality_residual(ours)) <= 1e-5


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("order", ORDERS)
def test_bjorck_never_lifts_sigma_max_above_one(shape, order):
    """From the certified start, σ_max ≤ 1 + 1e-6 after every number of steps."""
    rng = np.random.default_rng(order)
    starts = [
        well_conditioned(shape, seed=10 + order, cond=1e3),
        jnp.asarray(rng.normal(size=shape) * 50.0, jnp.float32),
        jnp.ones(shape, jnp.float32),  # rank one: the Frobenius bound is tight
        jnp.asarray(np.eye(*shape) * 0.999 + 1e-3 * rng.normal(size=shape), jnp.float32),
    ]
    for w in starts:
        for iters in (0, 1, 2, 3, 5, 8, 13):
            assert sigma_max(bjorck(w, iters, order=order)) <= 1 + 1e-6, (iters, w[0, :3])


def test_certified_scale_is_an_upper_bound():
    rng = np.random.default_rng(0)
    for shape in [(5, 5), (64, 3), (3, 64), (100, 100)]:
        for scale in (1e-3, 1.0, 1e4):
            w = jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)
            scaled, s = certified_scale(w)
            assert float(s) >= sigma_max(w) * (1 - 1e-7)
            assert sigma_max(scaled) <= 1.0 + 1e-7
    # Near the manifold the bound is tight (it is what makes warm starts cheap).
    q = polar(jnp.asarray(rng.normal(size=(64, 64)), jnp.float32))
    assert float(certified_scale(q)[1]) <= 1.0 + 1e-4


def test_bjorck_reaches_float64_precision():
    with jax.enable_x64(True):
        w = jnp.asarray(np.asarray(well_conditioned((40, 24), seed=3)), jnp.float64)
        out = bjorck(w, 30)
        assert out.dtype == jnp.float64
        assert float(orthogonality_residual(out)) <= 1e-12


def test_bjorck_is_differentiable_and_jittable():
    w = well_conditioned((6, 4), seed=4)
    f = jax.jit(lambda w: jnp.sum(jnp.sin(bjorck(w, 5, order=2))))
    check_grads(lambda w: jnp.sum(jnp.sin(bjorck(w, 5, order=2))), (w.astype(jnp.float32),), order=1,
                modes=("rev",), atol=5e-2, rtol=5e-2)
    g = jax.grad(f)(w)
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_finish_orthonormalization_to_float32_precision():
    w = bjorck(well_conditioned((30, 20), seed=5, cond=20), 4)  # a coarse training iterate
    assert float(orthogonality_residual(w)) > 1e-3
    done = orthogonal.finish_orthonormalization(w)
    assert done.dtype == np.float64
    assert float(np.linalg.norm(done.T @ done - np.eye(20), 2)) <= 1e-7


def test_power_iteration_converges_to_sigma_max():
    w = well_conditioned((20, 12), seed=6, cond=5)
    u = jax.random.normal(jax.random.key(0), (12,))
    u = u / jnp.linalg.norm(u)
    sigma, u = power_iteration(w, u, 200)
    np.testing.assert_allclose(float(sigma), sigma_max(w), rtol=1e-4)
    # The persistent vector makes one further step enough.
    sigma1, _ = power_iteration(w, u, 1)
    np.testing.assert_allclose(float(sigma1), sigma_max(w), rtol=1e-4)
    # σ is differentiable in W: dσ/dW = v uᵀ.
    g = jax.grad(lambda w: power_iteration(w, u, 1)[0])(w)
    np.testing.assert_allclose(float(jnp.linalg.norm(g)), 1.0, rtol=1e-3)


def test_taylor_coefficients():
    assert orthogonal.taylor_coefficients(1, 0.3) == (1.0, 0.3)
    assert orthogonal.taylor_coefficients(4) == (1.0, 0.5, 0.375, 0.3125, 0.2734375)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: bjorck(jnp.ones((3, 3)), 5, order=2, beta=0.3), "requires beta=0.5"),
        (lambda: bjorck(jnp.ones((3, 3)), 5, order=5), "order must be an integer in 1..4"),
        (lambda: bjorck(jnp.ones((3, 3)), 5, order=1, beta=0.7), r"beta must be in \(0, 0.5\]"),
        (lambda: bjorck(jnp.ones((3, 3, 3)), 5), "must be a 2-D matrix"),
        (lambda: bjorck(jnp.ones(3), 5), "must be a 2-D matrix"),
        (lambda: bjorck(jnp.ones((3, 3)), -1), "num_iters must be a non-negative integer"),
        (lambda: power_iteration(jnp.ones((3, 4)), jnp.ones(3)), r"u must have shape \(4,\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("shape,order,scale", [((40, 24), 1, 1.0), ((24, 40), 1, 50.0), ((30, 30), 3, 0.02)])
def test_finish_orthonormalization_certified_residual(shape, order, scale):
    """From near and far starts, tall and wide: ‖WᵀW − I‖₂ ≤ tol, the polar factor of the start."""
    w = np.asarray(well_conditioned(shape, seed=7, cond=30), np.float64) * scale
    done = orthogonal.finish_orthonormalization(w, tol=1e-9, order=order)
    gram = done.T @ done if shape[0] >= shape[1] else done @ done.T
    assert np.linalg.norm(gram - np.eye(min(shape)), 2) <= 1e-9
    u, _, vt = np.linalg.svd(w, full_matrices=False)
    np.testing.assert_allclose(done, u @ vt, atol=1e-8)
