"""Projected training of ∞-norm layers (the paper's ℓ∞ protocol) and model selection on a
validation split: the projection after each update, its certificate, best-epoch selection."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import train_retracting
from lipsort import certify, export, train
from lipsort.config_loader import load_config
from lipsort.layers import LipschitzDense
from lipsort.models import LipschitzMLP, MLPSpec
from lipsort.norms import project_l1_sphere, project_linf
from lipsort.tasks import classify


def sort_based_projection(w):
    """The sort-based ℓ1-ball projection (Duchi et al. 2008), differentiable, as reference."""
    def unit(v):
        a = jnp.abs(v)
        u = jnp.sort(a)[::-1]
        css = jnp.cumsum(u)
        rho = jnp.sum(u * jnp.arange(1, v.shape[0] + 1) > css - 1.0)
        theta = (css[rho - 1] - 1.0) / rho
        return jnp.where(jnp.sum(a) <= 1.0, v, jnp.sign(v) * jnp.maximum(a - theta, 0.0))
    return jax.vmap(unit, in_axes=1, out_axes=1)(w)


def test_sort_free_projection_matches_the_sort_based_one_with_its_gradient():
    w = jax.random.normal(jax.random.key(0), (50, 7)) * jnp.array([0.001, 0.01, 0.02, 0.05, 0.3, 1.0, 3.0])
    w = w.at[:10, 2].set(0.0)  # exact zeros: ties at θ = 0
    np.testing.assert_allclose(project_linf(w), sort_based_projection(w), atol=1e-6)
    loss = lambda f: (lambda w: jnp.sum(jnp.sin(3 * f(w)) * jnp.arange(w.size).reshape(w.shape)))
    np.testing.assert_allclose(jax.grad(loss(project_linf))(w), jax.grad(loss(sort_based_projection))(w),
                               atol=1e-4)


def test_l1_sphere_projection_inflates_units_inside_to_the_nearest_facet():
    w = jnp.array([[0.1, 2.0], [-0.2, -1.0], [0.0, 0.5]])
    out = np.asarray(project_l1_sphere(w))
    np.testing.assert_allclose(np.abs(out).sum(0), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], np.asarray(project_linf(w))[:, 1])  # outside: the ball's
    inside = np.asarray(w[:, 0])
    # Each entry moves by (1 − 0.3)/3 away from zero (zeros count as +): same orthant, and the
    # move (r − ‖v‖₁)/√n is the distance from v to the facet of its sign pattern.
    np.testing.assert_allclose(out[:, 0], inside + np.array([1, -1, 1]) * 0.7 / 3, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[:, 0] - inside), 0.7 / math.sqrt(3), rtol=1e-6)


@pytest.mark.parametrize("constraint, projection, unit_norm", [
    ("linf", "ball", 1), ("linf", "sphere", 1), ("two_inf", "ball", 2)])
def test_projected_layer_uses_its_kernel_and_projects_after_updates(constraint, projection, unit_norm):
    layer = LipschitzDense(40, 6, constraint=constraint, linf_training="projected", linf_projection=projection,
                           rngs=nnx.Rngs(0))
    assert layer.retracts
    np.testing.assert_array_equal(layer.constrained_kernel(), layer.kernel[...])  # no projection in the forward pass
    layer.kernel[...] = layer.kernel[...] * 3.0  # an update that leaves the ball
    stats = layer.retract()
    assert float(stats["excess"]) == pytest.approx(2.0, rel=1e-4)
    w = np.asarray(layer.kernel[...], np.float64)
    norms = np.abs(w).sum(0) if unit_norm == 1 else np.linalg.norm(w, axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    np.testing.assert_allclose(layer.export_kernel(), w, atol=1e-6)  # export: the same projection, in float64
    differentiated = LipschitzDense(40, 6, constraint=constraint, rngs=nnx.Rngs(0))
    assert not differentiated.retracts and differentiated.retract() is None


def test_bad_projection_options_are_named():
    with pytest.raises(ValueError, match="Unknown linf_training 'after'"):
        LipschitzDense(4, 4, constraint="linf", linf_training="after", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Unknown linf_projection 'cube'"):
        MLPSpec(in_features=2, widths=(4,), out_features=1, constraint="linf", norm="linf",
                linf_projection="cube").validate()


@pytest.mark.parametrize("norm, projection", [("linf", "sphere"), ("l2", "ball")])
def test_projected_training_is_certified_and_search_finds_no_violation(norm, projection):
    """Large AggMo-like steps, projecting after each: the training-time function and the
    export stay under the certificate (norm l2: the blog's two_inf → linf network)."""
    k = 3.0
    spec = MLPSpec(in_features=6, widths=(16, 16), out_features=3, activation="max_min", constraint="linf",
                   norm=norm, lipschitz_constant=k, linf_training="projected", linf_projection=projection)
    model = LipschitzMLP(spec, rngs=nnx.Rngs(0))
    model, history = train_retracting(model, lambda m, p: optax.sgd(0.3, momentum=0.9))
    assert set(history[-1]) == {"projection_excess"}
    model.eval()
    exported = export.export_model(model)
    upper = certify.lipschitz_upper_bound(exported)
    assert upper <= k * (1 + 1e-9)
    x0 = jax.random.normal(jax.random.key(2), (8, 6))
    # The training-time kernels are the exported ones up to float64 rounding (the projection
    # is exact): one search, on the export.
    assert certify.export_lower_bound(exported, x0, jax.random.key(3), steps=10) <= upper * (1 + 1e-5)


def tiny_selected(config):
    """A few-second ℓ∞ run holding out a validation split and keeping its best model."""
    config.data.source = "bundled"
    config.model.widths = (16, 16)
    config.data.num_train, config.data.num_test, config.data.num_val = 600, 100, 100
    config.train.num_steps = 16
    config.train.log_every = config.train.checkpoint_every = 8
    config.eval.curve_every = 4
    config.eval.select_best = "val_accuracy"
    config.eval.epsilons = (0.05,)
    config.eval.attack_steps = 2
    config.certify.search_steps = 0
    return config


def test_best_model_on_the_validation_curve_is_evaluated_and_resumes(tmp_path):
    config = tiny_selected(load_config("robust_mnist_linf:quick"))
    config.train.learning_rate = 0.05  # large steps: the validation accuracy moves around
    # Killed after its first checkpoint and resumed (the best so far is read back from
    # curve.jsonl and <workdir>/best); resumption itself is bit-exact (test_run_hygiene).
    assert train.train_and_evaluate(config, str(tmp_path), stop_after_step=8) is None
    results = train.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "curve.jsonl") as f:
        curve = [json.loads(line) for line in f]
    values = [c["val_accuracy"] for c in curve]
    best = curve[int(np.argmax(values))]
    assert results["selected"] == {"by": "val_accuracy", "step": best["step"], "value": best["val_accuracy"]}
    assert results["num_val"] == 100 and results["num_train"] == 500
    assert os.path.isdir(tmp_path / "best")
    # The export is the selected model: its validation accuracy is the selected value.
    split = classify.DATASETS["mnist"](config.data, 0)
    _, x_val, y_val = classify.hold_out(split, 100)
    logits = export.numpy_forward(export.load_export(str(tmp_path)), x_val)
    assert float(np.mean(np.asarray(certify.margins(logits, y_val)) > 0)) == pytest.approx(best["val_accuracy"])


def test_selection_needs_a_curve_and_a_validation_split():
    config = tiny_selected(load_config("robust_mnist_linf:quick"))
    config.eval.curve_every = 0
    config.data.num_val = 600
    with pytest.raises(train.ConfigError, match="(?s)num_val 600 leaves fewer than 10.*curve_every > 0"):
        train.validate_config(config)
