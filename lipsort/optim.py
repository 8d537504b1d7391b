"""Optimizers by name, each with its declared and validated fields of ``config.train``.

=====================  =====================  =====================================
``train.optimizer``    fields (default)       what it is
=====================  =====================  =====================================
``adam``               b1 (0.9), b2 (0.999)   optax.adam
``sgd``                momentum (0.0)         optax.sgd (heavy ball when momentum > 0)
``riemannian_adam``    b1 (0.9), b2 (0.999)   one second moment per orthonormal kernel
                                              (:mod:`lipsort.riemannian_adam`)
=====================  =====================  =====================================

``train.learning_rate`` (> 0) and ``train.schedule`` (``constant``, or ``cosine`` over
``train.num_steps`` down to 1 %) apply to all of them. A field of another optimizer set
to a non-default value is an error (it would be silently ignored). Every loop (the
generic one, the GAN, the benchmark) builds its optimizer with :func:`make_optimizer`.

To add an optimizer: one :class:`Optimizer` entry in :data:`OPTIMIZERS`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import optax

from lipsort import riemannian_adam


@dataclasses.dataclass(frozen=True)
class Field:
    """A numeric field of ``config.train``: its default and the open/closed range it lies in."""

    default: float
    low: float
    high: float
    low_closed: bool = True

    def problem(self, name: str, value) -> str | None:
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and (value >= self.low if self.low_closed else value > self.low) and value < self.high)
        if ok:
            return None
        bracket = "[" if self.low_closed else "("
        return f"config.train.{name} must be a number in {bracket}{self.low:g}, {self.high:g}), got {value!r}."


BETA = Field(0.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One entry: its fields and ``build(learning_rate, values, manifold_mask)``."""

    fields: dict[str, Field]
    build: Callable[[Any, dict[str, float], Any], optax.GradientTransformation]
    needs_manifold_mask: bool = False


def _riemannian_adam(lr, values, manifold_mask):
    if manifold_mask is None:
        raise ValueError("optimizer 'riemannian_adam' needs the manifold_mask of the model's parameters "
                         "(lipsort.riemannian_adam.tangent_kernel_mask(model, params)).")
    return riemannian_adam.riemannian_adam(lr, manifold_mask, b1=values["b1"], b2=values["b2"])


_ADAM_FIELDS = {"b1": dataclasses.replace(BETA, default=0.9), "b2": dataclasses.replace(BETA, default=0.999)}

OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer(_ADAM_FIELDS, lambda lr, v, mask: optax.adam(lr, b1=v["b1"], b2=v["b2"])),
    "sgd": Optimizer({"momentum": BETA}, lambda lr, v, mask: optax.sgd(lr, momentum=v["momentum"] or None)),
    # One second moment per orthonormal kernel: keeps riemannian-mode updates tangent.
    "riemannian_adam": Optimizer(_ADAM_FIELDS, _riemannian_adam, needs_manifold_mask=True),
}
SCHEDULES = ("constant", "cosine")


def _get(cfg, key, default=None):
    return cfg.get(key, default) if cfg is not None and hasattr(cfg, "get") else default


def optimizer_name(train) -> str:
    return _get(train, "optimizer", "adam")


def validate(train) -> list[str]:
    """Every problem with the optimizer fields of ``config.train``, as messages."""
    name = optimizer_name(train)
    if name not in OPTIMIZERS:
        return [f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}."]
    errors = []
    lr = _get(train, "learning_rate")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        errors.append(f"config.train.learning_rate must be a finite number > 0, got {lr!r}.")
    if _get(train, "schedule", "constant") not in SCHEDULES:
        errors.append(f"Unknown schedule {_get(train, 'schedule')!r}; valid: {', '.join(SCHEDULES)}.")
    own = OPTIMIZERS[name].fields
    for other_name, other in OPTIMIZERS.items():
        for field_name, field in other.fields.items():
            if field_name in own or _get(train, field_name) is None:
                continue
            value = _get(train, field_name)
            if value != field.default and not field.problem(field_name, value):
                errors.append(f"config.train.{field_name}={value} applies to optimizer {other_name!r} only "
                              f"(got optimizer {name!r}); remove it or use {other_name!r}.")
            elif field.problem(field_name, value):
                errors.append(field.problem(field_name, value))
    for field_name, field in own.items():
        problem = field.problem(field_name, _get(train, field_name, field.default))
        if problem:
            errors.append(problem)
    return errors


def make_optimizer(train, manifold_mask=None) -> optax.GradientTransformation:
    """The optax optimizer of ``config.train`` (validated by :func:`validate` first).

    ``manifold_mask`` (:func:`lipsort.riemannian_adam.tangent_kernel_mask`) tells
    ``riemannian_adam`` which parameters are orthonormal kernels; it is required for it.
    """
    errors = validate(train)
    if errors:
        raise ValueError("; ".join(errors))
    lr = float(train.learning_rate)
    if _get(train, "schedule", "constant") == "cosine":
        lr = optax.cosine_decay_schedule(lr, int(train.num_steps), alpha=0.01)
    entry = OPTIMIZERS[optimizer_name(train)]
    values = {k: float(_get(train, k, f.default)) for k, f in entry.fields.items()}
    return entry.build(lr, values, manifold_mask)
