"""The typed export of a trained model: plain float32 arrays anyone can check with numpy.

An export is ``export.npz`` (float32 arrays) and ``export.json`` (format 2):

- ``input_shape``: the input without its batch axis (``[784]``; ``[H, W, C]`` for images);
- ``layers``: the records applied in order (the record types below); each linear record
  names its arrays and carries ``bound``, its certified operator norm in its ``norms``
  (float64, from the stored float32 arrays: exact, and for ℓ2→ℓ2 a proven upper bound
  within ~1e-10 of σ_max, :func:`lipsort.norms.certified_spectral_norm`); the certificate is the product of
  the linear records' bounds times the activations' ``lipschitz``; K is folded into the
  last linear record;
- for dense models also the flat keys of format 1 (``activation``, ``group_size``,
  ``norm``, ``lipschitz_constant``, ``layer_sizes``, ``kernel_shapes``, ``constraints``,
  ``layer_norms``; arrays ``kernel_i``/``bias_i``), so older readers keep working.
  Exports without ``layers`` (format 1) still load: :func:`load_export` rebuilds their
  records from the flat keys.

Record types (:data:`RECORD_TYPES`; a new layer kind is one new entry):

- ``{"type": "dense", "kernel", "bias", "constraint", "norms": [p_in, p_out], "bound"}``:
  h ← h @ kernel + bias, kernel (in, out);
- ``{"type": "conv", "kernel", "bias", "strides": [sh, sw], "padding": "zeros" | "circular",
  "constraint", "norms": ["2", "2"], "input_size": [H, W], "bound"}``: h ← conv(h, kernel)
  + bias on NHWC h, kernel HWIO (:func:`lipsort.convolution.conv`); ``input_size`` is the
  H×W the layer sees, which its ``bound`` (:func:`lipsort.convolution.certified_conv_norm`:
  exact for circular padding whose strides divide the size, a proven upper bound
  otherwise) is certified for;
- ``{"type": "activation", "name", "group_size", "lipschitz"}`` on the last axis
  (channels for images);
- ``{"type": "space_to_depth", "block": b}``: (H, W, C) → (H/b, W/b, b·b·C), a permutation;
- ``{"type": "flatten"}``: row-major reshape to a vector.

An export whose ``input_shape`` is an image (H, W, C) also takes its inputs flattened
row-major, (N, H·W·C), and reshapes them first (an isometry: the certificate is the same).

Constraints are applied exactly at export (:meth:`lipsort.layers.LipschitzDense.export_kernel`),
so inference pays no constraint cost. A kernel whose exact norm still exceeds its bound
after the cast to float32 (by rounding) is shrunk until it does not, so the certificate
of :mod:`lipsort.certify` holds for the float32 arrays as stored.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable

import numpy as np

from lipsort import activations, constraints, norms

EXPORT_ARRAYS = "export.npz"
EXPORT_META = "export.json"
FORMAT = 2


def norm_name(p: float) -> str:
    """The JSON name of a norm: "inf" or "2"."""
    return "inf" if p == math.inf else "2"


def parse_norm(p) -> float:
    return math.inf if p in ("inf", math.inf) else 2


# --- record types ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordType:
    """How one kind of export record computes and certifies.

    Attributes:
      numpy: ``numpy(record, arrays, h) → h'`` with numpy only.
      jax: ``jax(record, params, h) → h'`` with JAX arrays (``params``: name → array).
      bound: ``bound(record, arrays) → float``, the certified Lipschitz constant of the
        record in its norms (float64, recomputed from the arrays).
      linear: whether the record is a linear (weight) layer.
    """

    numpy: Callable[[dict, dict, Any], Any]
    jax: Callable[[dict, dict, Any], Any]
    bound: Callable[[dict, dict], float]
    linear: bool


def _dense_bound(record: dict, arrays: dict) -> float:
    p, q = (parse_norm(v) for v in record["norms"])
    return constraints.get(record.get("constraint", "none")).bound(arrays[record["kernel"]], p, q)


def _conv_bound(record: dict, arrays: dict) -> float:
    from lipsort import convolution

    return convolution.certified_conv_norm(arrays[record["kernel"]], record["input_size"], record["padding"],
                                           record.get("strides", (1, 1)))


def _conv_numpy(record, arrays, h):
    from lipsort import convolution

    y = convolution.conv_numpy(h, arrays[record["kernel"]], record["strides"], record["padding"])
    return y + arrays[record["bias"]].astype(y.dtype, copy=False)


def _conv_jax(record, params, h):
    from lipsort import convolution

    return convolution.conv(h, params[record["kernel"]], record["strides"], record["padding"]) + params[record["bias"]]


def _space_to_depth(record, arrays, h):
    from lipsort import convolution

    return convolution.space_to_depth(h, record["block"])


def _activation_numpy(record, arrays, h):
    return activations.lookup(record["name"]).numpy(h, record["group_size"])


def _activation_jax(record, params, h):
    return activations.get_activation(record["name"], record["group_size"])(h)


RECORD_TYPES: dict[str, RecordType] = {
    "dense": RecordType(
        numpy=lambda r, arrays, h: h @ arrays[r["kernel"]] + arrays[r["bias"]],
        jax=lambda r, params, h: h @ params[r["kernel"]] + params[r["bias"]],
        bound=_dense_bound,
        linear=True,
    ),
    "conv": RecordType(numpy=_conv_numpy, jax=_conv_jax, bound=_conv_bound, linear=True),
    "space_to_depth": RecordType(numpy=_space_to_depth, jax=_space_to_depth, bound=lambda r, arrays: 1.0,
                                 linear=False),
    "flatten": RecordType(numpy=lambda r, arrays, h: h.reshape(h.shape[0], -1),
                          jax=lambda r, params, h: h.reshape(h.shape[0], -1), bound=lambda r, arrays: 1.0,
                          linear=False),
    "activation": RecordType(
        numpy=_activation_numpy,
        jax=_activation_jax,
        bound=lambda r, arrays: float(r.get("lipschitz", activations.lookup(r["name"]).lipschitz)),
        linear=False,
    ),
}


def record_type(record: dict) -> RecordType:
    kind = record.get("type")
    if kind not in RECORD_TYPES:
        raise ValueError(f"unknown export record type {kind!r}; known types: {', '.join(RECORD_TYPES)}.")
    return RECORD_TYPES[kind]


# --- the exported model -------------------------------------------------------------------


@dataclasses.dataclass
class ExportedModel:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def layers(self) -> list[dict]:
        return self.meta["layers"]

    @property
    def linear_layers(self) -> list[dict]:
        return [r for r in self.layers if record_type(r).linear]

    @property
    def num_layers(self) -> int:
        """Number of linear records."""
        return len(self.linear_layers)

    def layer_norms(self) -> list[tuple[float, float]]:
        """(p_in, p_out) of each linear record, in order."""
        return [tuple(parse_norm(p) for p in r["norms"]) for r in self.linear_layers]


# A relative shrink of 2^-22 moves every float32 entry down by ≥ 1 ulp (and covers the
# ~1e-7 by which rounding an orthonormal float64 kernel to float32 lifts its σ_max).
SHRINK = 1.0 - 2.0**-22


def fit_under(kernel64: np.ndarray, bound: float, p: float, q: float) -> np.ndarray:
    """Casts to float32 such that the exact ℓp→ℓq norm (in float64) is ≤ ``bound``.

    The guarantee is the check of the stored float32 kernel with :func:`norms.operator_norm`
    (exact; a certified upper bound for (2, 2)), repeated after every shrink. For (2, 2)
    the float64 kernel is first scaled to ``bound``·(1 − 2^-22) by a fast σ_max estimate
    (:func:`norms.sigma_max_estimate`), which leaves room for the rounding of the cast, so
    one exact norm — the one the record and the certificate reuse — is normally all it takes.
    """
    kernel64 = np.asarray(kernel64, np.float64)
    if (norms._parse_p(p, "p"), norms._parse_p(q, "q")) == (2, 2):
        estimate = norms.sigma_max_estimate(kernel64)
        if estimate > bound * SHRINK:
            kernel64 = kernel64 * (bound * SHRINK / estimate)
    else:
        norm = norms.operator_norm(kernel64, p, q)
        if norm > bound:
            kernel64 = kernel64 * (bound / norm)
    kernel32 = kernel64.astype(np.float32)
    for _ in range(64):
        norm32 = norms.operator_norm(kernel32, p, q)
        if norm32 <= bound:
            return kernel32
        kernel32 = (kernel32.astype(np.float64) * (min(bound / norm32, 1.0) * SHRINK)).astype(np.float32)
    raise RuntimeError("could not round the kernel under its norm bound; this is a bug.")


def export_model(model) -> ExportedModel:
    """Exact constrained float32 weights of a :class:`lipsort.models.LipschitzMLP`, K
    folded into the last layer, as typed records (and the flat dense keys); a model with
    its own ``export()`` (:class:`lipsort.conv_models.LipschitzConvNet`) exports itself."""
    from lipsort.models import layer_norm_chain  # models imports layers, not export

    if hasattr(model, "export"):
        return model.export()

    spec = model.spec
    chain = layer_norm_chain(spec, model.constraints)
    k = model.lipschitz_constant
    act = activations.lookup(spec.activation)
    arrays, records = {}, []
    last = len(model.layers) - 1
    bias_scales = spec.export_bias_scales()  # K spread over the layers → biases ÷ s^i (models.py)
    for i, (layer, constraint, (p, q)) in enumerate(zip(model.layers, model.constraints, chain)):
        scale = k if i == last else 1.0
        kernel = layer.export_kernel() * scale
        kernel32 = fit_under(kernel, scale, p, q) if constraint != "none" else kernel.astype(np.float32)
        bias = np.asarray(layer.bias[...], np.float64) if layer.bias is not None else np.zeros(kernel.shape[1])
        arrays[f"kernel_{i}"] = kernel32
        arrays[f"bias_{i}"] = (bias * bias_scales[i] * scale).astype(np.float32)
        record = {"type": "dense", "kernel": f"kernel_{i}", "bias": f"bias_{i}", "constraint": constraint,
                  "norms": [norm_name(p), norm_name(q)]}
        record["bound"] = _dense_bound(record, arrays)
        records.append(record)
        if i < last:
            records.append({"type": "activation", "name": spec.activation, "group_size": spec.group_size,
                            "lipschitz": act.lipschitz})
    meta = {
        "format": FORMAT,
        "input_shape": [spec.in_features],
        "layers": records,
        "activation": spec.activation,
        "group_size": spec.group_size,
        "norm": spec.norm,
        "lipschitz_constant": k,
        "layer_sizes": spec.layer_sizes(),
        "kernel_shapes": [list(shape) for shape in spec.layer_in_out()],
        "constraints": list(model.constraints),
        "layer_norms": [[norm_name(p), norm_name(q)] for p, q in chain],
    }
    return ExportedModel(arrays, meta)


def save_export(exported: ExportedModel, directory: str) -> None:
    """Writes ``export.npz`` and ``export.json`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, EXPORT_ARRAYS), **exported.arrays)
    with open(os.path.join(directory, EXPORT_META), "w") as f:
        json.dump(exported.meta, f, indent=2)


def records_from_flat(meta: dict, arrays: dict) -> list[dict]:
    """The typed records of a format-1 (dense-only, flat keys) export."""
    n = sum(1 for name in arrays if name.startswith("kernel_"))
    constraint_names = meta.get("constraints", ["none"] * n)
    records = []
    for i, (pair, constraint) in enumerate(zip(meta["layer_norms"], constraint_names)):
        records.append({"type": "dense", "kernel": f"kernel_{i}", "bias": f"bias_{i}",
                        "constraint": constraint, "norms": list(pair)})
        if i < n - 1:
            records.append({"type": "activation", "name": meta["activation"], "group_size": meta["group_size"],
                            "lipschitz": 1.0})
    return records


def load_export(directory: str) -> ExportedModel:
    """Reads an export (format 1 or 2), with a clear error when files are missing or corrupt."""
    paths = [os.path.join(directory, name) for name in (EXPORT_ARRAYS, EXPORT_META)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"no export in {directory!r}: missing {', '.join(missing)}.")
    try:
        with np.load(paths[0]) as data:
            arrays = {name: data[name] for name in data.files}
        with open(paths[1]) as f:
            meta = json.load(f)
        if "layers" not in meta:
            meta = {**meta, "layers": records_from_flat(meta, arrays),
                    "input_shape": [int(arrays["kernel_0"].shape[0])]}
        exported = ExportedModel(arrays, meta)
        needed = [r[key] for r in exported.linear_layers for key in ("kernel", "bias")]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"corrupt export in {directory!r} ({e}); re-export the model.") from e
    absent = [name for name in needed if name not in arrays]
    if absent:
        raise ValueError(f"corrupt export in {directory!r}: its records name missing arrays {absent}.")
    return exported


# --- forward passes ---------------------------------------------------------------------------


def _as_input(h, input_shape):
    """Flat (N, H·W·C) rows of an image model reshaped to (N, H, W, C); others unchanged."""
    if len(input_shape) > 1 and h.ndim == 2:
        return h.reshape((h.shape[0],) + tuple(input_shape))
    return h


def numpy_forward(exported: ExportedModel, x: np.ndarray) -> np.ndarray:
    """f(x) from an export with numpy only: the records applied in order."""
    h = _as_input(np.asarray(x), exported.meta.get("input_shape", ()))
    for record in exported.layers:
        h = record_type(record).numpy(record, exported.arrays, h)
    return h


# Record keys that do not change the function (only its certificate): exports that differ
# in them alone share one apply function, hence one compilation of every search over it.
_NOT_FUNCTIONAL = ("bound", "constraint", "norms", "input_size", "lipschitz")


def _frozen(record: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in record.items()
                        if k not in _NOT_FUNCTIONAL))


@functools.lru_cache(maxsize=None)
def _apply_for(structure: tuple, input_shape: tuple = ()) -> Callable:
    records = [dict(r) for r in structure]

    def apply(params, x):
        h = _as_input(x, input_shape)
        for record in records:
            h = record_type(record).jax(record, params, h)
        return h

    return apply


def export_apply(exported: ExportedModel) -> Callable:
    """``apply(params, x)``: the export's function in JAX (the same as :func:`numpy_forward`).

    One function object per record structure (arrays aside), so jitted searches over many
    exports of the same architecture compile once; ``params`` is :func:`export_params`.
    """
    return _apply_for(tuple(_frozen(r) for r in exported.layers), tuple(exported.meta.get("input_shape", ())))


def export_params(exported: ExportedModel) -> dict:
    """The export's arrays as a dict of JAX arrays (the ``params`` of :func:`export_apply`)."""
    import jax.numpy as jnp

    return {name: jnp.asarray(a) for name, a in exported.arrays.items()}
