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


# --- the strong attack -------------------------------------------------------------------


def _linear_apply(params, x):
    w, b = params
    return x @ w + b


def _linear_worst_margins(w, b, x, labels, eps, p):
    """Exact min over ‖δ‖_p ≤ ε of the margin of x ↦ xW + b: min_j m_j − ε‖w_y − w_j‖_dual."""
    logits = x @ w + b
    dual = 1 if p == math.inf else 2
    if w.shape[1] == 1:
        return (2 * labels - 1) * logits[:, 0] - eps * np.linalg.norm(w[:, 0], dual)
    worst = np.full(len(x), np.inf)
    for j in range(w.shape[1]):
        diff = w[:, labels] - w[:, [j]]  # (d, n): w_y − w_j per example
        value = logits[np.arange(len(x)), labels] - logits[:, j] - eps * np.linalg.norm(diff, dual, axis=0)
        worst = np.where(labels == j, worst, np.minimum(worst, value))
    return worst


@pytest.mark.parametrize("num_logits", [1, 3])
@pytest.mark.parametrize("p", [2, math.inf])
def test_strong_attack_reaches_the_exact_worst_margin_of_a_linear_model(p, num_logits):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, num_logits)).astype(np.float32)
    b = rng.normal(size=num_logits).astype(np.float32)
    x = rng.normal(size=(10, 5)).astype(np.float32)
    labels = rng.integers(0, max(num_logits, 2), size=10)  # some misclassified: they count too
    eps = 0.3
    exact = _linear_worst_margins(w, b, x, labels, eps, p)
    params = (jnp.asarray(w), jnp.asarray(b))
    key = jax.random.key(0)
    # batch_size 4 pads the last batch.
    found = certify.strong_attack_margins(_linear_apply, params, x, labels, eps, p, key, steps=40, restarts=3,
                                          batch_size=4)
    assert found.shape == (10,)
    np.testing.assert_allclose(found, exact, atol=1e-3)
    assert np.all(found >= exact - 1e-4)  # ‖δ‖_p ≤ ε holds: the analytic optimum cannot be beaten
    # Run 0 is the tables' attack at equal steps, key and batch size: never weaker than it.
    pgd = certify.pgd_worst_margins(_linear_apply, params, x, labels, eps, p, key, steps=40, batch_size=4)
    assert np.all(found <= pgd + 1e-5)


@pytest.mark.parametrize("p", [2, math.inf])
def test_targeted_runs_find_the_class_margin_pgd_misses(p):
    # Class 1 is the runner-up at x (margin 0.1) but moves slowly: ‖w_0 − w_1‖ = 0.1; class 2
    # is far (1.5) but fast: ‖w_0 − w_2‖ = 2.2 along the orthogonal axis. Within ε = 1 the
    # worst margin is 1.5 − 2.2 = −0.7 through class 2; margin PGD follows class 1 (its
    # steps never move along class 2's axis) and ends at 0.1 − 0.1 = 0 unless its random
    # start already lands where class 2 is the runner-up.
    w = jnp.array([[0.0, -0.1, 0.0], [0.0, 0.0, -2.2]])
    b = jnp.array([0.0, -0.1, -1.5])
    x = np.zeros((16, 2), np.float32)
    labels = np.zeros(16, int)
    key = jax.random.key(0)
    pgd = certify.pgd_worst_margins(_linear_apply, (w, b), x, labels, 1.0, p, key, steps=60)
    assert np.mean(pgd > -0.05) >= 0.5  # one random-start margin PGD mostly misses class 2
    untargeted = certify.strong_attack_margins(_linear_apply, (w, b), x, labels, 1.0, p, key, steps=60,
                                               restarts=1, targeted=False)
    np.testing.assert_allclose(untargeted, pgd, atol=1e-5)  # restarts=1, untargeted: the tables' attack
    strong = certify.strong_attack_margins(_linear_apply, (w, b), x, labels, 1.0, p, key, steps=60, restarts=1)
    np.testing.assert_allclose(strong, -0.7, atol=1e-3)  # the targeted run at class 2 finds it every time
    assert np.all(strong <= untargeted + 1e-6)


def test_strong_attack_report_counts_by_hand():
    clean = np.array([0.5, 0.3, -0.1, 0.2, 0.05, 0.4])
    strong = np.array([0.2, -0.01, -0.3, 0.1, 0.07, 0.1])  # 0.07 > clean 0.05: taken as 0.05
    certified = np.array([True, True, False, False, False, True])
    r = certify.strong_attack_report(clean, strong, certified)
    assert r["points"] == 6 and r["certified"] == 3
    assert r["broken_certified"] == 1  # example 1: certified yet broken (a bug signal)
    assert r["clean_accuracy"] == pytest.approx(5 / 6)
    assert r["attack_accuracy"] == pytest.approx(4 / 6)  # 0, 3, 4, 5 survive
    assert r["certified_accuracy"] == pytest.approx(3 / 6)
    assert r["gap"] == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="one entry per point"):
        certify.strong_attack_report(clean, strong[:5], certified)
    with pytest.raises(ValueError, match="restarts must be ≥ 1"):
        certify.strong_attack_margins(_linear_apply, (jnp.eye(2), jnp.zeros(2)), np.ones((2, 2)), np.zeros(2, int),
                                      0.1, 2, jax.random.key(0), restarts=0)


@pytest.mark.parametrize("norm,constraint", [("l2", "bjorck"), ("linf", "linf")])
def test_strong_attack_breaks_no_certified_point_of_a_constrained_model(norm, constraint):
    import ml_collections

    from lipsort import export
    from lipsort.models import build_model

    cfg = ml_collections.ConfigDict(dict(widths=[16, 16], activation="group_sort", group_size=4,
                                         constraint=constraint, lipschitz_constant=1.0, norm=norm))
    exported = export.export_model(build_model(cfg, 6, 4, seed=0))
    apply, params = export.export_apply(exported), export.export_params(exported)
    p_in, p_out = certify.io_norms(exported)
    lip = certify.lipschitz_upper_bound(exported)
    factor = certify.margin_factor(p_out, 4)
    x = np.asarray(jax.random.normal(jax.random.key(1), (40, 6)))
    logits = np.asarray(apply(params, jnp.asarray(x)))
    labels = np.argmax(logits, -1)
    labels[:4] = (labels[:4] + 1) % 4  # a few misclassified
    clean = np.asarray(certify.margins(logits, labels))
    eps = float(np.median(clean[clean > 0])) / (factor * lip)  # about half the correct points certified
    certified = clean > factor * lip * eps
    strong = certify.strong_attack_margins(apply, params, x, labels, eps, p_in, jax.random.key(2), steps=30,
                                           restarts=2, batch_size=16)
    # The certificate, pointwise: no margin drops by more than c·L·ε (so no certified point flips).
    assert np.all(strong >= clean - factor * lip * eps - 1e-5)
    r = certify.strong_attack_report(clean, strong, certified)
    assert r["certified"] > 0 and r["broken_certified"] == 0
    assert r["certified_accuracy"] <= r["attack_accuracy"] <= r["clean_accuracy"]
    if norm == "l2":  # the attack does break uncertified points (the random ∞-norm model is too flat to)
        assert r["attack_accuracy"] < r["clean_accuracy"]
