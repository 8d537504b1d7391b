"""Retraction training: the kernel is kept orthonormal after every update, cheaply."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import polar_factor, train_retracting
from lipsort import certify, export, retraction, riemannian_adam
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


def with_low_rank_residual(shape, eigenvalues, seed=0):
    """Q (I + E)^{1/2} on the Gram side (Q orthonormal), E = V diag(eigenvalues) Vᵀ of
    rank len(eigenvalues): W's Gram residual is exactly E and its polar factor is Q."""
    q = np.asarray(jax.nn.initializers.orthogonal()(jax.random.key(seed), shape), np.float64)
    n = min(shape)
    v = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, len(eigenvalues))))[0]
    root = np.eye(n) + v @ np.diag(np.sqrt(1.0 + np.asarray(eigenvalues)) - 1.0) @ v.T
    return (q @ root if shape[0] >= shape[1] else root @ q), q


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_low_rank_correction_removes_a_low_rank_residual_without_rotating(shape):
    eigenvalues = 3e-3 * 0.7 ** np.arange(10)  # rank 10 < 16, one of them negative below
    eigenvalues[4] *= -1
    w, q = with_low_rank_residual(shape, eigenvalues)
    fixed = retraction.low_rank_correction(jnp.asarray(w, jnp.float32), rank=16)
    assert float(orthogonality_residual(jnp.asarray(w, jnp.float32))) > 2.5e-3
    assert float(orthogonality_residual(fixed)) < 2e-6
    assert np.max(np.abs(polar_factor(fixed) - q)) < 1e-5  # singular values moved, not the vectors


def test_low_rank_correction_of_a_full_rank_residual_takes_its_top_part_only():
    eigenvalues = 3e-3 * 0.8 ** np.arange(64)
    w, q = with_low_rank_residual((64, 64), eigenvalues)
    fixed = retraction.low_rank_correction(jnp.asarray(w, jnp.float32), rank=16)
    after = float(orthogonality_residual(fixed))
    assert eigenvalues[16] * 0.9 < after < 4 * eigenvalues[16]  # the 17th eigenvalue (and a little more)
    assert np.max(np.abs(polar_factor(fixed) - q)) < 1e-5


def test_lazy_retraction_tries_the_low_rank_correction_before_bjorck():
    low, _ = with_low_rank_residual((64, 64), [2e-3, 1e-3])  # the correction suffices
    w, stats = retraction.retract(jnp.asarray(low, jnp.float32), 5e-4, lazy=True, low_rank=16)
    assert float(stats["corrections"]) == 1 and float(stats["steps"]) == 0
    assert float(orthogonality_residual(w)) <= 5e-4 and float(stats["drift"]) > 2e-3
    full, _ = with_low_rank_residual((64, 64), 3e-3 * 0.95 ** np.arange(64))  # it does not
    w, stats = retraction.retract(jnp.asarray(full, jnp.float32), 5e-4, lazy=True, low_rank=16)
    assert float(stats["corrections"]) == 1 and float(stats["steps"]) >= 1
    assert float(orthogonality_residual(w)) <= 5e-4
    near, _ = with_low_rank_residual((64, 64), [1e-4])  # within tol: nothing at all
    w, stats = retraction.retract(jnp.asarray(near, jnp.float32), 5e-4, lazy=True, low_rank=16)
    assert float(stats["corrections"]) == 0 and float(stats["steps"]) == 0


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
    ("retraction", "adam"), ("riemannian", "sgd"), ("riemannian", "adam"), ("riemannian", "riemannian_adam")])
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
    make_tx = {"adam": lambda m, p: optax.adam(3e-2), "sgd": lambda m, p: optax.sgd(0.3, momentum=0.9),
               "riemannian_adam": lambda m, p: riemannian_adam.riemannian_adam(
                   3e-2, riemannian_adam.tangent_kernel_mask(m, p))}[optimizer]
    model, history = train_retracting(model, make_tx)
    assert all(float(stats["orthogonality_residual"]) <= 5e-4 for stats in history)
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
    x = jax.random.normal(jax.random.key(0), (64, 6))  # the training batch
    np.testing.assert_allclose(export.numpy_forward(exported, np.asarray(x)), np.asarray(model(x)), atol=2e-3)
