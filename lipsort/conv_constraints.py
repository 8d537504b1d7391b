"""The convolution constraint registry: every way a conv layer is kept 1-Lipschitz in ℓ2.

A :class:`ConvConstraint` entry says, for one ``config.model.conv_constraint`` string, how
a :class:`lipsort.conv_models.LipschitzConv` layer stores its parameters (``setup``), the
HWIO kernel its forward pass uses (``kernel``, differentiable) and the kernel an export
stores (``export``, float64). Every export is then certified by
:func:`lipsort.convolution.certified_conv_norm` and, for constrained entries, rescaled
where float32 rounding leaves it above 1 (:func:`lipsort.conv_models.fit_conv_under`).

===========  =================================================  ==========================
constraint   forward kernel                                     guarantee
===========  =================================================  ==========================
``bcop``     H ⊛ R₁ ⊛ C₁ ⊛ … ⊛ R_{k−1} ⊛ C_{k−1} (Li et al.       orthogonal for circular
             2019): H an orthogonal 1×1 conv, R_j / C_j the       padding (‖conv x‖ = ‖x‖
             1×2 / 2×1 block convs [P, I − P] of projectors         when c_in = c_out); ≤ 1
             P = UUᵀ, every factor Björck-orthonormalized            for zero padding, strides
             (unrolled, ``bjorck_iters``)
``aol``      K · diag(d)^{-1/2}, d the absolute row sums of the     ‖·‖₂ ≤ 1 (Gershgorin),
             operator's Gram (:func:`convolution.aol_rescale`)      any padding and stride
``none``     K                                                  nothing (a baseline)
===========  =================================================  ==========================

BCOP with c_in ≠ c_out builds the orthogonal kernel on c = max(c_in, c_out) channels and
keeps the first c_in inputs and c_out outputs: a restriction of an orthogonal operator,
of norm ≤ 1. Cost per training step: a few small Björck runs (c×c/2 matrices) and the
kernel products, independent of the batch (``scripts/benchmark.py --parts k``).

To add a conv constraint: subclass :class:`ConvConstraint` here and :func:`register` it;
layers, models, exports and the tests' violation search pick it up.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lipsort import convolution, orthogonal
from lipsort.registry import Registry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class NoConvOptions:
    """Conv constraints without settings."""


@dataclasses.dataclass(frozen=True)
class BcopOptions:
    bjorck_iters: int = 15

    def __post_init__(self):
        if isinstance(self.bjorck_iters, bool) or not isinstance(self.bjorck_iters, int) or self.bjorck_iters < 1:
            raise ValueError(f"bjorck_iters must be a positive integer, got {self.bjorck_iters!r}.")


class ConvConstraint:
    """The default (no constraint): a free HWIO kernel."""

    name = "none"
    constrained = False  # whether the export must certify ≤ 1
    options_type: type = NoConvOptions

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        names = {f.name for f in dataclasses.fields(self.options_type)}
        return self.options_type(**{k: v for k, v in (values or {}).items() if k in names})

    def setup(self, layer, rngs: nnx.Rngs) -> None:
        kh, kw, c_in, c_out = layer.kernel_shape
        layer.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), layer.kernel_shape, jnp.float32))

    def kernel(self, layer) -> Array:
        return layer.kernel[...]

    def export(self, layer) -> np.ndarray:
        return np.asarray(layer.kernel[...], np.float64)

    def __repr__(self) -> str:
        return f"<conv constraint {self.name}>"


def _centre_tap_init(key, shape, dtype=jnp.float32) -> Array:
    """An orthogonal 1×1 map at the kernel's centre, zeros elsewhere: the layer starts as
    (a restriction of) an orthogonal channel mix, which AOL leaves unscaled."""
    kh, kw, c_in, c_out = shape
    centre = nnx.initializers.orthogonal()(key, (c_in, c_out), dtype)
    return jnp.zeros(shape, dtype).at[(kh - 1) // 2, (kw - 1) // 2].set(centre)


class Aol(ConvConstraint):
    name = "aol"
    constrained = True

    def setup(self, layer, rngs):
        layer.kernel = nnx.Param(_centre_tap_init(rngs.params(), layer.kernel_shape))

    def kernel(self, layer):
        return convolution.aol_rescale(layer.kernel[...])

    def export(self, layer):
        return convolution.aol_rescale_numpy(layer.kernel[...])


class OrthogonalFactor(nnx.Param):
    """An unconstrained matrix whose Björck orthonormalization is a BCOP factor."""


def bcop_kernel(h: Any, rows: Any, cols: Any, xp=jnp) -> Any:
    """The BCOP kernel (k×k, k = 1 + len(rows)) from an orthogonal c×c matrix ``h`` and
    the orthonormal-column factors U_j (c×r) of the row and column projectors."""
    c = h.shape[0]
    eye = xp.eye(c, dtype=h.dtype)
    kernel = h[None, None]
    for u, v in zip(rows, cols):
        p, q = u @ u.T, v @ v.T
        kernel = convolution.compose_kernels(kernel, xp.stack([p, eye - p])[None], xp)  # 1×2
        kernel = convolution.compose_kernels(kernel, xp.stack([q, eye - q])[:, None], xp)  # 2×1
    return kernel


class Bcop(ConvConstraint):
    name = "bcop"
    constrained = True
    options_type = BcopOptions

    @staticmethod
    def _sizes(layer) -> tuple[int, int, int]:
        kh, kw, c_in, c_out = layer.kernel_shape
        if kh != kw:
            raise ValueError(f"bcop builds square kernels; got kernel size {kh}×{kw}.")
        c = max(c_in, c_out, 2)
        return kh - 1, c, c // 2

    def setup(self, layer, rngs):
        blocks, c, rank = self._sizes(layer)
        ortho = nnx.initializers.orthogonal()
        layer.ortho = OrthogonalFactor(ortho(rngs.params(), (c, c), jnp.float32))
        keys = jax.random.split(rngs.params(), 2 * max(blocks, 1))
        factors = jnp.stack([ortho(k, (c, rank), jnp.float32) for k in keys])
        layer.rows = OrthogonalFactor(factors[:blocks])
        layer.cols = OrthogonalFactor(factors[max(blocks, 1): max(blocks, 1) + blocks])

    def kernel(self, layer):
        iters = layer.options.bjorck_iters
        kh, kw, c_in, c_out = layer.kernel_shape
        h = orthogonal.bjorck(layer.ortho[...], iters)
        orth = jax.vmap(lambda w: orthogonal.bjorck(w, iters))
        rows, cols = layer.rows[...], layer.cols[...]
        rows, cols = (orth(rows), orth(cols)) if rows.shape[0] else (rows, cols)
        return bcop_kernel(h, list(rows), list(cols))[:, :, :c_in, :c_out]

    def export(self, layer):
        kh, kw, c_in, c_out = layer.kernel_shape
        finish = orthogonal.finish_orthonormalization
        h = finish(layer.ortho[...])
        rows = [finish(w) for w in np.asarray(layer.rows[...])]
        cols = [finish(w) for w in np.asarray(layer.cols[...])]
        return bcop_kernel(h, rows, cols, np)[:, :, :c_in, :c_out]


_REGISTRY: Registry[ConvConstraint] = Registry("conv constraint")


def register(constraint: ConvConstraint) -> ConvConstraint:
    return _REGISTRY.add(constraint.name, constraint)


for _entry in (Bcop(), Aol(), ConvConstraint()):
    register(_entry)

CONV_CONSTRAINTS: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str) -> ConvConstraint:
    return _REGISTRY.lookup(name)


def option_fields() -> tuple[str, ...]:
    """Every option field of every registered conv constraint (the ``config.model`` names)."""
    return _REGISTRY.option_fields()
