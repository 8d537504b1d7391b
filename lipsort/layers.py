"""The Flax (nnx) Lipschitz dense layer: ``y = x @ C(kernel) + bias``.

The layer stores an unconstrained parameter ``kernel`` (shape (in, out), see
:mod:`lipsort.norms`) and dispatches everything constraint-specific to its entry of the
constraint registry (:mod:`lipsort.constraints`): the default init, extra state, the
training-time kernel (gradients flow through the constraint), the retraction after an
update, and the exact float64 kernel of an export. The table of constraints and the
Björck training modes is in :mod:`lipsort.constraints`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lipsort import constraints

Array = jax.Array

CONSTRAINTS = constraints.CONSTRAINTS


class LipschitzDense(nnx.Module):
    """y = x @ C(kernel) + bias, with C the constraint (kernel shape (in, out)).

    Constraint options (``bjorck_iters``, ``power_iters``, …) are keyword arguments,
    named as the ``config.model`` fields; each is validated by the constraint's options
    dataclass, and options of other constraints are ignored.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        constraint: str = "bjorck",
        use_bias: bool = True,
        kernel_init=None,
        input_grad: bool = True,
        rngs: nnx.Rngs,
        **options,
    ):
        rule = constraints.get(constraint)
        unknown = set(options) - set(constraints.option_fields())
        if unknown:
            raise TypeError(f"unknown constraint options {sorted(unknown)}; valid: {', '.join(constraints.option_fields())}.")
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.in_features, self.out_features = in_features, out_features
        self.constraint = constraint
        self.rule = rule
        self.options = rule.make_options(options)
        # False for a network's first layer: nothing needs the gradient for its input,
        # which lets riemannian mode pick a cheaper projection at large batches.
        self.input_grad = bool(input_grad)
        # nnx's Module.eval()/train() toggle `deterministic` (read by spectral norm).
        self.deterministic = False
        init = kernel_init or rule.init(in_features)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        rule.setup(self, rngs)

    @property
    def retracts(self) -> bool:
        """Whether the kernel is kept on the manifold by :meth:`retract` after updates."""
        return self.rule.retracts(self.options)

    @property
    def tangent_gradient(self) -> bool:
        """Whether the kernel's gradient is projected on the manifold's tangent space."""
        return self.rule.tangent_gradient(self.options)

    def constrained_kernel(self) -> Array:
        """The kernel the forward pass uses (differentiable in the parameter)."""
        return self.rule.kernel(self)

    def retract(self, max_iters: int = constraints.RETRACTION_MAX_ITERS) -> dict[str, Array] | None:
        """Moves a retraction-mode kernel back onto its manifold in place (call after each
        optimizer update; :mod:`lipsort.train` does). Returns the
        :func:`lipsort.retraction.retract` statistics, or None for other layers."""
        return self.rule.retract(self, max_iters)

    def export_kernel(self) -> np.ndarray:
        """The exact constrained kernel in float64 (what an export stores)."""
        return self.rule.export(self)

    def __call__(self, x: Array) -> Array:
        y = self.rule.matmul(self, x)
        return y + self.bias[...] if self.bias is not None else y
