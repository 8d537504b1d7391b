"""Lipschitz convolutional networks: conv layers, the 1-Lipschitz glue, a Lipschitz MLP head.

    f(x) = K · head(flatten(S_n(σ(C_n(… S_1(σ(C_1(x))) …)))))

with C_i a :class:`LipschitzConv` (ℓ2 → ℓ2 norm ≤ 1 by its conv constraint,
:mod:`lipsort.conv_constraints`), σ a 1-Lipschitz activation on the channel axis
(GroupSort/MaxMin sort channel groups), S_i an optional ``space_to_depth(2)`` (a
permutation: the invertible downsampling) and the head a :class:`lipsort.models.LipschitzMLP`
(Björck by default) that carries K. So f is K-Lipschitz from ℓ2 to the head's output
norm. Images are NHWC; the network also takes them flattened row-major (N, H·W·C), the
layout of :mod:`lipsort.data` and of the attacks, and reshapes them first (an isometry).

Config (``config.model``, ``kind = "conv"``): ``conv_channels`` (one conv layer each),
``downsample`` (per layer: space_to_depth(2) after its activation), ``kernel_size``,
``padding`` (``zeros`` or ``circular``), ``conv_constraint`` (``bcop``, ``aol``,
``none``), and the head's fields as for an MLP (``widths``, ``constraint``, Björck
options, ``lipschitz_constant``, ``activation``, ``group_size``, shared with the convs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lipsort import activations as acts
from lipsort import conv_constraints, convolution
from lipsort.models import LipschitzMLP, MLPSpec

Array = jax.Array
DOWNSAMPLE_BLOCK = 2


class LipschitzConv(nnx.Module):
    """y = conv(x, C(params)) + bias on NHWC x, C the conv constraint (kernel HWIO)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, strides=(1, 1),
                 padding: str = "zeros", constraint: str = "bcop", use_bias: bool = True,
                 rngs: nnx.Rngs, **options):
        rule = conv_constraints.get(constraint)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.kernel_shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.strides = tuple(int(s) for s in strides)
        self.padding = convolution.check_padding(padding)
        self.constraint = constraint
        self.rule = rule
        self.options = rule.make_options(options)
        self.retracts = False  # no conv constraint retracts (yet): see conv_constraints
        rule.setup(self, rngs)
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if use_bias else None

    def constrained_kernel(self) -> Array:
        return self.rule.kernel(self)

    def export_kernel(self) -> np.ndarray:
        """The constrained kernel in float64 (what an export stores, before certification)."""
        return self.rule.export(self)

    def __call__(self, x: Array) -> Array:
        y = convolution.conv(x, self.constrained_kernel(), self.strides, self.padding)
        return y + self.bias[...] if self.bias is not None else y


def _positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything that defines a Lipschitz conv net (module docstring)."""

    input_shape: tuple[int, int, int]
    conv_channels: tuple[int, ...]
    downsample: tuple[bool, ...]
    head: MLPSpec
    kernel_size: int = 3
    padding: str = "zeros"
    conv_constraint: str = "bcop"
    bjorck_iters: int = 15

    # what the training loop reads of a spec (the head's Björck layers retract)
    @property
    def constraint(self) -> str:
        return self.head.constraint

    @property
    def bjorck_training(self) -> str:
        return self.head.bjorck_training

    @property
    def retraction_tol(self) -> float:
        return self.head.retraction_tol

    @property
    def activation(self) -> str:
        return self.head.activation

    @property
    def group_size(self) -> int | None:
        return self.head.group_size

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(H, W, C) entering each conv layer, then the shape that is flattened."""
        h, w, c = self.input_shape
        shapes = [(h, w, c)]
        for channels, down in zip(self.conv_channels, self.downsample):
            c = acts.activation_output_width(self.activation, channels, self.group_size)
            if down:
                if h % DOWNSAMPLE_BLOCK or w % DOWNSAMPLE_BLOCK:
                    raise ValueError(f"downsample needs an even height and width; the features are {h}×{w} there. "
                                     "Drop that downsample or change the input size.")
                h, w, c = h // DOWNSAMPLE_BLOCK, w // DOWNSAMPLE_BLOCK, c * DOWNSAMPLE_BLOCK**2
            shapes.append((h, w, c))
        return shapes

    def check_layout(self) -> "ConvSpec":
        """The conv stack's own fields (what :meth:`feature_shapes` needs); returns self."""
        if len(self.input_shape) != 3 or not all(_positive_int(s) for s in self.input_shape):
            raise ValueError(f"a conv model needs images (H, W, C); the data has input shape {self.input_shape}.")
        if not self.conv_channels or not all(_positive_int(c) for c in self.conv_channels):
            raise ValueError(f"conv_channels must be a non-empty list of positive integers (e.g. [32, 64]), got "
                             f"{list(self.conv_channels)}.")
        if len(self.downsample) != len(self.conv_channels):
            raise ValueError(f"downsample must have one entry per conv layer ({len(self.conv_channels)}), got "
                             f"{list(self.downsample)}.")
        return self

    def validate(self) -> "ConvSpec":
        self.check_layout()
        if not _positive_int(self.kernel_size):
            raise ValueError(f"kernel_size must be a positive integer, got {self.kernel_size!r}.")
        convolution.check_padding(self.padding)
        rule = conv_constraints.get(self.conv_constraint)
        rule.make_options({"bjorck_iters": self.bjorck_iters})
        for channels in self.conv_channels:  # the group size must divide every channel count
            acts.activation_output_width(self.activation, channels, self.group_size)
        flat = math.prod(self.feature_shapes()[-1])
        if flat != self.head.in_features:
            raise ValueError(f"the head takes {self.head.in_features} features, the convs give {flat}.")
        self.head.validate()
        return self

    def build(self, rngs: nnx.Rngs) -> "LipschitzConvNet":
        return LipschitzConvNet(self, rngs=rngs)


class LipschitzConvNet(nnx.Module):
    """A K-Lipschitz conv net built from a :class:`ConvSpec` (module docstring)."""

    def __init__(self, spec: ConvSpec, *, rngs: nnx.Rngs):
        self.spec = spec.validate()
        shapes = spec.feature_shapes()
        self.convs = nnx.List([
            LipschitzConv(shape[2], channels, spec.kernel_size, padding=spec.padding,
                          constraint=spec.conv_constraint, rngs=rngs, bjorck_iters=spec.bjorck_iters)
            for shape, channels in zip(shapes, spec.conv_channels)
        ])
        self.head = LipschitzMLP(spec.head, rngs=rngs)
        self.activation = acts.get_activation(spec.activation, spec.group_size)

    @property
    def lipschitz_constant(self) -> float:
        return self.head.lipschitz_constant

    @property
    def layers(self) -> list:
        """Every linear layer: the convs, then the head's dense layers."""
        return list(self.convs) + list(self.head.layers)

    def features(self, x: Array) -> Array:
        """The flattened output of the conv stack (the head's input)."""
        if x.ndim == 2:
            x = x.reshape((x.shape[0],) + tuple(self.spec.input_shape))
        h = x
        for conv, down in zip(self.convs, self.spec.downsample):
            h = self.activation(conv(h))
            if down:
                h = convolution.space_to_depth(h, DOWNSAMPLE_BLOCK)
        return h.reshape(h.shape[0], -1)

    def __call__(self, x: Array) -> Array:
        return self.head(self.features(x))

    @property
    def retracts(self) -> bool:
        return self.head.retracts

    def retract(self) -> dict[str, Array]:
        return self.head.retract()

    def export(self):
        """The typed export (format 2) of this network; see :func:`export_conv_net`."""
        return export_conv_net(self)


def fit_conv_under(kernel64: np.ndarray, input_hw, padding: str, bound: float = 1.0,
                   strides=(1, 1)) -> tuple[np.ndarray, float]:
    """(float32 kernel, its certified norm ≤ ``bound``): the conv analogue of
    :func:`lipsort.export.fit_under`. A constrained kernel is already within rounding of
    ``bound`` (BCOP, AOL), so the plain float32 cast is checked first; only if its exact
    norm exceeds ``bound`` is it shrunk by bound/norm·(1 − 2⁻²²) and checked again. Each
    check is one FFT + SVD per frequency, cached (the certificate reuses the last one)."""
    from lipsort.export import SHRINK

    kernel32 = np.asarray(kernel64, np.float64).astype(np.float32)
    for _ in range(64):
        norm32 = convolution.certified_conv_norm(kernel32, input_hw, padding, strides)
        if norm32 <= bound:
            return kernel32, norm32
        kernel32 = (kernel32.astype(np.float64) * (min(bound / norm32, 1.0) * SHRINK)).astype(np.float32)
    raise RuntimeError("could not round the conv kernel under its norm bound; this is a bug.")


def export_conv_net(model: LipschitzConvNet):
    """Records ``conv`` (with ``input_size``, the H×W its bound is certified for),
    ``activation``, ``space_to_depth``, ``flatten``, then the head's ``dense`` and
    ``activation`` records (K folded into the last); arrays ``conv_kernel_i`` /
    ``conv_bias_i`` and the head's ``kernel_i`` / ``bias_i``."""
    from lipsort.export import FORMAT, ExportedModel, export_model

    spec = model.spec
    act = acts.lookup(spec.activation)
    arrays: dict[str, np.ndarray] = {}
    records: list[dict] = []
    for i, (conv, shape, down) in enumerate(zip(model.convs, spec.feature_shapes(), spec.downsample)):
        hw = list(shape[:2])
        kernel64 = conv.export_kernel()
        if conv.rule.constrained:
            kernel32, bound = fit_conv_under(kernel64, hw, conv.padding, strides=conv.strides)
        else:
            kernel32 = kernel64.astype(np.float32)
            bound = convolution.certified_conv_norm(kernel32, hw, conv.padding, conv.strides)
        arrays[f"conv_kernel_{i}"] = kernel32
        bias = conv.bias[...] if conv.bias is not None else np.zeros(kernel32.shape[3])
        arrays[f"conv_bias_{i}"] = np.asarray(bias, np.float32)
        records.append({"type": "conv", "kernel": f"conv_kernel_{i}", "bias": f"conv_bias_{i}",
                        "strides": list(conv.strides), "padding": conv.padding, "constraint": conv.constraint,
                        "norms": ["2", "2"], "input_size": hw, "bound": bound})
        records.append({"type": "activation", "name": spec.activation, "group_size": spec.group_size,
                        "lipschitz": act.lipschitz})
        if down:
            records.append({"type": "space_to_depth", "block": DOWNSAMPLE_BLOCK})
    records.append({"type": "flatten"})
    head = export_model(model.head)
    arrays.update(head.arrays)
    records.extend(head.layers)
    meta = {
        "format": FORMAT,
        "model": "conv",
        "input_shape": list(spec.input_shape),
        "layers": records,
        "lipschitz_constant": model.lipschitz_constant,
        "norm": spec.head.norm,
        "activation": spec.activation,
        "group_size": spec.group_size,
    }
    return ExportedModel(arrays, meta)


CONV_FIELDS = ("conv_channels", "downsample", "kernel_size", "padding", "conv_constraint")


def spec_from_config(model_config: Any, in_features: int, out_features: int,
                     input_shape: tuple | None = None) -> ConvSpec:
    """A :class:`ConvSpec` from a ``config.model`` with ``kind = "conv"``."""
    from lipsort.models import mlp_spec_from_config

    get = model_config.get if hasattr(model_config, "get") else lambda k, d=None: getattr(model_config, k, d)
    if input_shape is None or len(input_shape) != 3:
        raise ValueError("config.model.kind='conv' needs image data (H, W, C); this task's inputs are vectors "
                         f"of {in_features}. Use kind='mlp'.")
    channels = tuple(get("conv_channels", None) or ())
    downsample = get("downsample", None)
    downsample = tuple(bool(d) for d in downsample) if downsample is not None else (False,) * len(channels)
    fields = dict(
        input_shape=tuple(int(s) for s in input_shape), conv_channels=channels, downsample=downsample,
        kernel_size=get("kernel_size", 3), padding=get("padding", "zeros"),
        conv_constraint=get("conv_constraint", "bcop"), bjorck_iters=get("bjorck_iters", 15),
    )
    # the head's input width follows from the conv stack: check its layout first
    probe = ConvSpec(head=MLPSpec(in_features=1, widths=(), out_features=1, activation=get("activation", "group_sort"),
                                  group_size=get("group_size", 2)), **fields).check_layout()
    flat = math.prod(probe.feature_shapes()[-1])
    head = dataclasses.replace(mlp_spec_from_config(model_config, flat, out_features), input_grad=True)
    return ConvSpec(head=head, **fields).validate()


__all__ = ["LipschitzConv", "ConvSpec", "LipschitzConvNet", "export_conv_net", "fit_conv_under", "spec_from_config"]
