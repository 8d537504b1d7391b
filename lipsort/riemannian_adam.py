"""Adam that keeps updates tangent to the orthonormal manifold: one second moment per kernel.

Adam divides every coordinate of its momentum m by its own √v. On an orthonormal kernel
K that per-coordinate rescaling is not a map of the tangent space into itself: even when
every gradient is tangent (``bjorck_training="riemannian"``, :mod:`lipsort.tangent`),
D m / √v leaves the manifold to *first* order, by ‖sym(Kᵀ Δ)‖ ~ lr·√n per update, and a
Björck retraction (2 n³ multiply-adds, more than the whole unconstrained training step
at batch 256) is needed after every update.

Adaptivity per coordinate has no meaning on a manifold anyway. Riemannian Adam
(Bécigneul & Ganea, "Riemannian Adaptive Optimization Methods", ICLR 2019) adapts per
*manifold* of a product: each orthonormal kernel is one factor, so its second moment is
one number, the running mean of the squared Riemannian gradient norm,

    m ← β₁ m + (1 − β₁) g,     v ← β₂ v + (1 − β₂) ‖g‖²_F / (in·out),
    Δ = −lr · m̂ / (√v̂ + ε)      (m̂, v̂ bias-corrected as in Adam),

(divided by the kernel's size so that lr means what it does for Adam: an update entry
of about lr). Δ is a positive multiple of m, a running sum of tangent gradients: tangent
up to the kernel's motion since those gradients were taken (no vector transport: a
second-order term), so a tangent update leaves the manifold only by ΔᵀΔ and the lazy
retraction of riemannian mode runs rarely, as with SGD. Every other parameter (biases,
unconstrained layers) gets plain Adam.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Array = jax.Array


class RiemannianAdamState(NamedTuple):
    count: Array  # updates so far (int32), for the bias corrections
    mu: Any  # first moments, shaped like the parameters
    nu: Any  # second moments: a scalar for a manifold kernel, elementwise otherwise


def scale_by_riemannian_adam(
    manifold_mask: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam's m̂ / (√v̂ + ε) with one v per leaf where ``manifold_mask`` is True.

    Args:
      manifold_mask: a pytree of bools shaped like the parameters, True for kernels on
        the orthonormal manifold (:func:`tangent_kernel_mask`).
    """

    def init(params):
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(lambda p, on: jnp.zeros((), p.dtype) if on else jnp.zeros_like(p), params, manifold_mask)
        return RiemannianAdamState(jnp.zeros((), jnp.int32), mu, nu)

    def update(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        square = lambda g, on: jnp.mean(jnp.square(g)) if on else jnp.square(g)
        nu = jax.tree.map(lambda v, g, on: b2 * v + (1 - b2) * square(g, on), state.nu, updates, manifold_mask)
        c1, c2 = 1 - b1 ** count.astype(jnp.float32), 1 - b2 ** count.astype(jnp.float32)
        out = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
        return out, RiemannianAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def riemannian_adam(
    learning_rate: optax.ScalarOrSchedule, manifold_mask: Any, b1: float = 0.9, b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Riemannian Adam (module docstring): :func:`scale_by_riemannian_adam`, then −lr."""
    return optax.chain(scale_by_riemannian_adam(manifold_mask, b1, b2, eps), optax.scale_by_learning_rate(learning_rate))


def tangent_kernel_mask(model: nnx.Module, params: Any) -> Any:
    """True at the kernels of ``model``'s riemannian-mode Björck layers, False elsewhere.

    ``params`` is ``nnx.split(model, nnx.Param, ...)[1]``; the result has its structure.
    """
    from lipsort.layers import LipschitzDense  # layers imports nothing from here

    tangent_layers = {
        tuple(path) for path, module in nnx.iter_graph(model)
        if isinstance(module, LipschitzDense) and module.tangent_gradient
    }

    def on_manifold(keypath, _):
        keys = tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in keypath)
        keys = keys[:-1] if keys and keys[-1] == "value" else keys  # nnx.Param's own node
        return bool(keys) and keys[-1] == "kernel" and keys[:-1] in tangent_layers

    return jax.tree_util.tree_map_with_path(on_manifold, params)
