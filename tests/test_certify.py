import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lipsort import certify


def test_margins_and_certified_accuracy_by_hand():
    logits = jnp.array([[3.0, 1.0, 0.0], [0.5, 0.2, 0.4], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    labels = jnp.array([0, 0, 0, 1])
    np.testing.assert_allclose(certify.margins(logits, labels), [2.0, 0.1, -2.0, 0.0], atol=1e-6)
    # ℓ2: certified iff m > √2·L·ε. L = 1, ε = 1: threshold 1.414 → only example 0.
    assert certify.certified_accuracy(logits, labels, 1.0, 1.0, output_norm=2) == 0.25
    # ε = 0.05: threshold 0.0707 → examples 0 and 1 (m = 0.1); a tie (m = 0) never counts.
    assert certify.certified_accuracy(logits, labels, 0.05, 1.0, output_norm=2) == 0.5
    # ℓ∞: threshold 2·L·ε = 0.1 at ε = 0.05, and m = 0.1 is not > 0.1.
    assert certify.certified_accuracy(logits, labels, 0.05, 1.0, output_norm=math.inf) == 0.25
    # L = 0.5 doubles every radius: ℓ∞ threshold 2·0.5·0.05 = 0.05 < 0.1.
    assert certify.certified_accuracy(logits, labels, 0.05, 0.5, output_norm=math.inf) == 0.5
    np.testing.assert_allclose(
        certify.certified_radius(jnp.array([2.0, -1.0]), 2.0, 2, 3), [2.0 / (2 * math.sqrt(2)), 0.0]
    )
    assert certify.accuracy(logits, labels) == 0.5


def test_binary_margins():
    logits = jnp.array([[2.0], [-1.0], [0.5]])
    labels = jnp.array([1, 0, 0])
    np.testing.assert_allclose(certify.margins(logits, labels), [2.0, 1.0, -0.5])
    assert certify.certified_accuracy(logits, labels, 1.5, 1.0) == pytest.approx(1 / 3)


def linear_model():
    """f(x) = x @ A with known geometry: class 0 wins iff x0 > x1."""
    a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    return lambda x: x @ a


@pytest.mark.parametrize("p", [2, math.inf])
def test_pgd_finds_the_known_adversarial_example(p):
    f = linear_model()
    x = jnp.array([[0.6, 0.4], [0.9, 0.1]])  # margins 0.2 and 0.8
    labels = jnp.array([0, 0])
    # Minimal flipping perturbation: ℓ∞ radius m/2, ℓ2 radius m/√2.
    need = [m / 2 if p == math.inf else m / math.sqrt(2) for m in (0.2, 0.8)]
    eps = 0.5 * (need[0] + need[1])  # breaks the first, cannot break the second
    x_adv = certify.pgd_attack(f, x, labels, eps, p, jax.random.key(0), steps=30)
    assert certify.margins(f(x_adv), labels)[0] < 0
    assert certify.margins(f(x_adv), labels)[1] > 0
    delta = np.asarray(x_adv - x)
    norms = np.abs(delta).max(-1) if p == math.inf else np.linalg.norm(delta, axis=-1)
    assert np.all(norms <= eps * (1 + 1e-5))
    assert certify.attack_accuracy(f, x, labels, eps, p, jax.random.key(0), steps=30) == 0.5


@pytest.mark.parametrize("p", [2, math.inf])
def test_pgd_never_increases_accuracy_and_respects_the_certificate(p):
    key = jax.random.key(1)
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, (5, 16))
    w2 = jax.random.normal(k2, (16, 3))
    f = lambda x: jax.nn.relu(x @ w1) @ w2
    x = jax.random.normal(k3, (200, 5))
    labels = jnp.argmax(f(x), -1).at[:20].set(0)  # mostly correct, some wrong
    clean = certify.accuracy(f(x), labels)
    lip = float(np.linalg.norm(np.asarray(w1), 2) * np.linalg.norm(np.asarray(w2), 2))
    out_norm = 2
    if p == math.inf:  # ℓ∞ → ℓ∞ bound from the ∞→∞ norms
        lip = float(np.abs(np.asarray(w1)).sum(0).max() * np.abs(np.asarray(w2)).sum(0).max())
        out_norm = math.inf
    previous = clean
    for eps in (0.01, 0.05, 0.2, 0.5):
        attacked = certify.attack_accuracy(f, x, labels, eps, p, jax.random.key(2), steps=20)
        certified = certify.certified_accuracy(f(x), labels, eps, lip, output_norm=out_norm)
        assert certified <= attacked <= clean
        assert attacked <= previous + 0.02  # a larger ball does not make the model more accurate
        previous = attacked
    assert previous < 0.5 * clean  # the attack does break this unconstrained model


def test_lower_bound_search_recovers_a_linear_maps_norm():
    a = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
    x0 = jax.random.normal(jax.random.key(0), (4, 6))
    f = lambda x: x @ a
    for p, q, exact in [(2, 2, np.linalg.norm(a, 2)), (math.inf, math.inf, np.abs(a).sum(0).max()),
                        (2, math.inf, np.linalg.norm(a, axis=0).max())]:
        found = certify.jacobian_norm(f, x0, p, q)
        np.testing.assert_allclose(found, exact, rtol=1e-5)
        lower = certify.lipschitz_lower_bound(f, x0, p, q, jax.random.key(1), steps=10)
        assert 0.9 * exact <= lower <= exact * (1 + 1e-5)


def test_certified_radius_rejects_nonpositive_lipschitz():
    with pytest.raises(ValueError, match="lipschitz must be > 0"):
        certify.certified_radius(jnp.ones(2), 0.0, 2, 3)
