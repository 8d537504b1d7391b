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
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

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


# name → (function of (x, group_size, axis), whether it needs a group_size)
_REGISTRY: dict[str, tuple[Callable[..., Array], bool]] = {
    "relu": (lambda x, group_size, axis: relu(x, axis), False),
    "abs": (lambda x, group_size, axis: absolute(x, axis), False),
    "max_min": (lambda x, group_size, axis: max_min(x, axis), False),
    "group_sort": (group_sort, True),
    "full_sort": (lambda x, group_size, axis: full_sort(x, axis), False),
    "maxout": (maxout, True),
}

ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def _lookup(name: str) -> tuple[Callable[..., Array], bool]:
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown activation {name!r}; valid activations are: {', '.join(ACTIVATIONS)}."
        )
    return _REGISTRY[name]


def get_activation(name: str, group_size: int | None = None) -> Callable[..., Array]:
    """Returns ``act(x, axis=-1)`` for a registry name.

    ``group_size`` is required by (and only used for) ``group_sort`` and ``maxout``.
    """
    fn, needs_group = _lookup(name)
    if needs_group:
        if group_size is None:
            raise ValueError(f"activation {name!r} needs a group_size (a positive integer).")
        _check_positive_group_size(group_size)
    return lambda x, axis=-1: fn(x, group_size, axis)


def activation_output_width(name: str, width: int, group_size: int | None = None) -> int:
    """Width after the activation: maxout shrinks d → d/n, the others keep d.

    Raises the same clear error as the activation itself when the group size does not
    divide the width, so a model can be checked before any computation.
    """
    _, needs_group = _lookup(name)
    if name == "max_min":
        _check_group_size(width, 2, "the layer width (max_min pairs units)")
    if needs_group:
        if group_size is None:
            raise ValueError(f"activation {name!r} needs a group_size (a positive integer).")
        _check_group_size(width, group_size, "the layer width")
    return width // group_size if name == "maxout" else width
