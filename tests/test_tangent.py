"""Riemannian (tangent) gradients of orthonormal kernels and the lazy retraction."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lipsort import retraction, tangent
from lipsort.layers import LipschitzDense
from lipsort.models import LipschitzMLP, MLPSpec
from lipsort.orthogonal import orthogonality_residual

SHAPES = [(48, 48), (64, 24), (24, 64)]  # square, tall (KᵀK = I), wide (KKᵀ = I)


def orthonormal(shape, seed=0):
    return jax.nn.initializers.orthogonal()(jax.random.key(seed), shape, jnp.float32)


def layer_gradients(shape, batch=32, seed=0):
    """K, the Euclidean gradient G = xᵀδ and the tangent one, for L = Σ c ⊙ tanh(xK)."""
    k = orthonormal(shape, seed)
    x = jax.random.normal(jax.random.key(seed + 1), (batch, shape[0]))
    c = jax.random.normal(jax.random.key(seed + 2), (batch, shape[1]))
    loss = lambda f: lambda x, k: jnp.sum(c * jnp.tanh(f(x, k)))
    gx_plain, g_plain = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, k)
    gx_tan, g_tan = jax.grad(loss(tangent.tangent_matmul), argnums=(0, 1))(x, k)
    return k, g_plain, g_tan, gx_plain, gx_tan


@pytest.mark.parametrize("shape", SHAPES)
def test_tangent_gradient_is_half_the_canonical_riemannian_gradient(shape):
    k, g, p, _, _ = layer_gradients(shape)
    expected = 0.5 * (g - k @ g.T @ k)  # formed explicitly (n³): what the backward avoids
    np.testing.assert_allclose(np.asarray(p), np.asarray(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_tangent_gradient_is_tangent_and_a_descent_direction(shape):
    k, g, p, _, _ = layer_gradients(shape)
    assert float(tangent.tangency_defect(k, p)) <= 1e-5 * float(jnp.linalg.norm(p))
    assert float(tangent.tangency_defect(k, g)) > 1e-2 * float(jnp.linalg.norm(g))  # G itself is not
    assert float(jnp.vdot(g, p)) > 0
    if shape[0] == shape[1]:  # square: the Euclidean projection K skew(KᵀG)
        a = k.T @ g
        np.testing.assert_allclose(np.asarray(p), np.asarray(k @ (0.5 * (a - a.T))), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_input_gradient_and_forward_are_unchanged(shape):
    _, _, _, gx_plain, gx_tan = layer_gradients(shape)
    np.testing.assert_allclose(np.asarray(gx_tan), np.asarray(gx_plain), rtol=1e-6, atol=1e-6)
    x = jax.random.normal(jax.random.key(5), (3, 7, shape[0]))  # leading batch axes
    k = orthonormal(shape)
    np.testing.assert_allclose(np.asarray(tangent.tangent_matmul(x, k)), np.asarray(x @ k), rtol=1e-6)
    grad = jax.grad(lambda k: jnp.sum(jnp.sin(tangent.tangent_matmul(x, k))))(k)
    assert grad.shape == k.shape and float(tangent.tangency_defect(k, grad)) <= 1e-5 * float(jnp.linalg.norm(grad))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("batch", [8, 200])  # below and above min(in, out): both routes
def test_first_layer_projection_through_the_kernel_is_the_same(shape, batch):
    """input_grad=False may compute K Gᵀ K as (K Gᵀ) K or K (Gᵀ K) instead of gᵀz: the
    kernel gradient and the input gradient (still returned) are the same."""
    k = orthonormal(shape)
    x = jax.random.normal(jax.random.key(1), (batch, shape[0]))
    c = jax.random.normal(jax.random.key(2), (batch, shape[1]))
    grads = [
        jax.jit(jax.grad(lambda x, k: jnp.sum(c * jnp.tanh(tangent.tangent_matmul(x, k, flag))), argnums=(0, 1)))(x, k)
        for flag in (True, False)
    ]
    for a, b in zip(*grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6 * float(jnp.max(jnp.abs(b))))
    model = LipschitzMLP(MLPSpec(in_features=8, widths=(16,), out_features=4, bjorck_training="riemannian"),
                         rngs=nnx.Rngs(0))
    assert [layer.input_grad for layer in model.layers] == [False, True]


@pytest.mark.parametrize("shape", SHAPES)
def test_tangent_steps_leave_the_manifold_only_to_second_order(shape):
    # Halving the step divides the residual by 4 (tangent) instead of 2 (Euclidean).
    k, g, p, _, _ = layer_gradients(shape)
    unit = lambda d: d / jnp.linalg.norm(d, 2)
    res = lambda d, t: float(orthogonality_residual(k - t * unit(d)))
    assert res(p, 0.05) / res(p, 0.025) == pytest.approx(4.0, rel=0.05)
    assert res(g, 0.05) / res(g, 0.025) == pytest.approx(2.0, rel=0.1)


def test_residual_of_tangent_steps_is_the_sum_of_their_squares():
    """Ten steps in one direction: each tangent at the kernel it is added to, so the
    residual is Σ ΔᵢᵀΔᵢ (cross terms cancel), ~10× below ‖Σ Δᵢ‖₂² (what it would be if
    they did not). What is left over is third order (the projection assumes KᵀK = I)."""
    k = np.asarray(orthonormal((64, 40)), np.float64)
    x = jax.random.normal(jax.random.key(1), (8, 64))
    c = jax.random.normal(jax.random.key(2), (8, 40))
    squares, total = np.zeros((40, 40)), np.zeros_like(k)
    for _ in range(10):  # the same batch every step: coherent steps
        grad = jax.grad(lambda k: jnp.sum(c * tangent.tangent_matmul(x, k)))(jnp.asarray(k, jnp.float32))
        step = -3e-4 * np.asarray(grad, np.float64)
        squares, total, k = squares + step.T @ step, total + step, k + step
    residual = k.T @ k - np.eye(40)
    assert np.linalg.norm(residual - squares, 2) <= 0.1 * np.linalg.norm(residual, 2)
    assert np.linalg.norm(residual, 2) <= 0.2 * np.linalg.norm(total, 2) ** 2


@pytest.mark.parametrize("shape", [(64, 64), (96, 40), (40, 96)])
def test_residual_estimate_matches_the_gram(shape):
    w = orthonormal(shape) + 3e-3 * jax.random.normal(jax.random.key(1), shape)
    exact = float(orthogonality_residual(w))
    estimate = float(retraction.residual_estimate(w, 50))
    assert estimate == pytest.approx(exact, rel=0.05)  # a random spectrum: close top eigenvalues
    assert float(retraction.residual_estimate(w)) <= exact * (1 + 1e-4)  # a lower estimate


def test_lazy_retraction_skips_near_the_manifold_and_retracts_beyond_tol():
    w = orthonormal((64, 64))
    same, stats = retraction.retract(w, 5e-4, lazy=True)
    assert float(stats["steps"]) == 0 and float(stats["matmuls"]) == 0
    np.testing.assert_array_equal(np.asarray(same), np.asarray(w))
    off = w + 1e-3 * jnp.sign(jax.random.normal(jax.random.key(2), w.shape))
    back, stats = retraction.retract(off, 5e-4, lazy=True)
    assert float(stats["steps"]) >= 1 and float(stats["drift"]) > 5e-4
    assert float(orthogonality_residual(back)) <= 5e-4


def test_riemannian_layer_uses_tangent_gradients_and_lazy_retraction():
    layer = LipschitzDense(24, 16, constraint="bjorck", bjorck_training="riemannian", rngs=nnx.Rngs(0))
    assert layer.retracts and layer.tangent_gradient
    x = jax.random.normal(jax.random.key(0), (8, 24))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    grads = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest, copy=True)(x) ** 2))(params)
    kernel_grad = grads["kernel"][...]
    assert float(tangent.tangency_defect(layer.kernel[...], kernel_grad)) <= 1e-5 * float(jnp.linalg.norm(kernel_grad))
    assert float(jnp.linalg.norm(grads["bias"][...])) > 0  # the bias gets its ordinary gradient
    assert float(layer.retract()["steps"]) == 0  # on the manifold: nothing to do
    other = LipschitzDense(24, 16, constraint="bjorck", bjorck_training="retraction", rngs=nnx.Rngs(0))
    assert not other.tangent_gradient


def test_riemannian_sgd_trains_with_rare_retractions():
    """Plain SGD on a GroupSort MLP: the loss falls, the predicted residual stays ≤ tol
    at every update, and most updates need no Björck step at all (the retraction mode
    takes one at every update): the rank-16 correction handles the residual. Measured:
    Björck steps at 35 % of 60 updates without that correction, at none with it."""
    spec = MLPSpec(in_features=8, widths=(64, 64), out_features=4, bjorck_training="riemannian")
    model = LipschitzMLP(spec, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (256, 8))
    y = jnp.argmax(x[:, :4] + 0.5 * x[:, 4:], axis=1)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(0.05)

    def loss(params, batch):
        logits = nnx.merge(graphdef, params, rest, copy=True)(x[batch])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[batch]).mean()

    @jax.jit
    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        m = nnx.merge(graphdef, optax.apply_updates(params, updates), rest)
        stats = m.retract()
        return nnx.split(m, nnx.Param, ...)[1], opt_state, value, stats

    opt_state, values, retracted, corrected = tx.init(params), [], [], []
    for t in range(60):
        batch = jax.random.randint(jax.random.key(t), (32,), 0, 256)
        params, opt_state, value, stats = step(params, opt_state, batch)
        values.append(float(value))
        retracted.append(float(stats["retraction_steps"]) > 0)
        corrected.append(float(stats["retraction_low_rank"]) > 0)
        assert float(stats["orthogonality_residual"]) <= 5e-4
    assert np.mean(values[-10:]) < 0.8 * np.mean(values[:5])
    assert np.mean(retracted) < 0.2 and any(corrected)
    for layer in nnx.merge(graphdef, params, rest).layers:
        assert float(orthogonality_residual(layer.kernel[...])) <= 5e-4
