"""The toy pairs: samplers, and that the optimal critic attains the stated W1."""
import jax
import numpy as np
import pytest

from lipsort.data import toys as distributions


@pytest.mark.parametrize("name", list(distributions.PAIRS))
def test_pair_w1_is_attained_by_the_optimal_critic(name):
    pair = distributions.get_pair(name)
    kp, kq = jax.random.split(jax.random.PRNGKey(0))
    x_p = np.asarray(pair.sample_p(kp, 600))
    x_q = np.asarray(pair.sample_q(kq, 600))
    assert x_p.shape == x_q.shape == (600, pair.dim)
    gap = pair.optimal_critic(x_p).mean() - pair.optimal_critic(x_q).mean()
    exact = distributions.exact_w1_samples(x_p, x_q)
    # KR duality on the empirical measures: any 1-Lipschitz critic is ≤ exact OT.
    assert gap <= exact + 1e-6
    assert abs(gap - pair.true_w1) < 0.1 * pair.true_w1  # sampling noise only
    if name in ("cones", "cones_line", "point_pm1", "sphere128"):  # no sampling noise in these gaps
        assert gap == pytest.approx(pair.true_w1, rel=1e-5)
        assert exact == pytest.approx(pair.true_w1, rel=1e-5)


def test_gaussian_closed_form():
    # Equal spreads: W1 is the distance of the means; equal means: |Δσ|·√(2/π).
    assert distributions.gaussian_w1_1d(0.0, 1.0, 3.0, 1.0) == pytest.approx(3.0)
    assert distributions.gaussian_w1_1d(0.0, 1.0, 0.0, 2.0) == pytest.approx(np.sqrt(2 / np.pi))
    u = (np.arange(200_000) + 0.5) / 200_000
    from scipy.stats import norm

    quantile_gap = np.mean(np.abs(norm.ppf(u, 0, 1) - norm.ppf(u, 1, 0.5)))
    assert distributions.gaussian_w1_1d(0, 1, 1, 0.5) == pytest.approx(quantile_gap, rel=1e-3)


def test_unknown_pair():
    with pytest.raises(ValueError, match="Unknown distribution pair 'moons'"):
        distributions.get_pair("moons")
