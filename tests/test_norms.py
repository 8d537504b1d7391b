import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lipsort import norms, normalize_two_inf, operator_norm, project_linf


def reference_l1_projection(v, radius):
    """Independent reference: bisection on θ in Σ max(|v_i| − θ, 0) = r."""
    v = np.asarray(v, np.float64)
    if np.abs(v).sum() <= radius:
        return v
    lo, hi = 0.0, np.abs(v).max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(np.abs(v) - mid, 0).sum() > radius:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


# A few fixed shapes keep jit recompilation (the slow part on CPU) to a minimum.
kernels = arrays(
    np.float64, st.sampled_from([(1, 3), (5, 4), (7, 2)]),
    elements=st.floats(-4, 4, allow_nan=False, width=32),
)


@given(kernels, st.sampled_from([0.5, 1.0, 3.0]))
def test_project_linf_matches_reference_and_is_idempotent(w, radius):
    with jax.enable_x64(True):
        out = np.asarray(project_linf(jnp.asarray(w), radius))
        again = np.asarray(project_linf(jnp.asarray(out), radius))
    ref = np.stack([reference_l1_projection(w[:, j], radius) for j in range(w.shape[1])], axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-9)
    np.testing.assert_allclose(again, out, atol=1e-12)
    assert np.abs(out).sum(axis=0).max() <= radius * (1 + 1e-12)


def test_project_linf_keeps_units_inside_the_ball():
    w = jnp.array([[0.2, 3.0], [-0.3, -1.0], [0.1, 0.5]])
    out = project_linf(w)
    np.testing.assert_array_equal(out[:, 0], w[:, 0])  # ℓ1 = 0.6 ≤ 1: unchanged
    np.testing.assert_allclose(float(jnp.abs(out[:, 1]).sum()), 1.0, rtol=1e-6)


def test_project_linf_is_exact_on_trained_like_kernels_and_stops_on_nan():
    """Sparse, heavy-tailed columns (one entry dominating, or ℓ1 barely above the radius)
    are where the Newton/Michelot rounds are many; the result must still be the exact
    projection, and a NaN must end the loop rather than spin it."""
    rng = np.random.default_rng(0)
    w = rng.standard_cauchy((64, 12)) * (rng.random((64, 12)) < 0.3)
    w[:, 0] = 0.0
    w[3, 1] = 50.0  # one entry dominating
    w[:, 2] *= 1.0 / np.abs(w[:, 2]).sum() * (1 + 1e-9)  # ℓ1 barely above 1
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(project_linf)(jnp.asarray(w)))
    ref = np.stack([reference_l1_projection(w[:, j], 1.0) for j in range(w.shape[1])], axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-9)
    bad = jnp.array([[jnp.nan, 3.0], [2.0, 1.0]], jnp.float32)
    assert np.isnan(np.asarray(project_linf(bad))[:, 0]).any()
    np.testing.assert_allclose(np.asarray(project_linf(bad))[:, 1], [1.0, 0.0], atol=1e-6)


def test_project_linf_is_differentiable_and_jittable():
    w = jax.random.normal(jax.random.key(0), (6, 3))
    g = jax.jit(jax.grad(lambda w: jnp.sum(project_linf(w) ** 2)))(w)
    assert np.all(np.isfinite(g))


def test_normalize_two_inf():
    w = jax.random.normal(jax.random.key(1), (5, 4)) * 3
    out = normalize_two_inf(w)
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(operator_norm(out, 2, np.inf), 1.0, rtol=1e-6)


def brute_force_linf(w):
    """max over the vertices of the ℓ∞ ball of ‖x @ w‖∞ (exact for a convex objective)."""
    return max(np.abs(np.array(s) @ w).max() for s in itertools.product([-1, 1], repeat=w.shape[0]))


@given(kernels)
def test_operator_norms_are_exact(w):
    assert operator_norm(w, "inf") == pytest.approx(brute_force_linf(w), rel=1e-12, abs=1e-12)
    assert operator_norm(w, 2) == pytest.approx(np.linalg.svd(w, compute_uv=False).max(), rel=1e-12)
    # ℓ2 → ℓ∞ is attained at x = w_j / ‖w_j‖ for the longest unit.
    assert operator_norm(w, 2, math.inf) == pytest.approx(np.linalg.norm(w, axis=0).max(), rel=1e-12)
    assert operator_norm(w, 2) <= operator_norm(w.astype(np.float32), 2) * (1 + 1e-6) + 1e-6


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: operator_norm(np.ones((2, 2)), 1), "p must be 2 or inf"),
        (lambda: operator_norm(np.ones((2, 2)), np.inf, 2), "not supported"),
        (lambda: operator_norm(np.ones(3), 2), "must be a 2-D matrix"),
        (lambda: project_linf(jnp.ones((2, 2, 2))), "must be a 2-D matrix"),
        (lambda: project_linf(jnp.ones((2, 2)), radius=-1.0), "radius must be positive"),
        (lambda: normalize_two_inf(jnp.ones(2)), "must be a 2-D matrix"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _near_orthonormal(shape, seed, scale=1.0, noise=1e-7):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(max(shape), min(shape))))
    q = q if shape[0] >= shape[1] else q.T
    return (scale * q * (1 + noise * rng.normal(size=shape))).astype(np.float32)


@pytest.mark.parametrize("shape", [(96, 80), (80, 96), (70, 3)])
def test_certified_spectral_norm_is_an_upper_bound_and_tight(shape):
    rng = np.random.default_rng(sum(shape))
    for w in (_near_orthonormal(shape, 1), rng.normal(size=shape), np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1]))):
        exact = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False).max()
        bound = norms.certified_spectral_norm(w)
        assert exact <= bound <= exact * (1 + 1e-9)
        assert operator_norm(w, 2) == bound  # the certificate is this function, cached or not
    assert norms.certified_spectral_norm(np.zeros((80, 96))) == 0.0
    assert norms.certified_spectral_norm(np.full((4, 3), np.inf)) == math.inf


def test_certification_rejects_a_candidate_below_lambda_max():
    w = np.random.default_rng(0).normal(size=(90, 70))
    gram = w.T @ w
    lam = np.linalg.eigvalsh(gram)[-1]
    assert norms._certify_lambda_max(gram, lam * (1 - 1e-9)) is None
    assert lam <= norms._certify_lambda_max(gram, lam * (1 + 1e-12)) <= lam * (1 + 1e-11)


def test_the_spectral_norm_cache_is_keyed_by_the_bytes():
    w = _near_orthonormal((96, 80), 2)
    first = norms.certified_spectral_norm(w)
    w[3, 5] *= 4.0  # same object, new bytes: recomputed
    assert norms.certified_spectral_norm(w) == norms._spectral_norm_upper(w) > first


def test_sigma_max_estimate_and_normalize_spectral():
    rng = np.random.default_rng(3)
    for w in (_near_orthonormal((96, 80), 3, scale=2.5), rng.normal(size=(80, 96))):
        exact = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False).max()
        assert norms.sigma_max_estimate(w) == pytest.approx(exact, rel=1e-7)
        assert np.linalg.norm(norms.normalize_spectral(w), 2) == pytest.approx(1.0, rel=1e-7)


def test_numpy_projections_match_the_jax_ones():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(9, 6)) * np.array([0.01, 0.05, 0.3, 1.0, 3.0, 0.0])  # inside, outside, zero units
    with jax.enable_x64(True):
        ref_linf = np.asarray(project_linf(jnp.asarray(w), 0.7))
        ref_two = np.asarray(normalize_two_inf(jnp.asarray(w)))
        ref_sphere = np.asarray(norms.project_l1_sphere(jnp.asarray(w), 0.7))
    np.testing.assert_allclose(norms.project_l1_sphere_numpy(w, 0.7), ref_sphere, atol=1e-12)
    np.testing.assert_allclose(norms.project_linf_numpy(w, 0.7), ref_linf, atol=1e-12)
    np.testing.assert_allclose(norms.normalize_two_inf_numpy(w), ref_two, atol=1e-12)
    assert np.abs(norms.project_linf_numpy(w, 0.7)).sum(axis=0).max() <= 0.7 * (1 + 1e-12)
