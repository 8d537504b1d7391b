"""Cheap training-time orthonormality: keep the parameter on the manifold by retraction.

Unrolled Björck (:func:`lipsort.orthogonal.bjorck` in every forward pass, gradients
through all its steps) redoes a whole orthonormalization per step, and backpropagates
through it: for a 1024 × 1024 kernel one Björck step is 2 n³ multiply-adds, ~8× the
layer's own forward matmul at batch 256. Training with 15 of them is ~40× slower than
an unconstrained network.

Retraction training instead keeps the *parameter itself* (near-)orthonormal:

1. the forward pass uses the kernel W as it is (no orthonormalization, plain gradient);
2. after each optimizer update W ← W + Δ, which leaves the manifold by O(‖Δ‖), a
   stop-gradient order-1 Björck step retracts it:

       W ← W (3I − WᵀW) / 2      (Gram on the smaller side: 2 matmuls, no backward).

Near the manifold Björck converges quadratically: with every σ² of W in [1 − r, 1 + r],
one step maps σ² to h(σ²), h(x) = x (3 − x)² / 4 (h(1) = 1 is the maximum, h' (1) = 0),
so the residual r = ‖WᵀW − I‖₂ becomes

       r' = 1 − min(h(1 − r), h(1 + r)) = ¾ r² + O(r³).

An Adam step at a typical learning rate moves a 1024-wide kernel by r ~ 1e-2..1e-1, so
one step (rarely two) brings the kernel back to r' ≲ 1e-4: the forward of the next step
sees an orthonormal kernel up to that residual, at the cost of ~one extra matmul pair per
layer per step and no backward through any iteration. Steps repeat while the predicted
r' exceeds ``tol`` (at most ``max_iters``), so a large step (a high learning rate, a
loaded checkpoint) is still handled; a matrix far from the manifold (r > 1/2) is first
divided by the certified bound of :func:`lipsort.orthogonal.certified_scale`, where
order-1 Björck converges for any full-rank start.

With ``lazy=True`` (riemannian mode, whose tangent updates leave the manifold only to
second order) nothing is done while the measured residual is ≤ ``tol``; past it, a
rank-16 correction of the residual's top eigen-directions (:func:`low_rank_correction`,
1/16 of a Björck step's multiply-adds at n = 1024) comes first, and Björck steps only if it was not enough.

r is estimated by power iteration on the symmetric matrix WᵀW − I (accurate to a few %
after 8 matvecs, O(n²) each, and inflated by 25 % to be safe): this is a training-time
monitor and a stopping rule, not a certificate. The certificate never depends on it: the
export finishes orthonormalization in float64 and bounds the exact norms
(:meth:`lipsort.layers.LipschitzDense.export_kernel`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lipsort.orthogonal import (
    HIGHEST,
    matmul,
    bjorck_step,
    certified_norm_from_gram,
    check_matrix,
    gram_matrix,
    rounding_safety,
    taylor_coefficients,
)

Array = jax.Array

# Taylor orders a retraction step may use (order p: p + 1 matmuls).
ORDERS = (1, 2, 3)
# The power-iteration estimate is a little low (measured 3–10 % on perturbed 1024-wide
# kernels); the stopping rule inflates it so the predicted residual stays an upper value.
ESTIMATE_SAFETY = 1.25
# Beyond this residual the quadratic model is poor and σ² may exceed 3 (order-1 Björck
# diverges there): rescale by the certified σ_max bound first.
FAR_FROM_MANIFOLD = 0.5
# Rank of the cheap correction lazy retraction tries before a Björck step.
LOW_RANK = 16


def step_residual_bound(r: Array, order: int = 1) -> Array:
    """Residual after one Björck step of Taylor order p from residual r ≤ 1/2.

    Order p maps σ² ↦ h_p(σ²) = σ² S_p(1 − σ²)² (S_p the partial sum of (1 − t)^{-1/2});
    |h_p(x) − 1| grows monotonically with |x − 1| on [1/2, 3/2], so the worst case over
    the band σ² ∈ [1 − r, 1 + r] is at one of its ends: ≈ ¾ r² (p = 1), ⅝ r³ (p = 2).
    """
    coeffs = taylor_coefficients(order, 0.5)

    def h(x):
        t = 1.0 - x
        s = sum(c * t**k for k, c in enumerate(coeffs))
        return x * s * s

    return jnp.maximum(jnp.abs(h(jnp.maximum(1.0 - r, 0.0)) - 1.0), jnp.abs(h(1.0 + r) - 1.0))


def symmetric_norm_estimate(a: Array, num_iters: int = 8) -> Array:
    """|λ|_max of a symmetric matrix by power iteration from a fixed start (no RNG).

    The start mixes a constant and an alternating vector so it is not orthogonal to a
    top eigenvector of the structured matrices training produces. A lower estimate of
    ‖A‖₂ (exact for the converged vector).
    """
    return _power_norm(lambda v: a @ v, a.shape[0], a.dtype, num_iters)


def _power_norm(matvec, n: int, dtype, num_iters: int) -> Array:
    """‖A‖₂ of a symmetric A given as a matvec, by power iteration from a fixed start."""
    idx = jnp.arange(n, dtype=dtype)
    v = 1.0 + 0.5 * jnp.cos(idx * 2.399963)  # golden-angle phase: no symmetry to hit
    v = v / jnp.linalg.norm(v)

    def step(_, v):
        w = matvec(v)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(dtype).tiny)

    v = jax.lax.fori_loop(0, num_iters, step, v)
    return jnp.linalg.norm(matvec(v))


def residual_estimate(w: Array, num_iters: int = 8) -> Array:
    """‖WᵀW − I‖₂ (Gram on the smaller side) by power iteration on matvecs, O(n²) a step.

    Never forms the Gram: v ↦ Wᵀ(Wv) − v (tall) or W(Wᵀv) − v (wide). A lower
    estimate, like :func:`symmetric_norm_estimate` (same fixed start).
    """
    w = jax.lax.stop_gradient(jnp.asarray(w))
    tall = w.shape[0] >= w.shape[1]
    # Row-vector products (v @ W) instead of Wᵀ @ v: no transposed copy of W per step.
    gram_minus_eye = (lambda v: (w @ v) @ w - v) if tall else (lambda v: w @ (v @ w) - v)
    return _power_norm(gram_minus_eye, min(w.shape), w.dtype, num_iters)


def _orthonormal_rows(y: Array) -> Array:
    """Orthonormal rows spanning those of ``y`` (r × n), from its r × r Gram.

    Q = S^{-1/2} Uᵀ Y with Y Yᵀ = U S Uᵀ, done twice (the second pass, on nearly
    orthonormal rows, fixes what rounding left of the first). Directions whose Gram
    eigenvalue is below 1e-6 of the largest are numerically rank-deficient: they become
    zero rows instead of amplified rounding. Chosen over a QR of the n × r block, which
    LAPACK on CPU makes several times slower than the products around it.
    """
    for _ in range(2):
        s, u = jnp.linalg.eigh(y @ y.T)  # ascending
        keep = s > jnp.maximum(1e-6 * s[-1], jnp.finfo(y.dtype).tiny)
        scale = jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, s, 1.0)), 0.0)
        y = scale[:, None] * (u.T @ y)
    return y


def low_rank_correction(w: Array, rank: int = LOW_RANK, *, sketch_iters: int = 1) -> Array:
    """W (I + E_r)^{-1/2} (tall; (I + E_r)^{-1/2} W wide), E_r ≈ the top-``rank`` part of E = WᵀW − I.

    After tangent updates the residual is E = Σ ΔᵢᵀΔᵢ over the updates since the last
    retraction (:mod:`lipsort.tangent`); gradients of a batch are nearly low-rank, so E is
    too: on the MNIST MLP of BENCHMARKS.md part c, these corrections replace every Björck
    step after the first few hundred updates. A randomized subspace iteration finds the top eigenpairs
    without forming E: Y = Ω E for a fixed (rank) × n Gaussian Ω, ``sketch_iters`` more
    products Y ← orth(Y) E, then Rayleigh–Ritz on the orthonormal rows Q of Y:
    Q E Qᵀ = Û Λ Ûᵀ, Ritz vectors V = Ûᵀ Q (rows). Each product with E is two
    (rank × n)·(n × m) matmuls through W, never a Gram, and

        W ← W − (W Vᵀ) diag(1 − (1 + λᵢ)^{-1/2}) V

    maps σᵢ² = 1 + λᵢ to 1 along V (exactly, for exact eigenvectors) and leaves the
    singular vectors, hence the polar factor, alone. Cost 2(sketch_iters + 3)·m·n·rank
    multiply-adds against 2·m·n² for a Björck step: 1/16 of it at rank 16, n = 1024
    (skinny products run less efficiently on CPU, so the time saved is less). What it leaves (≈ the (rank+1)-th eigenvalue of
    E) is for the caller to measure.
    """
    w = jax.lax.stop_gradient(jnp.asarray(w))
    tall = w.shape[0] >= w.shape[1]
    n = min(w.shape)
    rank = min(rank, n)
    # The subspace is kept as the *rows* of (rank × n) matrices and every product is
    # written so that no transposed copy of W is made (XLA on CPU otherwise copies W
    # for a Wᵀ·X product, which costs ~10× the product itself at rank 16).
    times_wt = lambda x: jnp.einsum("rn,mn->rm", x, w, precision=HIGHEST)  # X Wᵀ
    if tall:  # X E = (X Wᵀ) W − X
        apply_e = lambda x: matmul(times_wt(x), w) - x
    else:  # X E = (X W) Wᵀ − X
        apply_e = lambda x: jnp.einsum("rn,mn->rm", matmul(x, w), w, precision=HIGHEST) - x
    # A trace-time constant: no random numbers drawn inside the training step.
    omega = np.random.default_rng(0).standard_normal((rank, n)).astype(w.dtype)
    y = apply_e(jnp.asarray(omega))
    for _ in range(sketch_iters):
        y = apply_e(_orthonormal_rows(y))
    q = _orthonormal_rows(y)
    ritz = apply_e(q) @ q.T  # Q E Qᵀ
    lam, vecs = jnp.linalg.eigh(0.5 * (ritz + ritz.T))
    v = vecs.T @ q  # rows: Ritz vectors
    shrink = 1.0 - jax.lax.rsqrt(jnp.maximum(1.0 + lam, 0.25))  # 1 − (1 + λ)^{-1/2}; λ ≥ −¾ kept finite
    if tall:  # W − (W Vᵀ) diag(shrink) V
        return w - matmul(times_wt(v).T * shrink, v)
    return w - jnp.einsum("rm,rn->mn", v * shrink[:, None], matmul(v, w), precision=HIGHEST)


def retract(
    w: Array, tol: float = 5e-4, max_iters: int = 8, *, power_iters: int = 8, lazy: bool = False,
    low_rank: int = 0,
) -> tuple[Array, dict[str, Array]]:
    """Retracts a near-orthonormal matrix onto the Stiefel manifold (no gradient).

    Runs Björck steps (at least one; each of the cheapest order 1–3 that reaches ``tol``
    from the measured residual, else order 1) until the predicted residual
    ‖WᵀW − I‖₂ (Gram on the smaller side) after the step is ≤ ``tol``, at most
    ``max_iters``.

    ``lazy=True`` first measures the residual with :func:`residual_estimate` (O(n²), no
    Gram) and takes no step at all while it is ≤ ``tol``: for updates that leave the
    manifold only to second order (tangent gradients with SGD, :mod:`lipsort.tangent`)
    a Björck step is then needed once every many updates. With ``low_rank`` > 0, a
    residual past ``tol`` first gets :func:`low_rank_correction` of that rank and is
    measured again; Björck steps follow only if it is still past ``tol``.

    Returns:
      (w, stats): the retracted matrix and float32 scalars ``drift`` (the estimated
      residual on entry: how far the last update moved W off the manifold),
      ``residual`` (the predicted residual on exit), ``steps`` (Björck steps taken),
      ``matmuls`` (their n³ products: 2 for an order-1 step, 3 for order 2, 4 for order 3)
      and ``corrections`` (1 when a low-rank correction ran).
    """
    w = jax.lax.stop_gradient(jnp.asarray(w))
    check_matrix(w)
    safety = rounding_safety(w)
    eye = jnp.eye(min(w.shape), dtype=w.dtype)

    def cond(carry):
        _, r, _, i, _ = carry
        return (r > tol) & (i < max_iters)

    def body(carry):
        w, _, drift, i, matmuls = carry
        gram = gram_matrix(w)
        r_now = ESTIMATE_SAFETY * symmetric_norm_estimate(gram - eye, power_iters)
        far = r_now > FAR_FROM_MANIFOLD
        s = jnp.where(far, certified_norm_from_gram(gram, safety), 1.0)
        w, gram = w / s, gram / (s * s)
        # The cheapest Taylor order (p + 1 matmuls) that reaches tol in this step; order 1
        # (and another step) when none does.
        bounds = jnp.stack([step_residual_bound(r_now, p) for p in ORDERS])
        choice = jnp.where(far, 0, jnp.argmax(jnp.append(bounds <= tol, True)) % len(ORDERS))
        branches = [lambda w, g, p=p: bjorck_step(w, g, taylor_coefficients(p, 0.5)) for p in ORDERS]
        w = jax.lax.switch(choice, branches, w, gram)
        # After a rescale r_now no longer describes W: measure again next iteration.
        r_next = jnp.where(far, jnp.inf, bounds[choice])
        matmuls = matmuls + 2 + choice
        drift = jnp.where(i == 0, r_now, drift)
        return w, r_next, drift, i + 1, matmuls

    zero = jnp.asarray(0, jnp.int32)

    def full(w, _):
        init = (w, jnp.asarray(jnp.inf, w.dtype), jnp.asarray(0.0, w.dtype), zero, zero)
        return jax.lax.while_loop(cond, body, init)

    if lazy:
        r0 = ESTIMATE_SAFETY * residual_estimate(w, power_iters)
        skip = lambda w, r0: (w, r0, r0, zero, zero)
        if low_rank:
            def corrected(w, r0):
                w = low_rank_correction(w, low_rank)
                r1 = ESTIMATE_SAFETY * residual_estimate(w, power_iters)
                w, r, _, steps, matmuls = jax.lax.cond(r1 > tol, full, skip, w, r1)
                return w, r, r0, steps, matmuls
        else:
            corrected = full
        w, r, drift, steps, matmuls = jax.lax.cond(r0 > tol, corrected, skip, w, r0)
    else:
        w, r, drift, steps, matmuls = full(w, None)
    corrections = (r0 > tol) if lazy and low_rank else jnp.asarray(False)
    return w, {"drift": drift, "residual": r, "steps": steps.astype(jnp.float32),
               "matmuls": matmuls.astype(jnp.float32), "corrections": corrections.astype(jnp.float32)}
