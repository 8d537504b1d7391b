"""The typed export (format 2): records, bounds, old exports, and one-place extension."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lipsort import activations, certify, export
from lipsort.models import LipschitzMLP, MLPSpec
from lipsort.norms import operator_norm


def _model(activation="group_sort", constraint="bjorck", norm="l2", k=2.0):
    spec = MLPSpec(in_features=5, widths=(8, 8), out_features=3, activation=activation, group_size=4,
                   constraint=constraint, norm=norm, lipschitz_constant=k)
    return LipschitzMLP(spec, rngs=nnx.Rngs(0))


def test_records_and_bounds(tmp_path):
    exported = export.export_model(_model())
    meta = exported.meta
    assert meta["format"] == 2 and meta["input_shape"] == [5]
    assert [r["type"] for r in meta["layers"]] == ["dense", "activation", "dense", "activation", "dense"]
    for record in exported.linear_layers:
        p, q = (export.parse_norm(v) for v in record["norms"])
        assert record["bound"] == operator_norm(exported.arrays[record["kernel"]], p, q)
    bounds = [r["bound"] for r in exported.linear_layers]
    assert certify.lipschitz_upper_bound(exported) == pytest.approx(math.prod(bounds), rel=1e-12)
    assert bounds[-1] == pytest.approx(2.0, rel=1e-6)  # K folded into the last linear record
    # The flat keys of format 1 are still written for dense models.
    assert {"activation", "group_size", "norm", "lipschitz_constant", "layer_sizes"} <= set(meta)
    export.save_export(exported, str(tmp_path))
    with open(tmp_path / "export.json") as f:
        assert json.load(f)["layers"] == meta["layers"]


def test_format_1_exports_still_load(tmp_path):
    exported = export.export_model(_model("max_min", "linf", "linf"))
    old_meta = {k: v for k, v in exported.meta.items() if k not in ("format", "input_shape", "layers")}
    np.savez(os.path.join(tmp_path, export.EXPORT_ARRAYS), **exported.arrays)
    with open(os.path.join(tmp_path, export.EXPORT_META), "w") as f:
        json.dump(old_meta, f)
    loaded = export.load_export(str(tmp_path))
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_array_equal(export.numpy_forward(loaded, x), export.numpy_forward(exported, x))
    assert certify.lipschitz_upper_bound(loaded) == certify.lipschitz_upper_bound(exported)
    assert certify.io_norms(loaded) == (math.inf, math.inf)


def test_unknown_record_type_and_missing_array_are_clear_errors(tmp_path):
    exported = export.export_model(_model())
    exported.meta["layers"][1] = {"type": "softmax"}
    with pytest.raises(ValueError, match="unknown export record type 'softmax'; known types: dense, conv, space_to_depth, flatten, activation"):
        export.numpy_forward(exported, np.zeros((1, 5), np.float32))
    good = export.export_model(_model())
    del good.arrays["bias_1"]
    export.save_export(good, str(tmp_path))
    with pytest.raises(ValueError, match="missing arrays"):
        export.load_export(str(tmp_path))


def test_unknown_activation_is_an_error_everywhere():
    with pytest.raises(ValueError, match="valid activations are: relu, abs"):
        activations.lookup("softplus")
    exported = export.export_model(_model())
    exported.meta["layers"][1]["name"] = "softplus"
    with pytest.raises(ValueError, match="Unknown activation 'softplus'"):
        export.numpy_forward(exported, np.zeros((1, 5), np.float32))


def test_a_new_activation_is_one_registry_entry():
    """The seam: an activation registered in one place works in models, exports and certificates."""
    entry = activations.Activation("neg_abs", lambda x, g, axis: -jnp.abs(x), lambda h, g: -np.abs(h))
    activations.register_activation(entry)
    try:
        model = _model("neg_abs")
        exported = export.export_model(model)
        x = np.asarray(jax.random.normal(jax.random.key(0), (6, 5)))
        np.testing.assert_allclose(export.numpy_forward(exported, x), model(jnp.asarray(x)), atol=2e-5)
        assert certify.lipschitz_upper_bound(exported) <= 2.0
    finally:
        del activations._REGISTRY["neg_abs"]


def test_fit_under_records_a_rounding_safe_bound():
    """The stored float32 kernel's exact σ_max (float64 SVD) is ≤ its recorded bound ≤ the target."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(96, 80)))
    for target, kernel in ((1.0, q * (1 + 3e-8)), (2.0, 2.0 * q), (1.0, rng.normal(size=(96, 80)))):
        out = export.fit_under(kernel, target, 2, 2)
        exact = np.linalg.svd(out.astype(np.float64), compute_uv=False).max()
        assert exact <= operator_norm(out, 2) <= target
        assert exact >= target * (1 - 1e-6)  # not shrunk more than the rounding needs


@pytest.mark.parametrize("constraint,norm", [("bjorck", "l2"), ("linf", "linf")])
def test_per_layer_lipschitz_placement_exports_the_same_function(constraint, norm):
    """K^(1/n) after every layer (LNets' placement) exports as biases ÷ s^i with K at the
    output: the numpy forward of the export is the model's, and the certificate is K."""
    spec = MLPSpec(in_features=5, widths=(8, 8), out_features=3, activation="max_min", constraint=constraint,
                   norm=norm, lipschitz_constant=1000.0, lipschitz_placement="per_layer", linf_projection="sphere"
                   if constraint == "linf" else "ball")
    model = LipschitzMLP(spec, rngs=nnx.Rngs(0))
    assert model.layer_scale == pytest.approx(1000.0 ** (1 / 3))
    for i, layer in enumerate(model.layers):  # biases that matter: the folding is checked, not skipped
        layer.bias.value = jax.random.normal(jax.random.key(i), layer.bias.value.shape)
    exported = export.export_model(model)
    x = np.asarray(jax.random.uniform(jax.random.key(9), (16, 5)))
    y = np.asarray(model(jnp.asarray(x)))
    np.testing.assert_allclose(export.numpy_forward(exported, x), y, rtol=1e-4, atol=1e-3 * np.abs(y).max())
    assert exported.meta["lipschitz_constant"] == 1000.0
    upper = certify.lipschitz_upper_bound(exported)
    assert upper <= 1000.0 * (1 + 1e-6)
    # search, not random points: neither the export nor the trained per-layer function exceeds it
    p, q = certify.io_norms(exported)
    x0 = jax.random.normal(jax.random.key(1), (8, 5))
    assert certify.export_lower_bound(exported, x0, jax.random.key(2), steps=20) <= upper * (1 + 1e-5)
    assert certify.lipschitz_lower_bound(model, x0, p, q, jax.random.key(2), steps=20) <= upper * (1 + 1e-5)


def test_per_layer_placement_needs_a_homogeneous_activation():
    entry = activations.Activation("shifted_relu", lambda x, g, axis: jnp.maximum(x, 1.0) - 1.0,
                                   lambda h, g: np.maximum(h, 1.0) - 1.0)
    activations.register_activation(entry)
    try:
        with pytest.raises(ValueError, match="positively homogeneous"):
            MLPSpec(in_features=5, widths=(8,), out_features=3, activation="shifted_relu",
                    lipschitz_placement="per_layer").validate()
        MLPSpec(in_features=5, widths=(8,), out_features=3, activation="shifted_relu").validate()  # output: fine
    finally:
        del activations._REGISTRY["shifted_relu"]
    with pytest.raises(ValueError, match="lipschitz_placement must be one of output, per_layer"):
        MLPSpec(in_features=5, widths=(8,), out_features=3, lipschitz_placement="input").validate()
