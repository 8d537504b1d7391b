"""Toy distribution pairs (P, Q) whose Wasserstein-1 distance is known exactly.

W1(P, Q) = inf over couplings E‖x − y‖₂ = sup over 1-Lipschitz f of E_P f − E_Q f
(Kantorovich–Rubinstein). Each pair below gives W1 in closed form together with an
optimal critic f*, which proves the value: E_P f* − E_Q f* reaches it, and a coupling
of the same cost exists.

==================  ====  ==============================================  =========
name                dim   P, Q                                            W1
==================  ====  ==============================================  =========
``point_pm1``       1     δ₀  vs  uniform on {−1, +1}                      1  (f* = −|x|)
``cones``           2     3 point masses a_i (equilateral, |a_i| = 2)      r  (f* = −min_i ‖x − a_i‖,
                          vs uniform on the circles ‖x − a_i‖ = r = 0.5       three cones)
``cones_line``      2     the paper's three cones: a_i = (−2, 0), (0, 0),  1  (f* = −min_i ‖x − a_i‖)
                          (2, 0) vs the circles ‖x − a_i‖ = 1 (they touch)
``sphere128``       128   δ₀  vs  uniform on the unit sphere S¹²⁷          1  (f* = −‖x‖)
``translate``       2     N(0, 0.5² I)  vs  its translate by v = (1.2, 1.6)  ‖v‖ = 2 (f* = −v·x/‖v‖)
``gaussians_1d``    1     N(0, 1)  vs  N(1, 0.5²)                           E|a + bZ| (f* = |x − 2|)
==================  ====  ==============================================  =========

For 1-D Gaussians W1 = ∫₀¹ |F_P⁻¹(u) − F_Q⁻¹(u)| du = E|a + bZ| with a = μ_P − μ_Q,
b = σ_P − σ_Q, Z ~ N(0, 1): W1 = |b|·√(2/π)·exp(−a²/2b²) + a·(1 − 2Φ(−a/|b|)).

For both cone pairs every circle point is at distance exactly r from its own centre and at
least r from the others (the circles of ``cones_line`` touch but do not cross), so
moving each point to its centre costs r and f* shows that nothing cheaper exists.

The cones are sampled *stratified* (sample i goes to cluster i mod 3), so the empirical
measures of n = 3k samples still have W1 exactly r and the estimate has no cluster-count
noise. Samplers are pure JAX functions of (key, n), so they run inside a jitted step.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Sampler = Callable[[Array, int], Array]


@dataclasses.dataclass(frozen=True)
class Pair:
    """A pair of distributions with a known W1 (``true_w1``) and an optimal critic."""

    name: str
    dim: int
    sample_p: Sampler
    sample_q: Sampler
    true_w1: float
    optimal_critic: Callable[[np.ndarray], np.ndarray]
    description: str


def gaussian_w1_1d(mu_p: float, sigma_p: float, mu_q: float, sigma_q: float) -> float:
    """Closed-form W1 between N(μ_P, σ_P²) and N(μ_Q, σ_Q²) on the line."""
    a, b = mu_p - mu_q, abs(sigma_p - sigma_q)
    if b == 0:
        return abs(a)
    phi = 0.5 * math.erfc(a / b / math.sqrt(2.0))  # Φ(−a/b)
    return b * math.sqrt(2.0 / math.pi) * math.exp(-a * a / (2 * b * b)) + a * (1 - 2 * phi)


# --- the pairs ------------------------------------------------------------------------


def _point_mass(dim: int) -> Sampler:
    return lambda key, n: jnp.zeros((n, dim), jnp.float32)


def _pm1(key: Array, n: int) -> Array:
    return jnp.where(jax.random.bernoulli(key, 0.5, (n, 1)), 1.0, -1.0).astype(jnp.float32)


def _sphere(dim: int) -> Sampler:
    def sample(key, n):
        z = jax.random.normal(key, (n, dim), jnp.float32)
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

    return sample


CONE_CENTERS = np.array(
    [[2.0 * math.cos(t), 2.0 * math.sin(t)] for t in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)],
    np.float32,
)
CONE_RADIUS = 0.5
# The paper's three cones (LNets' three_cones_experiment): collinear centres, radius 1.
LINE_CONE_CENTERS = np.array([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]], np.float32)
LINE_CONE_RADIUS = 1.0


def _cone_pair(name: str, centers: np.ndarray, radius: float, description: str) -> "Pair":
    """Point masses at ``centers`` vs uniform on the circles of ``radius`` around them
    (W1 = radius, optimal critic −min_i ‖x − a_i‖); sample j goes to centre j mod len(centers)."""
    k = len(centers)

    def at_centers(n: int) -> Array:
        return jnp.asarray(centers)[jnp.arange(n) % k]

    def circles(key: Array, n: int) -> Array:
        theta = jax.random.uniform(key, (n,), jnp.float32, 0.0, 2 * math.pi)
        return at_centers(n) + radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)

    def critic(x: np.ndarray) -> np.ndarray:
        return -np.min(np.linalg.norm(x[:, None, :] - centers[None], axis=-1), axis=1)

    return Pair(name, 2, lambda key, n: at_centers(n), circles, radius, critic, description)


TRANSLATE_V = np.array([1.2, 1.6], np.float32)
TRANSLATE_SIGMA = 0.5


def _gaussian(mean, sigma: float, dim: int) -> Sampler:
    mean = jnp.asarray(mean, jnp.float32)
    return lambda key, n: mean + sigma * jax.random.normal(key, (n, dim), jnp.float32)


GAUSS_P, GAUSS_Q = (0.0, 1.0), (1.0, 0.5)  # (μ, σ)

PAIRS: dict[str, Pair] = {
    "point_pm1": Pair(
        "point_pm1", 1, _point_mass(1), _pm1, 1.0,
        lambda x: -np.abs(x[:, 0]), "δ₀ vs uniform{−1, +1}",
    ),
    "cones": _cone_pair("cones", CONE_CENTERS, CONE_RADIUS, "3 point masses vs circles of radius 0.5 around them"),
    "cones_line": _cone_pair("cones_line", LINE_CONE_CENTERS, LINE_CONE_RADIUS,
                             "3 collinear point masses (x = −2, 0, 2) vs circles of radius 1 around them"),
    "sphere128": Pair(
        "sphere128", 128, _point_mass(128), _sphere(128), 1.0,
        lambda x: -np.linalg.norm(x, axis=-1), "δ₀ vs uniform on the unit sphere in R^128",
    ),
    "translate": Pair(
        "translate", 2, _gaussian(np.zeros(2), TRANSLATE_SIGMA, 2),
        _gaussian(TRANSLATE_V, TRANSLATE_SIGMA, 2), math.hypot(1.2, 1.6),
        lambda x: -(x @ TRANSLATE_V) / np.linalg.norm(TRANSLATE_V), "N(0, 0.5² I) vs its translate by (1.2, 1.6)",
    ),
    "gaussians_1d": Pair(
        "gaussians_1d", 1, _gaussian([GAUSS_P[0]], GAUSS_P[1], 1), _gaussian([GAUSS_Q[0]], GAUSS_Q[1], 1),
        gaussian_w1_1d(GAUSS_P[0], GAUSS_P[1], GAUSS_Q[0], GAUSS_Q[1]),
        # The monotone map T(x) = 1 + x/2 is optimal; it moves mass right for x < 2 and
        # left for x > 2, so f*' = −sign(T(x) − x): f*(x) = |x − 2|.
        lambda x: np.abs(x[:, 0] - 2.0), "N(0, 1) vs N(1, 0.5²)",
    ),
}


def get_pair(name: str) -> Pair:
    if name not in PAIRS:
        raise ValueError(f"Unknown distribution pair {name!r}; valid pairs are: {', '.join(PAIRS)}.")
    return PAIRS[name]


def exact_w1_samples(x_p: np.ndarray, x_q: np.ndarray) -> float:
    """Exact optimal transport cost between two empirical measures (uniform weights),
    Euclidean ground cost, via POT's network simplex ``ot.emd2`` in float64."""
    import ot

    x_p, x_q = np.asarray(x_p, np.float64), np.asarray(x_q, np.float64)
    cost = ot.dist(x_p, x_q, metric="euclidean")
    a = np.full(len(x_p), 1.0 / len(x_p))
    b = np.full(len(x_q), 1.0 / len(x_q))
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))
