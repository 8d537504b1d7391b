"""Norm constraints for ∞-norm layers and exact operator norms.

Kernel convention (the one place it is documented)
--------------------------------------------------
A layer computes ``y = x @ kernel + bias`` with ``kernel`` of shape ``(in, out)``.
The math of the paper writes ``y = W x`` with W of shape (out, in), so W = kernelᵀ:
a *row* of W — the weights of one output unit — is a *column* of the kernel,
``kernel[:, j]``. All functions here take kernels and act per output unit, i.e. per
column.

Operator norms of x ↦ x @ kernel between ℓp (inputs) and ℓq (outputs):

    ‖·‖_{2→2}  = σ_max(kernel)
    ‖·‖_{∞→∞}  = max_j Σ_i |kernel[i, j]|       (max ℓ1 norm of an output unit)
    ‖·‖_{2→∞}  = max_j ‖kernel[:, j]‖₂          (the "(2,∞)" norm of the paper)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _check_kernel(w: Array) -> None:
    if w.ndim != 2:
        raise ValueError(
            f"kernel must be a 2-D matrix of shape (in, out), got shape {tuple(w.shape)}."
        )


def _project_unit_l1(v: Array, radius: Array) -> Array:
    """Euclidean projection of one vector onto {‖x‖₁ ≤ radius} (Duchi et al., 2008).

    θ = (Σ_{j≤ρ} u_j − r)/ρ with u = sort(|v|) descending and ρ the largest j with
    u_j > (Σ_{i≤j} u_i − r)/j; the projection is sign(v)·max(|v| − θ, 0). A vector
    already inside the ball is returned unchanged.
    """
    a = jnp.abs(v)
    u = jnp.sort(a)[::-1]
    css = jnp.cumsum(u)
    j = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    active = u * j > css - radius
    rho = jnp.sum(active)  # the active set is a prefix, so its size is ρ
    theta = (css[rho - 1] - radius) / rho.astype(v.dtype)
    projected = jnp.sign(v) * jnp.maximum(a - theta, 0.0)
    return jnp.where(jnp.sum(a) <= radius, v, projected)


def project_linf(w: Array, radius: float = 1.0) -> Array:
    """Projects each output unit (kernel column) onto the ℓ1 ball of ``radius``.

    Afterwards ‖x ↦ x @ w‖_{∞→∞} = max column ℓ1 norm ≤ radius. The projection is the
    exact Euclidean one, so it is idempotent and leaves units inside the ball unchanged.
    """
    w = jnp.asarray(w)
    _check_kernel(w)
    if isinstance(radius, (int, float)) and not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    radius = jnp.asarray(radius, w.dtype)
    return jax.vmap(_project_unit_l1, in_axes=(1, None), out_axes=1)(w, radius)


def normalize_two_inf(w: Array, eps: float = 1e-12) -> Array:
    """Scales each output unit (kernel column) to unit ℓ2 norm: ‖·‖_{2→∞} = 1.

    The first layer of an ∞-norm network that must be Lipschitz in ℓ2 (the paper's
    (2,∞) constraint). Units are normalized exactly (not merely clipped), which keeps
    the gradient norm of each unit at 1.
    """
    w = jnp.asarray(w)
    _check_kernel(w)
    norms = jnp.linalg.norm(w, axis=0, keepdims=True)
    return w / jnp.maximum(norms, eps)


_NORM_ALIASES = {2: 2, "2": 2, "l2": 2, math.inf: math.inf, "inf": math.inf, "linf": math.inf}


def _parse_p(p, name: str) -> float:
    try:
        return _NORM_ALIASES[p]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be 2 or inf (also 'l2', 'linf'), got {p!r}.") from None


def operator_norm(w, p, q=None) -> float:
    """Exact operator norm of x ↦ x @ w from ℓp to ℓq, in float64 (q defaults to p).

    Supported: (2, 2) largest singular value; (inf, inf) max column ℓ1 norm;
    (2, inf) max column ℓ2 norm. Used for certificates, so it is computed with
    numpy in float64 regardless of the input dtype.
    """
    p = _parse_p(p, "p")
    q = p if q is None else _parse_p(q, "q")
    w = np.asarray(w, dtype=np.float64)
    _check_kernel(w)
    if (p, q) == (2, 2):
        return float(np.linalg.norm(w, ord=2)) if w.size else 0.0
    if (p, q) == (math.inf, math.inf):
        return float(np.abs(w).sum(axis=0).max(initial=0.0))
    if (p, q) == (2, math.inf):
        return float(np.sqrt((w * w).sum(axis=0)).max(initial=0.0))
    raise ValueError(f"operator norm from ℓ{p} to ℓ{q} is not supported; use (2,2), (inf,inf) or (2,inf).")
