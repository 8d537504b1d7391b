"""Flax (nnx) modules: the Lipschitz dense layer and activation modules.

A :class:`LipschitzDense` stores an unconstrained parameter ``kernel`` and applies its
constraint on every forward pass, so gradients flow through the constraint:

=============  ===========================================  =====================
constraint     forward kernel                               guarantee (exact at export)
=============  ===========================================  =====================
``bjorck``     Björck(kernel) from a certified start        ‖·‖_{2→2} ≤ 1, all σ → 1
``spectral``   kernel / σ̂ (power iteration, persistent u)   ‖·‖_{2→2} ≈ 1 (estimate)
``linf``       each output unit projected on the ℓ1 ball    ‖·‖_{∞→∞} ≤ 1
``two_inf``    each output unit ℓ2-normalized               ‖·‖_{2→∞} = 1
``none``       kernel                                       nothing
=============  ===========================================  =====================

Björck layers train in one of two modes (``bjorck_training``):

- ``"unrolled"``: the forward pass runs ``bjorck_iters`` steps from the certified start
  and gradients flow through all of them (the paper's method; exact, expensive);
- ``"retraction"``: the parameter itself is kept orthonormal. The forward pass uses it
  as is and, after each optimizer update, :meth:`LipschitzDense.retract` moves it back
  onto the manifold with stop-gradient Björck steps (:mod:`lipsort.retraction`): about
  one matmul pair per layer per step and no backward through iterations.
- ``"riemannian"``: as ``"retraction"``, but the kernel's gradient is projected onto the
  manifold's tangent space inside the backward pass, from the activations it already
  has (:mod:`lipsort.tangent`, O(batch·in·out), nothing cubic), and the retraction is
  lazy: once the measured residual reaches ``retraction_tol``, a rank-16 correction of
  the residual's top eigen-directions (O(n²)), then a Björck step only if that was not
  enough. With SGD (± momentum) or Riemannian Adam (``optimizer="riemannian_adam"``)
  updates leave the manifold only to second order and Björck steps are rare; with plain
  Adam (per-coordinate scaling leaves the tangent space) it retracts about as often as
  ``"retraction"``.

Spectral normalization divides by a power-iteration estimate, which can be low, so its
training-time norm may exceed 1 slightly; :meth:`LipschitzDense.export_kernel` always
returns weights whose exact norm is ≤ 1 (the certificate rescales what rounding leaves).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lipsort import activations as acts
from lipsort import norms, orthogonal, retraction, tangent

Array = jax.Array

CONSTRAINTS: tuple[str, ...] = ("bjorck", "spectral", "linf", "two_inf", "none")
BJORCK_TRAINING: tuple[str, ...] = ("unrolled", "retraction", "riemannian")

# (input norm, output norm) in which each constraint bounds the layer by 1.
CONSTRAINT_NORMS: dict[str, tuple[float, float]] = {
    "bjorck": (2, 2),
    "spectral": (2, 2),
    "linf": (math.inf, math.inf),
    "two_inf": (2, math.inf),
}


def check_constraint(name: str) -> None:
    if name not in CONSTRAINTS:
        raise ValueError(
            f"Unknown constraint {name!r}; valid constraints are: {', '.join(CONSTRAINTS)}."
        )


def _is_int(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def check_constraint_options(
    constraints,
    bjorck_iters: int,
    bjorck_order: int,
    bjorck_beta: float,
    power_iters: int,
    bjorck_training: str = "unrolled",
    retraction_tol: float = 5e-4,
) -> None:
    """Validates the options of the constraints in use (unused options are ignored)."""
    if "bjorck" in constraints:
        orthogonal.taylor_coefficients(bjorck_order, bjorck_beta)  # validates both
        if not _is_int(bjorck_iters, 0):
            raise ValueError(f"bjorck_iters must be a non-negative integer, got {bjorck_iters!r}.")
        if bjorck_training not in BJORCK_TRAINING:
            raise ValueError(
                f"Unknown bjorck_training {bjorck_training!r}; valid modes are: {', '.join(BJORCK_TRAINING)}."
            )
        if (isinstance(retraction_tol, bool) or not isinstance(retraction_tol, (int, float))
                or not 0 < retraction_tol < 0.5):
            raise ValueError(f"retraction_tol must be a number in (0, 0.5), got {retraction_tol!r}.")
    if "spectral" in constraints and not _is_int(power_iters, 1):
        raise ValueError(f"power_iters must be a positive integer, got {power_iters!r}.")


# Björck steps a retraction may take per update; a fresh custom init gets more.
RETRACTION_MAX_ITERS = 8
RETRACTION_MAX_ITERS_AT_INIT = 60


class PowerIterationVector(nnx.Variable):
    """The persistent right singular vector estimate of spectral normalization."""


def _default_init(constraint: str, in_features: int):
    if constraint in ("bjorck", "spectral"):
        # Start on the manifold: Björck has nothing to fix and σ_max = 1 for spectral.
        return nnx.initializers.orthogonal()
    if constraint == "linf":
        # std 1/in gives output units an ℓ1 norm ≈ 0.8, inside the ball the projection keeps.
        return nnx.initializers.normal(stddev=1.0 / in_features)
    return nnx.initializers.lecun_normal()


class LipschitzDense(nnx.Module):
    """y = x @ C(kernel) + bias, with C the constraint (kernel shape (in, out))."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        constraint: str = "bjorck",
        use_bias: bool = True,
        bjorck_iters: int = 15,
        bjorck_order: int = 1,
        bjorck_beta: float = 0.5,
        power_iters: int = 1,
        bjorck_training: str = "unrolled",
        retraction_tol: float = 5e-4,
        kernel_init=None,
        input_grad: bool = True,
        rngs: nnx.Rngs,
    ):
        check_constraint(constraint)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        check_constraint_options(
            [constraint], bjorck_iters, bjorck_order, bjorck_beta, power_iters, bjorck_training, retraction_tol
        )
        self.in_features, self.out_features = in_features, out_features
        self.constraint = constraint
        self.bjorck_iters, self.bjorck_order, self.bjorck_beta = bjorck_iters, bjorck_order, bjorck_beta
        self.power_iters = power_iters
        self.retracts = constraint == "bjorck" and bjorck_training in ("retraction", "riemannian")
        self.tangent_gradient = constraint == "bjorck" and bjorck_training == "riemannian"
        self.retraction_tol = float(retraction_tol)
        # False for a network's first layer: nothing needs the gradient for its input,
        # which lets riemannian mode pick a cheaper projection at large batches.
        self.input_grad = bool(input_grad)
        # nnx's Module.eval()/train() toggle `deterministic`: in eval mode the power
        # iteration vector is read but not updated.
        self.deterministic = False
        init = kernel_init or _default_init(constraint, in_features)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        if self.retracts:
            self.retract(max_iters=RETRACTION_MAX_ITERS_AT_INIT)  # a custom init may be off the manifold
        if constraint == "spectral":
            u = jax.random.normal(rngs.params(), (out_features,), jnp.float32)
            self.u = PowerIterationVector(u / jnp.linalg.norm(u))

    def constrained_kernel(self) -> Array:
        """The kernel the forward pass uses (differentiable in the parameter)."""
        w = self.kernel[...]
        if self.retracts:
            return w  # kept orthonormal by retract() after every update
        if self.constraint == "bjorck":
            return orthogonal.bjorck(w, self.bjorck_iters, self.bjorck_order, self.bjorck_beta)
        if self.constraint == "spectral":
            sigma, u = orthogonal.power_iteration(w, self.u[...], self.power_iters)
            if not self.deterministic:
                self.u[...] = u
            return w / sigma
        if self.constraint == "linf":
            return norms.project_linf(w)
        if self.constraint == "two_inf":
            return norms.normalize_two_inf(w)
        return w

    def retract(self, max_iters: int = RETRACTION_MAX_ITERS) -> dict[str, Array] | None:
        """Retraction mode: moves the kernel back onto the orthonormal manifold in place.

        Call after each optimizer update (``lipsort.train`` does). Returns the
        :func:`lipsort.retraction.retract` statistics, or None for other layers.
        """
        if not self.retracts:
            return None
        w, stats = retraction.retract(
            self.kernel[...], self.retraction_tol, max_iters, lazy=self.tangent_gradient,
            low_rank=retraction.LOW_RANK if self.tangent_gradient else 0,
        )
        self.kernel[...] = w
        return stats

    def export_kernel(self) -> np.ndarray:
        """The exact constrained kernel in float64 (what an export stores).

        Björck is finished to float32 precision from the training-time iterate; spectral
        divides by the exact σ_max; projections are redone in float64.
        """
        if self.constraint == "bjorck":
            return orthogonal.finish_orthonormalization(self.constrained_kernel())
        w = np.asarray(self.kernel[...], np.float64)
        if self.constraint == "spectral":
            return w / max(norms.operator_norm(w, 2), np.finfo(np.float64).tiny)
        if self.constraint in ("linf", "two_inf"):
            fn = norms.project_linf if self.constraint == "linf" else norms.normalize_two_inf
            with jax.enable_x64(True):
                return np.asarray(fn(jnp.asarray(w)))
        return w

    def __call__(self, x: Array) -> Array:
        if self.tangent_gradient:
            y = tangent.tangent_matmul(x, self.kernel[...], self.input_grad)
        else:
            y = x @ self.constrained_kernel()
        return y + self.bias[...] if self.bias is not None else y


class Activation(nnx.Module):
    """An activation from the registry (``relu``, ``abs``, ``maxout``, ``max_min``, …)."""

    def __init__(self, name: str, group_size: int | None = None):
        self.fn = acts.get_activation(name, group_size)
        self.name, self.group_size = name, group_size

    def __call__(self, x: Array) -> Array:
        return self.fn(x, axis=-1)


class GroupSort(Activation):
    """GroupSort(group_size) along the last axis."""

    def __init__(self, group_size: int):
        super().__init__("group_sort", group_size)
