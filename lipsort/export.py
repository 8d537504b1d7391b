"""Export of a trained Lipschitz MLP to plain weights anyone can check with numpy.

An export is ``export.npz`` (float32 ``kernel_0``, ``bias_0``, ``kernel_1``, … in layer
order, kernel shape (in, out), K folded into the last layer) and ``export.json``
(``activation``, ``group_size``, ``norm``, ``lipschitz_constant``, ``layer_sizes``,
plus ``kernel_shapes``, ``constraints`` and ``layer_norms``, the (p_in, p_out) pair in which each layer is
bounded). The function is ``h ← h @ kernel_i + bias_i`` with the activation between
layers, not after the last: see :func:`numpy_forward`, which needs nothing but numpy.

Constraints are applied exactly at export (Björck finished to float32 precision in
float64, spectral divided by the exact σ_max), so inference pays no constraint cost. A
layer whose exact norm still exceeds its bound after the cast to float32 (by rounding)
is shrunk until it does not, so the certificate of :mod:`lipsort.certify` holds for the
float32 arrays as stored.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any

import numpy as np

from lipsort import norms
from lipsort.models import LipschitzMLP, layer_norm_chain

EXPORT_ARRAYS = "export.npz"
EXPORT_META = "export.json"


@dataclasses.dataclass
class ExportedModel:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def num_layers(self) -> int:
        return sum(1 for k in self.arrays if k.startswith("kernel_"))

    def layer_norms(self) -> list[tuple[float, float]]:
        return [tuple(_parse_norm(p) for p in pair) for pair in self.meta["layer_norms"]]


def _parse_norm(p) -> float:
    return math.inf if p in ("inf", math.inf) else 2


def _norm_name(p: float) -> str:
    return "inf" if p == math.inf else "2"


def fit_under(kernel64: np.ndarray, bound: float, p: float, q: float) -> np.ndarray:
    """Casts to float32 such that the exact ℓp→ℓq norm (in float64) is ≤ ``bound``."""
    norm = norms.operator_norm(kernel64, p, q)
    if norm > bound:
        kernel64 = kernel64 * (bound / norm)
    kernel32 = kernel64.astype(np.float32)
    for _ in range(64):
        if norms.operator_norm(kernel32, p, q) <= bound:
            return kernel32
        # A relative shrink of 2^-22 moves every float32 entry down by ≥ 1 ulp.
        kernel32 = (kernel32.astype(np.float64) * (1.0 - 2.0**-22)).astype(np.float32)
    raise RuntimeError("could not round the kernel under its norm bound; this is a bug.")


def export_model(model: LipschitzMLP) -> ExportedModel:
    """Exact constrained float32 weights of ``model`` with K folded into the last layer."""
    spec = model.spec
    chain = layer_norm_chain(spec, model.constraints)
    k = model.lipschitz_constant
    arrays = {}
    last = len(model.layers) - 1
    for i, (layer, constraint, (p, q)) in enumerate(zip(model.layers, model.constraints, chain)):
        scale = k if i == last else 1.0
        kernel = layer.export_kernel() * scale
        if constraint != "none":
            kernel32 = fit_under(kernel, scale, p, q)
        else:
            kernel32 = kernel.astype(np.float32)
        bias = np.asarray(layer.bias[...], np.float64) if layer.bias is not None else np.zeros(kernel.shape[1])
        arrays[f"kernel_{i}"] = kernel32
        arrays[f"bias_{i}"] = (bias * scale).astype(np.float32)
    meta = {
        "activation": spec.activation,
        "group_size": spec.group_size,
        "norm": spec.norm,
        "lipschitz_constant": k,
        "layer_sizes": spec.layer_sizes(),
        "kernel_shapes": [list(shape) for shape in spec.layer_in_out()],
        "constraints": list(model.constraints),
        "layer_norms": [[_norm_name(p), _norm_name(q)] for p, q in chain],
    }
    return ExportedModel(arrays, meta)


def save_export(exported: ExportedModel, directory: str) -> None:
    """Writes ``export.npz`` and ``export.json`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, EXPORT_ARRAYS), **exported.arrays)
    with open(os.path.join(directory, EXPORT_META), "w") as f:
        json.dump(exported.meta, f, indent=2)


def load_export(directory: str) -> ExportedModel:
    """Reads an export, with a clear error when files are missing or corrupt."""
    paths = [os.path.join(directory, name) for name in (EXPORT_ARRAYS, EXPORT_META)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"no export in {directory!r}: missing {', '.join(missing)}.")
    try:
        with np.load(paths[0]) as data:
            arrays = {name: data[name] for name in data.files}
        with open(paths[1]) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"corrupt export in {directory!r} ({e}); re-export the model.") from e
    exported = ExportedModel(arrays, meta)
    for i in range(exported.num_layers):
        if f"bias_{i}" not in arrays:
            raise ValueError(f"corrupt export in {directory!r}: kernel_{i} has no bias_{i}.")
    return exported


def _numpy_activation(h: np.ndarray, name: str, group_size: int | None) -> np.ndarray:
    """The activations of :mod:`lipsort.activations`, on the last axis, in numpy."""
    if name == "relu":
        return np.maximum(h, 0)
    if name == "abs":
        return np.abs(h)
    n = {"max_min": 2, "full_sort": h.shape[-1]}.get(name, group_size)
    groups = h.reshape(h.shape[:-1] + (h.shape[-1] // n, n))
    if name == "maxout":
        return groups.max(axis=-1)
    return np.sort(groups, axis=-1).reshape(h.shape)


def numpy_forward(exported: ExportedModel, x: np.ndarray) -> np.ndarray:
    """f(x) from an export with numpy only: h ← act(h @ kernel_i + bias_i), no act last."""
    h = np.asarray(x)
    n = exported.num_layers
    for i in range(n):
        h = h @ exported.arrays[f"kernel_{i}"] + exported.arrays[f"bias_{i}"]
        if i < n - 1:
            h = _numpy_activation(h, exported.meta["activation"], exported.meta["group_size"])
    return h


@functools.lru_cache(maxsize=None)
def export_apply(activation: str, group_size: int | None):
    """apply(params, x) for exports with this activation; one function object per
    (activation, group_size), so jitted searches over many exports compile once.

    ``params`` is a list of (kernel, bias) pairs, as :func:`export_params` returns.
    """
    from lipsort import activations as acts

    act = acts.get_activation(activation, group_size)

    def apply(params, x):
        h = x
        for i, (kernel, bias) in enumerate(params):
            h = h @ kernel + bias
            if i < len(params) - 1:
                h = act(h)
        return h

    return apply


def export_params(exported: ExportedModel) -> list:
    """The export's arrays as a list of (kernel, bias) pairs of JAX arrays."""
    import jax.numpy as jnp

    return [
        (jnp.asarray(exported.arrays[f"kernel_{i}"]), jnp.asarray(exported.arrays[f"bias_{i}"]))
        for i in range(exported.num_layers)
    ]


def jax_forward(exported: ExportedModel):
    """f(x) of an export in JAX: the same function as :func:`numpy_forward`."""
    apply = export_apply(exported.meta["activation"], exported.meta["group_size"])
    params = export_params(exported)
    return lambda x: apply(params, x)
