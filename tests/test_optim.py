"""The optimizer table: schedules, gradient clipping and their validation."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lipsort import optim


def _train(**fields):
    return ml_collections.ConfigDict({"optimizer": "sgd", "learning_rate": 1.0, "num_steps": 10, **fields})


def test_step_schedule_multiplies_at_each_boundary():
    lr = optim.learning_rate(_train(schedule="step", decay_steps=(3, 5), decay_factor=0.5))
    assert [float(lr(t)) for t in (0, 2, 3, 4, 5, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_gradient_clipping_bounds_the_update_by_its_global_norm():
    tx = optim.make_optimizer(_train(grad_clip_norm=0.1))
    params = {"a": jnp.zeros(3), "b": jnp.zeros(4)}
    grads = {"a": jnp.full(3, 3.0), "b": jnp.full(4, 4.0)}  # global norm √(27 + 64) ≈ 9.54
    updates, _ = tx.update(grads, tx.init(params), params)
    norm = float(optax.global_norm(updates))
    assert norm == pytest.approx(0.1, rel=1e-6)
    # Same direction as the gradient: a uniform rescale (tangent gradients stay tangent).
    flat = np.concatenate([np.asarray(updates["a"]), np.asarray(updates["b"])])
    g = np.concatenate([np.asarray(grads["a"]), np.asarray(grads["b"])])
    np.testing.assert_allclose(flat / np.linalg.norm(flat), -g / np.linalg.norm(g), rtol=1e-6)
    plain = optim.make_optimizer(_train())
    unclipped, _ = plain.update(grads, plain.init(params), params)
    assert float(optax.global_norm(unclipped)) == pytest.approx(float(optax.global_norm(grads)))


@pytest.mark.parametrize("fields, message", [
    (dict(schedule="linear"), "Unknown schedule 'linear'"),
    (dict(schedule="step", decay_steps=(5, 3), decay_factor=0.9), "decay_steps must be increasing"),
    (dict(schedule="step", decay_steps=(3,), decay_factor=0.0), "decay_factor must be a number in (0, 1]"),
    (dict(decay_steps=(3,)), "applies to schedule 'step' only"),
    (dict(schedule="exponential", decay_every=0, decay_factor=0.9), "decay_every must be a positive number"),
    (dict(decay_every=5), "applies to schedule 'exponential' only"),
    (dict(grad_clip_norm=-1.0), "grad_clip_norm must be a number ≥ 0"),
    (dict(momentum=1.5), "momentum must be a number in [0, 1)"),
])
def test_invalid_fields_are_named(fields, message):
    errors = optim.validate(_train(**fields))
    assert any(message in e for e in errors), errors


def test_exponential_schedule_decays_once_per_interval():
    rate = optim.learning_rate(_train(schedule="exponential", learning_rate=1.0, decay_every=10, decay_factor=0.5))
    assert [float(rate(s)) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_aggmo_matches_a_hand_computed_step():
    """Two steps of AggMo (betas 0, 0.5, 0.9; lr 0.1) on gradients 1 then 2, by hand:
    step 1: v = (1, 1, 1), update −0.1·1; step 2: v = (2, 2.5, 2.9), update −0.1·7.4/3."""
    tx = optim.make_optimizer(_train(optimizer="aggmo", learning_rate=0.1, aggmo_betas=(0.0, 0.5, 0.9)))
    params = jnp.zeros(2)
    state = tx.init(params)
    first, state = tx.update(jnp.ones(2), state, params)
    second, state = tx.update(jnp.full(2, 2.0), state, params)
    np.testing.assert_allclose(np.asarray(first), -0.1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(second), -0.1 * 7.4 / 3, rtol=1e-6)


def test_aggmo_betas_are_checked():
    errors = optim.validate(_train(optimizer="aggmo", aggmo_betas=(0.0, 1.0)))
    assert any("aggmo_betas must be a non-empty tuple" in e for e in errors), errors
    errors = optim.validate(_train(optimizer="adam", aggmo_betas=(0.0, 0.5)))
    assert any("applies to optimizer 'aggmo' only" in e for e in errors), errors
