"""The constraint registry: every way a linear layer is kept norm-bounded, in one place.

A :class:`Constraint` entry says, for one ``config.model.constraint`` string:

- ``norms``: the (p_in, p_out) pair in which it bounds the layer's operator norm by 1
  (None for ``none``, which bounds nothing and keeps the norm of its input);
- ``options``: a small frozen dataclass of its settings, validated once when built
  (:meth:`Constraint.make_options`), with the config field names as its field names;
- ``init``: the default kernel initializer;
- ``setup``: extra per-layer state (spectral normalization's power-iteration vector);
- ``kernel``: the training-time kernel of the forward pass (differentiable in the
  parameter), and ``matmul`` (x @ kernel, overridden by Riemannian training);
- ``retract``: the update-time step of training modes that keep the parameter on its
  constraint set (Björck ``retraction`` / ``riemannian``, projected ∞-norm layers), and
  ``retract_metrics``: how its statistics become per-step metrics (name → stat, reducer
  over layers);
- ``export``: the exactly constrained kernel in float64 (what an export stores);
- ``bound``: the certified operator norm of a stored kernel, exact, in float64.

=============  ===========================================  =====================
constraint     forward kernel                               guarantee (exact at export)
=============  ===========================================  =====================
``bjorck``     Björck(kernel) from a certified start        ‖·‖_{2→2} ≤ 1, all σ → 1
``spectral``   kernel / σ̂ (power iteration, persistent u)   ‖·‖_{2→2} ≤ 1 (exact σ at export)
``linf``       each output unit projected on the ℓ1 ball    ‖·‖_{∞→∞} ≤ 1
``two_inf``    each output unit ℓ2-normalized               ‖·‖_{2→∞} = 1
``none``       kernel                                       nothing (a baseline)
=============  ===========================================  =====================

Björck layers train in one of three modes (``bjorck_training``):

- ``"unrolled"``: the forward pass runs ``bjorck_iters`` steps from the certified start
  and gradients flow through all of them (the paper's method; exact, expensive). The
  steps are order-``bjorck_order`` Björck steps (``bjorck_method="bjorck"``) or the
  optimized odd polynomials of :mod:`lipsort.fast_orthogonal` (``"fast"``);
- ``"retraction"``: the parameter itself is kept orthonormal. The forward pass uses it
  as is and, after each optimizer update, :meth:`LipschitzDense.retract` moves it back
  onto the manifold with stop-gradient Björck steps (:mod:`lipsort.retraction`);
- ``"riemannian"``: as ``"retraction"``, but the kernel's gradient is projected onto the
  manifold's tangent space inside the backward pass (:mod:`lipsort.tangent`), and the
  retraction is lazy (a Björck step only once the residual reaches ``retraction_tol``).

∞-norm layers (``linf``, and ``two_inf`` first layers) train in one of two modes
(``linf_training``):

- ``"differentiated"``: the forward pass projects every output unit and gradients flow
  through the projection (a sort per unit; entries it zeroes get no gradient);
- ``"projected"``: the paper's way (LNets): the forward pass uses the kernel as it is and,
  after each optimizer update, :meth:`Constraint.retract` projects every unit exactly,
  ``linf`` units onto the ℓ1 ball (``linf_projection="ball"``) or its sphere
  (``"sphere"``: units inside are pushed out as well, as LNets does), ``two_inf`` units
  onto the ℓ2 sphere.

Spectral normalization divides by a power-iteration estimate, which can be low, so its
training-time norm may exceed 1 slightly; the export divides by the exact σ_max.

To add a constraint: subclass :class:`Constraint` here (its options as a dataclass if
it has any) and :func:`register` an instance; layers, models, exports and certificates
dispatch on the registry.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lipsort import fast_orthogonal, orthogonal, retraction, tangent
from lipsort.norms import (column_norms, normalize_spectral, normalize_two_inf, normalize_two_inf_numpy,
                           operator_norm, project_l1_sphere, project_l1_sphere_numpy, project_linf,
                           project_linf_numpy)
from lipsort.registry import Registry

Array = jax.Array
Norms = tuple[float, float]

# Björck steps a retraction may take per update; a fresh custom init gets more.
RETRACTION_MAX_ITERS = 8
RETRACTION_MAX_ITERS_AT_INIT = 60


def _is_int(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Constraints without settings."""


BJORCK_TRAINING: tuple[str, ...] = ("unrolled", "retraction", "riemannian")
BJORCK_METHODS: tuple[str, ...] = ("bjorck", "fast")


@dataclasses.dataclass(frozen=True)
class BjorckOptions:
    """Settings of Björck layers (field names = ``config.model`` fields)."""

    bjorck_iters: int = 15
    bjorck_order: int = 1
    bjorck_beta: float = 0.5
    bjorck_training: str = "unrolled"
    bjorck_method: str = "bjorck"
    retraction_tol: float = 5e-4

    def __post_init__(self):
        orthogonal.taylor_coefficients(self.bjorck_order, self.bjorck_beta)  # validates both
        if not _is_int(self.bjorck_iters, 0):
            raise ValueError(f"bjorck_iters must be a non-negative integer, got {self.bjorck_iters!r}.")
        if self.bjorck_training not in BJORCK_TRAINING:
            raise ValueError(
                f"Unknown bjorck_training {self.bjorck_training!r}; valid modes are: {', '.join(BJORCK_TRAINING)}."
            )
        if self.bjorck_method not in BJORCK_METHODS:
            raise ValueError(
                f"Unknown bjorck_method {self.bjorck_method!r}; valid methods are: {', '.join(BJORCK_METHODS)}."
            )
        tol = self.retraction_tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 0.5:
            raise ValueError(f"retraction_tol must be a number in (0, 0.5), got {tol!r}.")

    @property
    def retracts(self) -> bool:
        return self.bjorck_training in ("retraction", "riemannian")

    @property
    def tangent_gradient(self) -> bool:
        return self.bjorck_training == "riemannian"


@dataclasses.dataclass(frozen=True)
class SpectralOptions:
    power_iters: int = 1

    def __post_init__(self):
        if not _is_int(self.power_iters, 1):
            raise ValueError(f"power_iters must be a positive integer, got {self.power_iters!r}.")


LINF_TRAINING: tuple[str, ...] = ("differentiated", "projected")
LINF_PROJECTIONS: tuple[str, ...] = ("ball", "sphere")


@dataclasses.dataclass(frozen=True)
class ProjectionOptions:
    """Settings of ∞-norm layers (``linf``; ``two_inf`` reads ``linf_training`` only)."""

    linf_training: str = "differentiated"
    linf_projection: str = "ball"

    def __post_init__(self):
        if self.linf_training not in LINF_TRAINING:
            raise ValueError(f"Unknown linf_training {self.linf_training!r}; valid modes are: "
                             f"{', '.join(LINF_TRAINING)}.")
        if self.linf_projection not in LINF_PROJECTIONS:
            raise ValueError(f"Unknown linf_projection {self.linf_projection!r}; valid targets are: "
                             f"{', '.join(LINF_PROJECTIONS)}.")

    @property
    def retracts(self) -> bool:
        return self.linf_training == "projected"


class PowerIterationVector(nnx.Variable):
    """The persistent right singular vector estimate of spectral normalization."""


class Constraint:
    """The default behaviour (no constraint); subclasses override what they change."""

    name: str = "none"
    norms: Norms | None = None
    options_type: type = NoOptions
    # per-step metric → (key of retract()'s statistics, reduction over the layers)
    retract_metrics: dict[str, tuple[str, Callable]] = {}

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """The validated options from ``values`` (a mapping that may hold other
        constraints' fields too: only this constraint's fields are read)."""
        values = values or {}
        names = {f.name for f in dataclasses.fields(self.options_type)}
        return self.options_type(**{k: v for k, v in values.items() if k in names})

    def init(self, in_features: int) -> Callable:
        return nnx.initializers.lecun_normal()

    def setup(self, layer, rngs: nnx.Rngs) -> None:
        """Creates extra state on ``layer`` after its kernel (none by default)."""

    def retracts(self, options) -> bool:
        """Whether updates are followed by :meth:`retract` (the parameter lives on a manifold)."""
        return False

    def tangent_gradient(self, options) -> bool:
        """Whether the kernel's gradient is projected on the manifold's tangent space."""
        return False

    def kernel(self, layer) -> Array:
        return layer.kernel[...]

    def matmul(self, layer, x: Array) -> Array:
        return x @ self.kernel(layer)

    def retract(self, layer, max_iters: int) -> dict[str, Array] | None:
        return None

    def export(self, layer) -> np.ndarray:
        return np.asarray(layer.kernel[...], np.float64)

    def bound(self, kernel: np.ndarray, p_in: float, p_out: float) -> float:
        """Certified operator norm of ``kernel`` from ℓp_in to ℓp_out (exact, float64)."""
        return operator_norm(kernel, p_in, p_out)

    def __repr__(self) -> str:
        return f"<constraint {self.name}>"


class Bjorck(Constraint):
    name = "bjorck"
    norms = (2, 2)
    options_type = BjorckOptions
    retract_metrics = {
        "retraction_drift": ("drift", jnp.max),  # the residual the update caused
        "orthogonality_residual": ("residual", jnp.max),  # predicted ‖WᵀW − I‖₂ now
        "retraction_steps": ("steps", jnp.sum),  # Björck steps taken
        "retraction_matmuls": ("matmuls", jnp.sum),  # their n³ matmuls
        "retraction_low_rank": ("corrections", jnp.sum),  # low-rank corrections taken
    }

    def init(self, in_features):
        # Start on the manifold: Björck has nothing to fix.
        return nnx.initializers.orthogonal()

    def setup(self, layer, rngs):
        if self.retracts(layer.options):
            layer.retract(max_iters=RETRACTION_MAX_ITERS_AT_INIT)  # a custom init may be off the manifold

    def retracts(self, options) -> bool:
        return options.retracts

    def tangent_gradient(self, options) -> bool:
        return options.tangent_gradient

    def kernel(self, layer):
        w, o = layer.kernel[...], layer.options
        if o.retracts:
            return w  # kept orthonormal by retract() after every update
        if o.bjorck_method == "fast":
            return fast_orthogonal.fast_orthonormalize(w, o.bjorck_iters)
        return orthogonal.bjorck(w, o.bjorck_iters, o.bjorck_order, o.bjorck_beta)

    def matmul(self, layer, x):
        if layer.options.tangent_gradient:
            return tangent.tangent_matmul(x, layer.kernel[...], layer.input_grad)
        return x @ self.kernel(layer)

    def retract(self, layer, max_iters):
        o = layer.options
        if not o.retracts:
            return None
        w, stats = retraction.retract(
            layer.kernel[...], float(o.retraction_tol), max_iters, lazy=o.tangent_gradient,
            low_rank=retraction.LOW_RANK if o.tangent_gradient else 0,
        )
        layer.kernel[...] = w
        return stats

    def export(self, layer):
        # Finished in float64 from the parameter itself: Björck keeps the singular vectors,
        # so the parameter and any training-time iterate converge to the same orthonormal
        # factor, without running the unrolled float32 iterations first.
        return orthogonal.finish_orthonormalization(layer.kernel[...])


class Spectral(Constraint):
    name = "spectral"
    norms = (2, 2)
    options_type = SpectralOptions

    def init(self, in_features):
        return nnx.initializers.orthogonal()  # σ_max = 1 from the start

    def setup(self, layer, rngs):
        u = jax.random.normal(rngs.params(), (layer.out_features,), jnp.float32)
        layer.u = PowerIterationVector(u / jnp.linalg.norm(u))

    def kernel(self, layer):
        w = layer.kernel[...]
        sigma, u = orthogonal.power_iteration(w, layer.u[...], layer.options.power_iters)
        # nnx's Module.eval()/train() toggle `deterministic`: in eval mode the power
        # iteration vector is read but not updated.
        if not layer.deterministic:
            layer.u[...] = u
        return w / sigma

    def export(self, layer):
        return normalize_spectral(layer.kernel[...])  # w / σ_max in float64


class _Projection(Constraint):
    """A per-unit projection onto a norm ball or sphere: in the forward pass
    (``linf_training="differentiated"``) or after every update (``"projected"``), and
    redone exactly in float64 at export."""

    options_type = ProjectionOptions
    unit_norm: float  # the norm of each output unit (kernel column) that is bounded by 1
    retract_metrics = {
        # max over units of ‖unit‖ − 1 after the update, before the projection: how far
        # the update left the ball (≤ 0: it did not)
        "projection_excess": ("excess", jnp.max),
    }

    def project(self, w: Array, options) -> Array:
        raise NotImplementedError

    def setup(self, layer, rngs):
        if self.retracts(layer.options):
            layer.retract()  # start in the constraint set

    def retracts(self, options) -> bool:
        return options.retracts

    def kernel(self, layer):
        w = layer.kernel[...]
        return w if layer.options.retracts else self.project(w, layer.options)

    def retract(self, layer, max_iters):
        del max_iters  # exact in one step
        if not layer.options.retracts:
            return None
        w = layer.kernel[...]
        excess = jnp.max(column_norms(w, self.unit_norm)) - 1.0
        layer.kernel[...] = self.project(w, layer.options)
        return {"excess": excess}

    def project_numpy(self, w: np.ndarray, options) -> np.ndarray:
        """:meth:`project` in numpy float64 (the export's)."""
        raise NotImplementedError

    def export(self, layer):
        return self.project_numpy(np.asarray(layer.kernel[...], np.float64), layer.options)


class Linf(_Projection):
    name = "linf"
    norms = (math.inf, math.inf)
    unit_norm = 1

    def project(self, w, options):
        return project_l1_sphere(w) if options.linf_projection == "sphere" else project_linf(w)

    def project_numpy(self, w, options):
        return project_l1_sphere_numpy(w) if options.linf_projection == "sphere" else project_linf_numpy(w)

    def init(self, in_features):
        # std 1/in gives output units an ℓ1 norm ≈ 0.8, inside the ball the projection keeps.
        return nnx.initializers.normal(stddev=1.0 / in_features)


class TwoInf(_Projection):
    name = "two_inf"
    norms = (2, math.inf)
    unit_norm = 2

    def project(self, w, options):
        return normalize_two_inf(w)  # onto the ℓ2 sphere (keeps each unit's gradient norm 1)

    def project_numpy(self, w, options):
        return normalize_two_inf_numpy(w)


_REGISTRY: Registry[Constraint] = Registry("constraint")


def register(constraint: Constraint) -> Constraint:
    return _REGISTRY.add(constraint.name, constraint)


for _entry in (Bjorck(), Spectral(), Linf(), TwoInf(), Constraint()):
    register(_entry)

CONSTRAINTS: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str) -> Constraint:
    """The registry entry of ``name``; an unknown name is an error listing the valid ones."""
    return _REGISTRY.lookup(name)


def option_fields() -> tuple[str, ...]:
    """Every option field of every registered constraint (the ``config.model`` names)."""
    return _REGISTRY.option_fields()
