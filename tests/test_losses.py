import jax.numpy as jnp
import numpy as np
import pytest

from lipsort import losses


def test_multiclass_hinge_by_hand():
    logits = jnp.array([[2.0, 1.5, -1.0], [0.0, 0.0, 3.0]])
    labels = jnp.array([0, 1])
    # ex 0: j=1: max(0, 1 − 0.5) = 0.5; j=2: max(0, 1 − 3) = 0 → 0.5/3
    # ex 1: j=0: max(0, 1 − 0) = 1;   j=2: max(0, 1 + 3) = 4 → 5/3
    assert float(losses.multiclass_hinge(logits, labels, 1.0)) == pytest.approx((0.5 + 5) / 6)
    assert float(losses.multiclass_hinge(logits, labels, 0.0)) == pytest.approx(3 / 6)


def test_binary_losses_by_hand():
    f = jnp.array([[2.0], [-0.5], [0.3]])
    y = jnp.array([1, 0, 0])
    assert float(losses.hinge(f, y, 1.0)) == pytest.approx((0 + 0.5 + 1.3) / 3)
    assert float(losses.kr_dual(jnp.array([1.0, 3.0]), jnp.array([0.0, -1.0]))) == pytest.approx(-2.5)
    # hkr: −(2 − (−0.1)) + α·hinge
    assert float(losses.hkr(f, y, alpha=2.0, margin=1.0)) == pytest.approx(-2.1 + 2 * 1.8 / 3)
    expected_bce = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-0.5)), np.log1p(np.exp(0.3))])
    assert float(losses.bce(f, y)) == pytest.approx(expected_bce, rel=1e-6)


def test_cross_entropy_by_hand():
    logits = jnp.array([[1.0, 2.0, 0.0]])
    expected = -(2.0 - np.log(np.exp(1) + np.exp(2) + 1))
    assert float(losses.cross_entropy(logits, jnp.array([1]))) == pytest.approx(expected, rel=1e-6)


def test_registry_and_errors():
    for name in losses.LOSSES:
        assert losses.get_loss(name) is losses.LOSSES[name]
    with pytest.raises(ValueError, match="Unknown loss 'mse'; valid losses are: multiclass_hinge"):
        losses.get_loss("mse")
    with pytest.raises(ValueError, match="one logit per example"):
        losses.hinge(jnp.ones((2, 3)), jnp.array([0, 1]))
