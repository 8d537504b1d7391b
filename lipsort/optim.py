"""Optimizers by name, each with its declared and validated fields of ``config.train``.

=====================  =====================  =====================================
``train.optimizer``    fields (default)       what it is
=====================  =====================  =====================================
``adam``               b1 (0.9), b2 (0.999)   optax.adam
``sgd``                momentum (0.0)         optax.sgd (heavy ball when momentum > 0)
``riemannian_adam``    b1 (0.9), b2 (0.999)   one second moment per orthonormal kernel
                                              (:mod:`lipsort.riemannian_adam`)
``aggmo``              aggmo_betas            aggregated momentum (Lucas et al. 2019,
                       ((0, 0.9, 0.99))       the optimizer of the paper's code):
                                              :func:`aggmo`
=====================  =====================  =====================================

``train.learning_rate`` (> 0) and ``train.schedule`` apply to all of them: ``constant``;
``cosine`` over ``train.num_steps`` down to 1 %; ``step``: multiplied by
``train.decay_factor`` (in (0, 1]) at each step of ``train.decay_steps`` (the paper's WDE
protocol: ×0.9 at five epochs); ``exponential``: multiplied by ``train.decay_factor``
every ``train.decay_every`` steps (a per-epoch decay). ``train.grad_clip_norm`` > 0 clips the gradient's global
ℓ2 norm before the optimizer (the paper's 0.1; 0 = off; a uniform rescale, so tangent
gradients stay tangent). A field of another optimizer set
to a non-default value is an error (it would be silently ignored). Every loop (the
generic one, the GAN, the benchmark) builds its optimizer with :func:`make_optimizer`.

To add an optimizer: one :class:`Optimizer` entry in :data:`OPTIMIZERS`; a schedule: one
entry of :data:`SCHEDULES` (with its fields' checks in :func:`validate`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
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
class BetasField:
    """A non-empty tuple of momentum coefficients, each in [0, 1) (AggMo's betas)."""

    default: tuple[float, ...]

    def problem(self, name: str, value) -> str | None:
        ok = (isinstance(value, (tuple, list)) and len(value) > 0
              and all(not BETA.problem(name, b) for b in value))
        return None if ok else f"config.train.{name} must be a non-empty tuple of numbers in [0, 1), got {value!r}."

    @staticmethod
    def coerce(value) -> tuple[float, ...]:
        return tuple(float(b) for b in value)


def scale_by_aggmo(betas: tuple[float, ...]) -> optax.GradientTransformation:
    """Aggregated momentum's direction: the mean of K heavy-ball buffers,

        vᵢ ← βᵢ vᵢ + g   (i = 1..K),        direction = (1/K) Σᵢ vᵢ,

    so that ``optax.chain(scale_by_aggmo(betas), optax.scale_by_learning_rate(lr))`` is
    θ ← θ − (lr/K) Σᵢ vᵢ, the update of Lucas, Sun, Zemel & Grosse, "Aggregated
    Momentum" (ICLR 2019). β = 0 is the plain gradient; large β's damp oscillations of
    the small ones. A linear combination of past gradients, like heavy ball: tangent
    gradients (riemannian mode) stay tangent up to the kernels' motion.
    """
    betas = tuple(float(b) for b in betas)

    def init(params):
        return tuple(jax.tree.map(jnp.zeros_like, params) for _ in betas)

    def update(updates, state, params=None):
        del params
        state = tuple(jax.tree.map(lambda v, g, b=b: b * v + g, v, updates) for b, v in zip(betas, state))
        mean = jax.tree.map(lambda *vs: sum(vs) / len(vs), *state)
        return mean, state

    return optax.GradientTransformation(init, update)


def aggmo(learning_rate: optax.ScalarOrSchedule, betas=(0.0, 0.9, 0.99)) -> optax.GradientTransformation:
    """AggMo (:func:`scale_by_aggmo`) at ``learning_rate`` (a number or an optax schedule)."""
    return optax.chain(scale_by_aggmo(betas), optax.scale_by_learning_rate(learning_rate))


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
    # The paper's toys and ℓ∞ classifiers (../shared/PAPER_SETTINGS.md): betas (0, 0.9, 0.99).
    "aggmo": Optimizer({"aggmo_betas": BetasField((0.0, 0.9, 0.99))},
                       lambda lr, v, mask: aggmo(lr, v["aggmo_betas"])),
}
# train.schedule → fn(base learning rate, config.train) → rate or optax schedule.
SCHEDULES: dict[str, Callable[[float, Any], optax.ScalarOrSchedule]] = {
    "constant": lambda lr, train: lr,
    "cosine": lambda lr, train: optax.cosine_decay_schedule(lr, int(train.num_steps), alpha=0.01),
    "step": lambda lr, train: optax.piecewise_constant_schedule(
        lr, {int(s): float(train.decay_factor) for s in train.decay_steps}),
    # lr · decay_factor^⌊step / decay_every⌋: a per-epoch exponential decay (Li et al.'s ℓ2
    # protocol: ×0.96235 every epoch).
    "exponential": lambda lr, train: optax.exponential_decay(
        lr, int(train.decay_every), float(train.decay_factor), staircase=True),
}


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
    errors += _schedule_problems(train)
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


def _schedule_problems(train) -> list[str]:
    errors = []
    schedule = _get(train, "schedule", "constant")
    steps, factor, every = _get(train, "decay_steps"), _get(train, "decay_factor"), _get(train, "decay_every")
    if schedule == "step":
        if (not isinstance(steps, (tuple, list)) or not steps
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps)
                or list(steps) != sorted(set(steps))):
            errors.append(f"config.train.decay_steps must be increasing positive step numbers, got {steps!r}.")
    elif steps:
        errors.append(f"config.train.decay_steps applies to schedule 'step' only (got schedule {schedule!r}); "
                      "remove it or use 'step'.")
    if schedule == "exponential":
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            errors.append(f"config.train.decay_every must be a positive number of steps, got {every!r}.")
    elif every is not None:
        errors.append(f"config.train.decay_every applies to schedule 'exponential' only (got schedule "
                      f"{schedule!r}); remove it or use 'exponential'.")
    if schedule in ("step", "exponential"):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
            errors.append(f"config.train.decay_factor must be a number in (0, 1], got {factor!r}.")
    elif factor is not None:
        errors.append(f"config.train.decay_factor applies to schedules 'step' and 'exponential' only (got "
                      f"schedule {schedule!r}); remove it or use one of them.")
    clip = _get(train, "grad_clip_norm", 0.0)
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 <= clip < math.inf:
        errors.append(f"config.train.grad_clip_norm must be a number ≥ 0 (0 = off), got {clip!r}.")
    return errors


def learning_rate(train) -> optax.ScalarOrSchedule:
    """The learning rate, or its schedule over steps, of ``config.train``."""
    return SCHEDULES[_get(train, "schedule", "constant")](float(train.learning_rate), train)


def make_optimizer(train, manifold_mask=None) -> optax.GradientTransformation:
    """The optax optimizer of ``config.train`` (validated by :func:`validate` first).

    ``manifold_mask`` (:func:`lipsort.riemannian_adam.tangent_kernel_mask`) tells
    ``riemannian_adam`` which parameters are orthonormal kernels; it is required for it.
    """
    errors = validate(train)
    if errors:
        raise ValueError("; ".join(errors))
    entry = OPTIMIZERS[optimizer_name(train)]
    values = {k: getattr(f, "coerce", float)(_get(train, k, f.default)) for k, f in entry.fields.items()}
    tx = entry.build(learning_rate(train), values, manifold_mask)
    clip = float(_get(train, "grad_clip_norm", 0.0))
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx
