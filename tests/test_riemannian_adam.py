"""Riemannian Adam: one second moment per orthonormal kernel, plain Adam elsewhere."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from lipsort import optim, riemannian_adam, tangent
from lipsort.models import LipschitzMLP, MLPSpec


def riemannian_model(**overrides):
    fields = dict(in_features=6, widths=(32, 32), out_features=3, bjorck_training="riemannian")
    return LipschitzMLP(MLPSpec(**{**fields, **overrides}), rngs=nnx.Rngs(0))


def named_mask(model):
    _, params, _ = nnx.split(model, nnx.Param, ...)
    mask = riemannian_adam.tangent_kernel_mask(model, params)
    return {jax.tree_util.keystr(path): on for path, on in jax.tree_util.tree_flatten_with_path(mask)[0]}


def test_mask_selects_the_kernels_of_riemannian_layers_only():
    mask = named_mask(riemannian_model())
    kernels = {k for k in mask if "kernel" in k}
    assert len(kernels) == 3 and all(mask[k] for k in kernels)
    assert not any(on for k, on in mask.items() if "bias" in k)
    # A retraction-mode model has no tangent kernels; nor has the ℓ2→ℓ∞ first layer.
    assert not any(named_mask(riemannian_model(bjorck_training="retraction")).values())
    mixed = named_mask(riemannian_model(first_constraint="two_inf", constraint="linf", norm="l2"))
    assert not any(mixed.values())


def test_is_plain_adam_off_the_manifold_and_scalar_normalized_on_it():
    params = {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros((3,))}
    mask = {"kernel": True, "bias": False}
    ours, reference = riemannian_adam.riemannian_adam(1e-2, mask), optax.adam(1e-2)
    s_ours, s_ref = ours.init(params), reference.init(params)
    assert s_ours[0].nu["kernel"].shape == () and s_ours[0].nu["bias"].shape == (3,)
    for t in range(5):
        grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(t), p.shape), params)
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_ref, s_ref = reference.update(grads, s_ref, params)
        np.testing.assert_allclose(u_ours["bias"], u_ref["bias"], rtol=1e-6)
        # On the kernel: −lr · m̂ / (√v̂ + ε) with m the running mean of the gradients and
        # v that of their mean square, a positive multiple of the momentum.
        m_hat = s_ours[0].mu["kernel"] / (1 - 0.9 ** (t + 1))
        v_hat = s_ours[0].nu["kernel"] / (1 - 0.999 ** (t + 1))
        np.testing.assert_allclose(u_ours["kernel"], -1e-2 * m_hat / (jnp.sqrt(v_hat) + 1e-8), rtol=1e-4)
    first = ours.update({"kernel": jnp.arange(12.0).reshape(4, 3), "bias": jnp.ones(3)}, ours.init(params))[0]
    g = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(first["kernel"], -1e-2 * g / jnp.sqrt(jnp.mean(g**2)), rtol=1e-5)


def test_updates_of_tangent_gradients_stay_tangent_unlike_adam():
    """Several steps with tangent gradients at one orthonormal kernel: Riemannian Adam's
    update is tangent (a combination of them), Adam's per-coordinate one is not."""
    k = jax.nn.initializers.orthogonal()(jax.random.key(0), (40, 24), jnp.float32)
    params = {"k": k}

    def tangent_grad(t):
        x = jax.random.normal(jax.random.key(t), (16, 40))
        c = jax.random.normal(jax.random.key(100 + t), (16, 24))
        return {"k": jax.grad(lambda k: jnp.sum(c * jnp.tanh(tangent.tangent_matmul(x, k))))(k)}

    for tx in (riemannian_adam.riemannian_adam(1e-3, {"k": True}), optax.adam(1e-3)):
        state = tx.init(params)
        for t in range(4):
            update, state = tx.update(tangent_grad(t), state, params)
        relative = float(tangent.tangency_defect(k, update["k"]) / jnp.linalg.norm(update["k"]))
        if isinstance(state[0], riemannian_adam.RiemannianAdamState):
            assert relative < 1e-5
        else:
            assert relative > 1e-2


def test_optimizer_needs_a_mask():
    with pytest.raises(ValueError, match="needs the manifold_mask"):
        optim.make_optimizer(ml_collections.ConfigDict(dict(optimizer="riemannian_adam", learning_rate=1e-3)))
