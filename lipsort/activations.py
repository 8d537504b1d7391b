"""1-Lipschitz activations, with GroupSort first among them.

GroupSort(n) splits an axis of size d into d/n contiguous groups of n and sorts each
group ascending. On every input it is a permutation of its input, so its Jacobian is
a permutation matrix almost everywhere: it is 1-Lipschitz in every ℓp norm and
*gradient norm preserving* (‖Jᵀg‖ = ‖g‖), which is what ReLU is not.

    GroupSort(2)  = MaxMin    (each pair → (min, max))
    GroupSort(d)  = FullSort
    Maxout(n)     = max of each group: 1-Lipschitz, but not norm preserving, and it
                    shrinks the axis from d to d/n.

All functions are pure, jit-able and differentiable; ``axis`` may be any axis.

The registry (:class:`Activation` entries, :func:`lookup`) is the one place that knows
an activation: its JAX function, its numpy twin (what an export runs), its Lipschitz
constant, how it groups and resizes an axis. To add one, write its function here and
register an :class:`Activation`; models, exports and certificates pick it up.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lipsort.registry import Registry

Array = jax.Array


def _check_positive_group_size(group_size) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}.")


def _check_group_size(size: int, group_size: int, what: str) -> None:
    _check_positive_group_size(group_size)
    if size % group_size != 0:
        raise ValueError(
            f"group_size={group_size} does not divide {what} ({size}); "
            f"use a group size that divides {size}."
        )


def _grouped(x: Array, group_size: int, axis: int) -> tuple[Array, int]:
    """Moves ``axis`` last and splits it into (d/n, n) groups."""
    axis = _normalize_axis(axis, x.ndim)
    _check_group_size(x.shape[axis], group_size, f"the size of axis {axis}")
    moved = jnp.moveaxis(x, axis, -1)
    return moved.reshape(moved.shape[:-1] + (moved.shape[-1] // group_size, group_size)), axis


def _normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an input with {ndim} dimensions.")
    return axis % ndim


def _sorted_pairs(a: Array, b: Array) -> tuple[Array, Array]:
    # `where` on one comparison (rather than jnp.minimum/maximum, whose gradient splits
    # 0.5/0.5 at ties) keeps the Jacobian an exact permutation even at a == b.
    a_first = a <= b
    return jnp.where(a_first, a, b), jnp.where(a_first, b, a)


def group_sort(x: Array, group_size: int, axis: int = -1) -> Array:
    """Sorts each contiguous group of ``group_size`` entries along ``axis``, ascending.

    ``x.shape[axis]`` must be divisible by ``group_size``. Output shape = input shape.
    """
    x = jnp.asarray(x)
    groups, axis = _grouped(x, group_size, axis)
    if group_size == 2:
        # MaxMin is the hot case in training: two selects are much cheaper than a sort.
        lo, hi = _sorted_pairs(groups[..., 0], groups[..., 1])
        groups = jnp.stack([lo, hi], axis=-1)
    elif group_size > 1:
        groups = jnp.sort(groups, axis=-1)
    out = groups.reshape(groups.shape[:-2] + (-1,))
    return jnp.moveaxis(out, -1, axis)


def max_min(x: Array, axis: int = -1) -> Array:
    """MaxMin = GroupSort(2): each pair (a, b) along ``axis`` becomes (min, max)."""
    return group_sort(x, 2, axis)


def full_sort(x: Array, axis: int = -1) -> Array:
    """FullSort = GroupSort(d): sorts the whole ``axis`` ascending."""
    x = jnp.asarray(x)
    return group_sort(x, x.shape[_normalize_axis(axis, x.ndim)], axis)


def maxout(x: Array, group_size: int, axis: int = -1) -> Array:
    """Max of each contiguous group of ``group_size`` along ``axis`` (size d → d/n)."""
    x = jnp.asarray(x)
    groups, axis = _grouped(x, group_size, axis)
    return jnp.moveaxis(jnp.max(groups, axis=-1), -1, axis)


def relu(x: Array, axis: int = -1) -> Array:
    """max(x, 0): 1-Lipschitz, kills the gradient wherever x < 0 (the attenuation)."""
    del axis
    return jax.nn.relu(x)


def absolute(x: Array, axis: int = -1) -> Array:
    """|x|: 1-Lipschitz and gradient norm preserving, but not a permutation."""
    del axis
    return jnp.abs(x)


def _np_groups(h: np.ndarray, group: int) -> np.ndarray:
    return h.reshape(h.shape[:-1] + (h.shape[-1] // group, group))


def _np_sort_groups(h: np.ndarray, group: int) -> np.ndarray:
    return np.sort(_np_groups(h, group), axis=-1).reshape(h.shape)


@dataclasses.dataclass(frozen=True)
class Activation:
    """One registry entry: everything the library needs to know about an activation.

    Attributes:
      name: the config string (``config.model.activation``).
      fn: the JAX function ``fn(x, group, axis)``; ``group`` is :meth:`group` of the
        axis (None for elementwise activations).
      numpy_fn: the same function in numpy on the last axis, ``numpy_fn(h, group)``:
        what :func:`lipsort.export.numpy_forward` runs on an export.
      group: ``group(width, group_size)`` → the size of the groups the axis is split
        into (None: elementwise). It must divide the width.
      takes_group_size: whether ``config.model.group_size`` is used (and required).
      shrinks: the output has width/group entries (maxout) instead of width.
      lipschitz: the Lipschitz constant in every ℓp norm (1 for all of ours).
      homogeneous: σ(s·z) = s·σ(z) for every s > 0 (true of all of ours). Only such an
        activation lets K be spread over the layers (``lipschitz_placement='per_layer'``)
        and still be exported as one network with K at the output.
    """

    name: str
    fn: Callable[[Array, int | None, int], Array]
    numpy_fn: Callable[[np.ndarray, int | None], np.ndarray]
    group: Callable[[int, int | None], int | None] = lambda width, group_size: None
    takes_group_size: bool = False
    shrinks: bool = False
    lipschitz: float = 1.0
    homogeneous: bool = False

    def check_group_size(self, group_size) -> None:
        if self.takes_group_size:
            if group_size is None:
                raise ValueError(f"activation {self.name!r} needs a group_size (a positive integer).")
            _check_positive_group_size(group_size)

    def output_width(self, width: int, group_size: int | None = None) -> int:
        """Width after the activation; a group that does not divide ``width`` is an error."""
        self.check_group_size(group_size)
        group = self.group(width, group_size)
        if group is not None:
            what = "the layer width" + (" (max_min pairs units)" if self.name == "max_min" else "")
            _check_group_size(width, group, what)
        return width // group if self.shrinks and group else width

    def bind(self, group_size: int | None = None) -> Callable[..., Array]:
        """``act(x, axis=-1)`` with the group size fixed."""
        self.check_group_size(group_size)
        return lambda x, axis=-1: self.fn(x, self.group(x.shape[axis], group_size), axis)

    def numpy(self, h: np.ndarray, group_size: int | None = None) -> np.ndarray:
        """The activation on the last axis of a numpy array."""
        return self.numpy_fn(h, self.group(h.shape[-1], group_size))


_REGISTRY: Registry[Activation] = Registry("activation")


def register_activation(activation: Activation) -> Activation:
    """Adds an activation to the registry (a name may be registered once)."""
    return _REGISTRY.add(activation.name, activation)


for _entry in (  # all positively homogeneous: sorting, max, |·| and ReLU commute with s > 0
    Activation("relu", lambda x, g, axis: relu(x, axis), lambda h, g: np.maximum(h, 0), homogeneous=True),
    Activation("abs", lambda x, g, axis: absolute(x, axis), lambda h, g: np.abs(h), homogeneous=True),
    Activation("max_min", lambda x, g, axis: max_min(x, axis), _np_sort_groups, group=lambda w, n: 2,
               homogeneous=True),
    Activation("group_sort", group_sort, _np_sort_groups, group=lambda w, n: n, takes_group_size=True,
               homogeneous=True),
    Activation("full_sort", lambda x, g, axis: full_sort(x, axis), _np_sort_groups, group=lambda w, n: w,
               homogeneous=True),
    Activation("maxout", maxout, lambda h, g: _np_groups(h, g).max(axis=-1), group=lambda w, n: n,
               takes_group_size=True, shrinks=True, homogeneous=True),
):
    register_activation(_entry)

# The registered names (built-ins and any added above this line).
ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def lookup(name: str) -> Activation:
    """The registry entry of ``name``; an unknown name is an error listing the valid ones."""
    return _REGISTRY.lookup(name)


def get_activation(name: str, group_size: int | None = None) -> Callable[..., Array]:
    """Returns ``act(x, axis=-1)`` for a registry name.

    ``group_size`` is required by (and only used for) activations that take one
    (``group_sort``, ``maxout``).
    """
    return lookup(name).bind(group_size)


def activation_output_width(name: str, width: int, group_size: int | None = None) -> int:
    """Width after the activation (maxout shrinks d → d/n); checks the group size first."""
    return lookup(name).output_width(width, group_size)
