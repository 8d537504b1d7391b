"""Layers, MLPs, export and certificates: the guarantee holds for every combination."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lipsort import activations as acts
from lipsort import certify, export
from lipsort.layers import CONSTRAINTS, LipschitzDense
from lipsort.models import LipschitzMLP, MLPSpec, build_model, resolve_constraints

# Every valid norm chain: (norm, constraint) — the first layer follows from them.
CHAINS = [("l2", "bjorck"), ("l2", "spectral"), ("l2", "two_inf"), ("l2", "linf"), ("linf", "linf")]
K = 2.5


def randomized_model(norm, constraint, activation, seed=0, widths=(8, 8), scale=3.0, **kw):
    """A small MLP whose raw kernels are large and random, so the constraint must work."""
    spec = MLPSpec(
        in_features=4, widths=widths, out_features=3, activation=activation, group_size=4,
        constraint=constraint, norm=norm, lipschitz_constant=K, power_iters=30, **kw,
    )
    model = LipschitzMLP(spec, rngs=nnx.Rngs(seed))
    keys = jax.random.split(jax.random.key(seed + 100), len(model.layers))
    for layer, k in zip(model.layers, keys):
        layer.kernel[...] = scale * jax.random.normal(k, layer.kernel.shape)
        layer.bias[...] = jax.random.normal(k, layer.bias.shape)
    if constraint == "spectral":
        model(jnp.zeros((1, 4)))  # settle the persistent power-iteration vectors
        for _ in range(3):
            model(jnp.zeros((1, 4)))
    return model


@pytest.mark.parametrize("activation", acts.ACTIVATIONS)
@pytest.mark.parametrize("norm,constraint", CHAINS)
def test_certificate_holds_and_search_finds_no_violation(norm, constraint, activation):
    """Every activation × constraint × norm: export parity, certificate ≤ K, no violation."""
    model = randomized_model(norm, constraint, activation, bjorck_iters=30)
    model.eval()
    exported = export.export_model(model)
    x = np.asarray(jax.random.normal(jax.random.key(3), (16, 4)))
    numpy_out = export.numpy_forward(exported, x)
    np.testing.assert_allclose(numpy_out, model(jnp.asarray(x)), atol=2e-4, rtol=2e-4)
    jax_out = export.export_apply(exported)(export.export_params(exported), jnp.asarray(x))
    np.testing.assert_allclose(numpy_out, jax_out, atol=1e-5, rtol=1e-5)
    upper = certify.lipschitz_upper_bound(exported)
    assert upper <= K, upper
    p, q = certify.io_norms(exported)
    x0 = jax.random.normal(jax.random.key(1), (8, 4))
    # The certificate is about the exported weights; for Björck also search the
    # training-time function once (its truncated iteration must not exceed the bound).
    lower = certify.export_lower_bound(exported, x0, jax.random.key(2), steps=20)
    assert lower <= upper * (1 + 1e-5), (lower, upper)
    if constraint == "bjorck" and activation == "group_sort":
        trained = certify.lipschitz_lower_bound(model, x0, p, q, jax.random.key(2), steps=20)
        assert trained <= upper * (1 + 1e-5), (trained, upper)
    if constraint == "bjorck" and activation in ("group_sort", "max_min", "full_sort", "abs"):
        # Orthogonal layers + norm-preserving activations are tight: the search reaches
        # the certificate (spectral layers are not orthogonal, so no such claim there).
        assert lower >= 0.9 * upper


def test_every_registry_entry_is_exercised():
    assert {c for _, c in CHAINS} | {"none"} == set(CONSTRAINTS)
    assert set(acts.ACTIVATIONS) == set(acts._REGISTRY)


def test_search_finds_violations_of_unconstrained_networks():
    """The search is a real test: without a constraint it finds Lip(f) far above K."""
    model = randomized_model("l2", "none", "group_sort")
    exported = export.export_model(model)
    x0 = jax.random.normal(jax.random.key(1), (8, 4))
    lower = certify.export_lower_bound(exported, x0, jax.random.key(2), steps=25)
    assert lower > 10 * K
    assert lower <= certify.lipschitz_upper_bound(exported) * (1 + 1e-5)


@pytest.mark.parametrize("constraint", ["bjorck", "spectral", "linf", "two_inf", "none"])
def test_export_matches_the_constrained_model(constraint, tmp_path):
    norm = "l2"
    model = randomized_model(norm, constraint, "max_min", bjorck_iters=30)
    model.eval()
    x = jax.random.normal(jax.random.key(3), (16, 4))
    exported = export.export_model(model)
    np.testing.assert_allclose(export.numpy_forward(exported, np.asarray(x)), model(x), atol=2e-4, rtol=2e-4)
    export.save_export(exported, str(tmp_path))
    loaded = export.load_export(str(tmp_path))
    assert loaded.meta == exported.meta
    for k, v in exported.arrays.items():
        assert loaded.arrays[k].dtype == np.float32
        np.testing.assert_array_equal(loaded.arrays[k], v)
    assert set(loaded.meta) >= {"activation", "group_size", "norm", "lipschitz_constant", "layer_sizes"}


def test_export_of_a_converged_bjorck_layer_is_orthonormal_to_float32_precision():
    model = randomized_model("l2", "bjorck", "group_sort", widths=(16,))
    exported = export.export_model(model)
    k0 = exported.arrays["kernel_0"].astype(np.float64)  # (4, 16): wide, rows orthonormal
    assert np.linalg.norm(k0 @ k0.T - np.eye(4), 2) <= 1e-6
    assert certify.layer_operator_norms(exported)[0] <= 1.0


def test_rounding_is_repaired_so_the_bound_holds():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    inflated = q * (1 + 1e-7)  # exceeds 1 by a rounding-sized amount
    out = export.fit_under(inflated, 1.0, 2, 2)
    assert out.dtype == np.float32
    assert np.linalg.norm(out.astype(np.float64), 2) <= 1.0


def test_gradients_flow_through_every_constraint():
    for constraint in CONSTRAINTS:
        layer = LipschitzDense(6, 4, constraint=constraint, rngs=nnx.Rngs(0))
        layer.kernel[...] = 2.0 * layer.kernel[...]
        graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

        def loss(params, rest):
            # copy=True: variables updated in the forward (power iteration) belong to this trace.
            return jnp.sum(nnx.merge(graphdef, params, rest, copy=True)(jnp.ones((2, 6))) ** 2)

        grads = jax.grad(loss)(params, rest)
        g = np.asarray(grads["kernel"][...])
        assert np.all(np.isfinite(g)) and np.any(g != 0), constraint


def test_spectral_vector_updates_in_train_mode_only():
    layer = LipschitzDense(6, 4, constraint="spectral", rngs=nnx.Rngs(0))
    layer.kernel[...] = jax.random.normal(jax.random.key(0), (6, 4))
    u0 = np.asarray(layer.u[...])
    layer.eval()
    layer(jnp.ones((1, 6)))
    np.testing.assert_array_equal(layer.u[...], u0)
    layer.train()
    layer(jnp.ones((1, 6)))
    assert not np.allclose(layer.u[...], u0)


def test_maxout_shrinks_the_next_layer():
    spec = MLPSpec(in_features=3, widths=(8, 6), out_features=2, activation="maxout", group_size=2)
    assert spec.layer_in_out() == [(3, 8), (4, 6), (3, 2)]
    model = LipschitzMLP(spec, rngs=nnx.Rngs(0))
    assert model(jnp.ones((5, 3))).shape == (5, 2)
    meta = export.export_model(model).meta
    assert meta["layer_sizes"] == [3, 8, 6, 2]
    assert meta["kernel_shapes"] == [[3, 8], [4, 6], [3, 2]]


def test_build_model_from_a_config():
    import ml_collections

    cfg = ml_collections.ConfigDict(
        dict(widths=[8, 8], activation="group_sort", group_size=4, constraint="bjorck",
             lipschitz_constant=2.0, norm="l2")
    )
    model = build_model(cfg, 5, 1, seed=0)
    assert model(jnp.ones((3, 5))).shape == (3, 1)
    assert model.constraints == ("bjorck",) * 3
    assert resolve_constraints(3, "linf", None, "l2") == ["two_inf", "linf", "linf"]
    assert resolve_constraints(2, "two_inf", None, "l2") == ["two_inf", "linf"]


def bad(**kw):
    base = dict(in_features=4, widths=(8,), out_features=2, activation="group_sort", group_size=4)
    base.update(kw)
    return lambda: MLPSpec(**base).validate()


@pytest.mark.parametrize(
    "call,match",
    [
        (bad(activation="swish"), "Unknown activation 'swish'; valid activations are: relu, abs"),
        (bad(constraint="orthogonal"), "Unknown constraint 'orthogonal'; valid constraints are: bjorck"),
        (bad(group_size=3), "group_size=3 does not divide the layer width"),
        (bad(activation="max_min", widths=(7,)), "does not divide the layer width"),
        (bad(lipschitz_constant=0.0), r"lipschitz_constant \(K\) must be a finite number > 0"),
        (bad(lipschitz_constant=-1), r"lipschitz_constant \(K\) must be a finite number > 0"),
        (bad(lipschitz_constant=math.inf), r"lipschitz_constant \(K\) must be a finite number > 0"),
        (bad(norm="l1"), "Unknown norm 'l1'; valid norms are: l2, linf"),
        (bad(norm="linf", constraint="bjorck"), "layer 0 constraint 'bjorck' bounds the norm from ℓ2"),
        (bad(norm="linf", first_constraint="two_inf", constraint="linf"), "bounds the norm from ℓ2"),
        (bad(bjorck_order=2, bjorck_beta=0.4), "requires beta=0.5"),
        (bad(widths=(0,)), "widths must be positive integers"),
        (bad(bjorck_iters=-2), "bjorck_iters must be a non-negative integer"),
        (bad(constraint="spectral", power_iters=0), "power_iters must be a positive integer"),
    ],
)
def test_bad_model_configs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_layer_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown constraint 'svd'"):
        LipschitzDense(3, 3, constraint="svd", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="requires beta=0.5"):
        LipschitzDense(3, 3, bjorck_order=3, bjorck_beta=0.25, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="power_iters must be a positive integer"):
        LipschitzDense(3, 3, constraint="spectral", power_iters=0, rngs=nnx.Rngs(0))


def test_load_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no export in"):
        export.load_export(str(tmp_path))
    (tmp_path / "export.npz").write_bytes(b"not a zip file")
    (tmp_path / "export.json").write_text("{}")
    with pytest.raises(ValueError, match="corrupt export"):
        export.load_export(str(tmp_path))
