"""Retraction training: the kernel is kept orthonormal after every update, cheaply."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lipsort import certify, export, retraction
from lipsort.layers import LipschitzDense
from lipsort.models import LipschitzMLP, MLPSpec
from lipsort.orthogonal import bjorck, orthogonality_residual

SHAPES = [(64, 64), (96, 40), (40, 96), (64, 3)]


def perturbed_orthogonal(shape, size, seed=0):
    """An orthonormal matrix plus an Adam-like update of ±size per entry."""
    q = jax.nn.initializers.orthogonal()(jax.random.key(seed), shape)
    return q + size * jnp.sign(jax.random.normal(jax.random.key(seed + 1), shape))


def singular_values(w):
    return np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("r", [1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.5])
def test_step_bound_is_the_worst_case_of_one_bjorck_step(r, order):
    # A diagonal W whose σ² span the band [1 − r, 1 + r]: one real Björck step (float64),
    # whose residual is the max over the band; the bound must match it, not undercut it.
    sq = np.linspace(1 - r, 1 + r, 2001)
    with jax.enable_x64(True):
        w = jnp.diag(jnp.sqrt(jnp.asarray(sq)))
        after = np.diag(np.asarray(bjorck(w, 1, order=order, prescale=False))) ** 2
    exact = np.max(np.abs(after - 1))
    bound = float(retraction.step_residual_bound(jnp.asarray(r, jnp.float32), order))
    assert exact <= bound * (1 + 1e-5) + 1e-7
    assert bound <= exact * (1 + 1e-3) + 1e-6  # float32: 1 − h_p is exact to a few eps
    if order == 1:
        assert bound <= 0.75 * r * r * (1 + 2 * r) + 1e-6  # quadratic (float32 floor ~1e-7)


def test_norm_estimate_matches_eigenvalues():
    a = np.random.default_rng(0).normal(size=(50, 50))
    a = (a + a.T) / 2
    exact = np.max(np.abs(np.linalg.eigvalsh(a)))
    estimate = float(retraction.symmetric_norm_estimate(jnp.asarray(a, jnp.float32), 200))
    assert estimate == pytest.approx(exact, rel=1e-3)
    assert float(retraction.symmetric_norm_estimate(jnp.asarray(a, jnp.float32), 8)) <= exact * (1 + 1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [1e-4, 2e-3, 8e-3])
def test_retraction_reaches_the_tolerance_without_lifting_norms(shape, size):
    w = perturbed_orthogonal(shape, size)
    tol = 1e-4
    out, stats = retraction.retract(w, tol)
    exact = float(orthogonality_residual(out))
    assert exact <= tol, (exact, stats)
    assert exact <= float(stats["residual"]) * 1.5 + 1e-6  # the prediction is not optimistic
    assert singular_values(out).max() <= 1 + tol
    assert float(stats["drift"]) == pytest.approx(float(orthogonality_residual(w)), rel=0.4)
    assert 1 <= float(stats["steps"]) <= 2
    assert 2 <= float(stats["matmuls"]) <= 8


def test_far_start_is_rescaled_first():
    # ×20 puts σ² far beyond 3, where order-1 Björck without the certified rescale diverges.
    q = jax.nn.initializers.orthogonal()(jax.random.key(3), (32, 32))
    d = jnp.diag(jnp.linspace(0.5, 1.5, 32))
    w = 20.0 * (q @ d)
    out, stats = retraction.retract(w, 1e-5, max_iters=30)
    assert np.all(np.isfinite(np.asarray(out)))
    assert float(orthogonality_residual(out)) <= 1e-5
    assert float(stats["drift"]) > 100


def test_retract_carries_no_gradient():
    w = perturbed_orthogonal((16, 16), 1e-2)
    grad = jax.grad(lambda w: jnp.sum(retraction.retract(w)[0] ** 2))(w)
    assert np.all(np.asarray(grad) == 0)


def test_retraction_layer_uses_its_kernel_and_retracts_in_place():
    layer = LipschitzDense(24, 16, constraint="bjorck", bjorck_training="retraction", rngs=nnx.Rngs(0))
    assert float(orthogonality_residual(layer.kernel[...])) <= 5e-4
    np.testing.assert_array_equal(np.asarray(layer.constrained_kernel()), np.asarray(layer.kernel[...]))
    layer.kernel[...] = perturbed_orthogonal((24, 16), 1e-2)
    stats = layer.retract()
    assert float(orthogonality_residual(layer.kernel[...])) <= 5e-4
    assert float(stats["drift"]) > 1e-2
    # Other layers and the unrolled mode are left alone.
    unrolled = LipschitzDense(8, 8, constraint="bjorck", rngs=nnx.Rngs(0))
    assert unrolled.retract() is None
    assert LipschitzDense(8, 8, constraint="spectral", rngs=nnx.Rngs(0)).retract() is None


def test_custom_init_is_retracted_at_construction():
    init = nnx.initializers.normal(stddev=0.3)
    layer = LipschitzDense(
        16, 16, constraint="bjorck", bjorck_training="retraction", kernel_init=init, rngs=nnx.Rngs(1)
    )
    assert float(orthogonality_residual(layer.kernel[...])) <= 1e-3


@pytest.mark.parametrize("bad, match", [
    (dict(bjorck_training="cayley"), "Unknown bjorck_training 'cayley'; valid modes are: unrolled, retraction, riemannian"),
    (dict(bjorck_training="retraction", retraction_tol=0.0), "retraction_tol must be a number in"),
    (dict(bjorck_training="retraction", retraction_tol=0.9), "retraction_tol must be a number in"),
])
def test_bad_retraction_options(bad, match):
    with pytest.raises(ValueError, match=match):
        LipschitzDense(8, 8, constraint="bjorck", rngs=nnx.Rngs(0), **bad)
    with pytest.raises(ValueError, match=match):
        MLPSpec(in_features=2, widths=(8,), out_features=1, **bad).validate()


@pytest.mark.parametrize("mode, optimizer", [
    ("retraction", "adam"), ("riemannian", "sgd"), ("riemannian", "adam")])
def test_trained_retraction_model_is_certified_and_search_finds_no_violation(mode, optimizer):
    """A few large steps, retracting after each (lazily for riemannian): the export's
    bound holds and the search of the exported and of the training-time function stays
    below it."""
    import optax

    k = 2.0
    spec = MLPSpec(in_features=6, widths=(32, 32), out_features=3, group_size=4,
                   lipschitz_constant=k, bjorck_training=mode)
    model = LipschitzMLP(spec, rngs=nnx.Rngs(0))
    assert model.retracts
    x = jax.random.normal(jax.random.key(0), (64, 6))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(3e-2) if optimizer == "adam" else optax.sgd(0.3, momentum=0.9)
    opt_state = tx.init(params)

    def loss(params):
        logits = nnx.merge(graphdef, params, rest, copy=True)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, rest, opt_state):
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        m = nnx.merge(graphdef, optax.apply_updates(params, updates), rest)
        stats = m.retract()
        _, params, rest = nnx.split(m, nnx.Param, ...)
        return params, rest, opt_state, stats

    for _ in range(10):
        params, rest, opt_state, stats = step(params, rest, opt_state)
        assert float(stats["orthogonality_residual"]) <= 5e-4
    model = nnx.merge(graphdef, params, rest)
    for layer in model.layers:
        assert float(orthogonality_residual(layer.kernel[...])) <= 5e-4
    model.eval()
    exported = export.export_model(model)
    upper = certify.lipschitz_upper_bound(exported)
    assert upper <= k
    x0 = jax.random.normal(jax.random.key(2), (8, 6))
    assert certify.export_lower_bound(exported, x0, jax.random.key(3), steps=20) <= upper * (1 + 1e-5)
    p, q = certify.io_norms(exported)
    trained = certify.lipschitz_lower_bound(model, x0, p, q, jax.random.key(3), steps=20)
    assert trained <= upper * (1 + 1e-3)  # the training-time kernels are within 5e-4 of orthonormal
    # The export moved the kernels by about their residual only: same function.
    np.testing.assert_allclose(export.numpy_forward(exported, np.asarray(x)), np.asarray(model(x)), atol=2e-3)
