"""Losses for Lipschitz networks.

With a K-Lipschitz f, margins cannot grow without bound, so losses that keep pushing
them (cross-entropy, BCE) fight the constraint; hinge losses stop at a margin m and
let the network spend its capacity on the decision boundary (the blog post's point).

- ``multiclass_hinge``: (1/C) Σ_{j≠y} max(0, m − (f_y − f_j))  (as torch's MultiMarginLoss,
  used by the paper), averaged over the batch.
- ``hinge``: binary, labels in {0, 1} mapped to s = ±1: max(0, m − s·f).
- ``kr_dual``: the negated Kantorovich–Rubinstein objective −(E_P f − E_Q f); its minimum
  over 1-Lipschitz f is −W1(P, Q).
- ``hkr``: hinge-regularized KR, −(E_P f − E_Q f) + α · E max(0, m − s·f) (P: s = +1).
- ``bce``: binary cross-entropy on one logit, labels in {0, 1}.
- ``cross_entropy``: softmax cross-entropy with integer labels.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def _logit(logits: Array) -> Array:
    """One logit per example: (B,) or (B, 1) → (B,)."""
    logits = jnp.asarray(logits)
    if logits.ndim == 2 and logits.shape[-1] == 1:
        return logits[:, 0]
    if logits.ndim != 1:
        raise ValueError(f"a binary loss needs one logit per example, got shape {logits.shape}.")
    return logits


def _signs(labels: Array) -> Array:
    return 2.0 * jnp.asarray(labels, jnp.float32) - 1.0


def multiclass_hinge(logits: Array, labels: Array, margin: float = 1.0) -> Array:
    """Mean over the batch of (1/C) Σ_{j≠y} max(0, m − (f_y − f_j))."""
    num_classes = logits.shape[-1]
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    violations = jax.nn.relu(margin - (true - logits))
    violations = jnp.where(jax.nn.one_hot(labels, num_classes, dtype=bool), 0.0, violations)
    return jnp.mean(jnp.sum(violations, axis=-1) / num_classes)


def hinge(logits: Array, labels: Array, margin: float = 1.0) -> Array:
    """Binary hinge max(0, m − s·f) with s = 2y − 1, labels y ∈ {0, 1}."""
    return jnp.mean(jax.nn.relu(margin - _signs(labels) * _logit(logits)))


def kr_dual(f_p: Array, f_q: Array) -> Array:
    """−(E_P f − E_Q f): minimized by the Kantorovich–Rubinstein critic."""
    return -(jnp.mean(f_p) - jnp.mean(f_q))


def hkr(logits: Array, labels: Array, alpha: float = 10.0, margin: float = 1.0) -> Array:
    """−(E_{y=1} f − E_{y=0} f) + α · hinge (labels in {0, 1}; both classes in the batch)."""
    f = _logit(logits)
    pos = jnp.asarray(labels) == 1
    mean_pos = jnp.sum(jnp.where(pos, f, 0.0)) / jnp.maximum(jnp.sum(pos), 1)
    mean_neg = jnp.sum(jnp.where(pos, 0.0, f)) / jnp.maximum(jnp.sum(~pos), 1)
    return -(mean_pos - mean_neg) + alpha * hinge(logits, labels, margin)


def bce(logits: Array, labels: Array) -> Array:
    """Binary cross-entropy on one logit, labels in {0, 1}."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(_logit(logits), jnp.asarray(labels, jnp.float32)))


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Softmax cross-entropy with integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


# Classification losses by name: (logits, labels, **options) → scalar.
LOSSES: dict[str, Callable[..., Array]] = {
    "multiclass_hinge": multiclass_hinge,
    "hinge": hinge,
    "hkr": hkr,
    "bce": bce,
    "cross_entropy": cross_entropy,
}


def get_loss(name: str) -> Callable[..., Array]:
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; valid losses are: {', '.join(LOSSES)}.")
    return LOSSES[name]
