"""Lipschitz MLPs: f(x) = K · L_n ∘ σ ∘ … ∘ σ ∘ L_1(x), and their configuration.

Where K enters (``lipschitz_placement``): ``"output"`` multiplies the last layer's
output by K; ``"per_layer"`` (LNets', the paper's code) multiplies every layer's output,
bias included, by s = K^(1/n): z_i = s·(W_i h_{i−1} + b_i). For a positively homogeneous
σ both are one function class: with u_i = h_i / s^i,
u_i = σ(W_i u_{i−1} + b_i / s^(i−1)) and f = K·(W_n u_{n−1} + b_n / s^(n−1)), which is
how a per-layer network is exported (biases ÷ s^(i−1), K at the output). They differ in
training: per layer, a bias step moves the unit by lr·∂/∂b relative to hidden values of
size s^i, not 1 (with K = 1000 and ∞-norm layers, output placement lets AggMo's bias
steps dwarf the hidden values).

Every linear layer L_i has operator norm ≤ 1 in the network's norm chain and every
activation σ is 1-Lipschitz, so f is K-Lipschitz. The valid norm chains are:

=========  ==========================================  =======================
``norm``   layers (first → rest)                        f is K-Lipschitz from → to
=========  ==========================================  =======================
``l2``     bjorck/spectral → bjorck/spectral             ℓ2 → ℓ2
``l2``     two_inf → linf  (``constraint='two_inf'``,     ℓ2 → ℓ∞ (the paper's universal
           or ``'linf'`` with the default first layer)   ℓ2 construction)
``linf``   linf → linf                                   ℓ∞ → ℓ∞
any        none                                          (no guarantee; a baseline)
=========  ==========================================  =======================

Any other combination (e.g. Björck layers measured in ℓ∞, where an orthogonal matrix
has norm up to √n) is rejected with an error instead of silently losing the certificate.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from lipsort import activations as acts
from lipsort import constraints
from lipsort.layers import LipschitzDense
from lipsort.registry import Registry

Array = jax.Array
NORMS = ("l2", "linf")


def _first_layer_default(constraint: str, norm: str) -> str:
    if constraint in ("linf", "two_inf"):
        return "two_inf" if norm == "l2" else "linf"
    return constraint


def resolve_constraints(
    num_layers: int, constraint: str, first_constraint: str | None, norm: str
) -> list[str]:
    """Per-layer constraints for a network, after checking that they chain in ``norm``."""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; valid norms are: {', '.join(NORMS)}.")
    constraints.get(constraint)
    first = first_constraint or _first_layer_default(constraint, norm)
    constraints.get(first)
    rest = "linf" if constraint == "two_inf" else constraint
    chain = [first] + [rest] * (num_layers - 1)
    if "none" in chain:
        return chain  # a baseline: allowed, and its certificate will say what it is
    p_in = 2 if norm == "l2" else math.inf
    for i, c in enumerate(chain):
        c_in, c_out = constraints.get(c).norms
        if c_in != p_in:
            raise ValueError(
                f"layer {i} constraint {c!r} bounds the norm from ℓ{c_in}, but its input is "
                f"measured in ℓ{p_in} (norm={norm!r}, chain {chain}). Valid choices: "
                "norm='l2' with bjorck/spectral, or norm='l2' with first layer 'two_inf' and "
                "constraint 'linf'; norm='linf' with constraint 'linf'."
            )
        p_in = c_out
    return chain


LIPSCHITZ_PLACEMENTS = ("output", "per_layer")

# K is folded into the last exported float32 layer (weights of norm ≤ K, biases × K): far
# below float32's 3.4e38, so no exported weight can overflow.
MAX_LIPSCHITZ_CONSTANT = 1e30


def _check_lipschitz_constant(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k <= 0:
        raise ValueError(f"lipschitz_constant (K) must be a finite number > 0, got {k!r}.")
    if k > MAX_LIPSCHITZ_CONSTANT:
        raise ValueError(f"lipschitz_constant (K) must be ≤ {MAX_LIPSCHITZ_CONSTANT:g} so the exported float32 "
                         f"weights stay finite, got {k!r}.")
    return float(k)


@dataclasses.dataclass(frozen=True)
class MLPSpec:
    """Everything that defines a Lipschitz MLP's architecture."""

    in_features: int
    widths: tuple[int, ...]
    out_features: int
    activation: str = "group_sort"
    group_size: int | None = 2
    constraint: str = "bjorck"
    first_constraint: str | None = None
    lipschitz_constant: float = 1.0
    lipschitz_placement: str = "output"
    norm: str = "l2"
    bjorck_iters: int = 15
    bjorck_order: int = 1
    bjorck_beta: float = 0.5
    power_iters: int = 1
    bjorck_training: str = "unrolled"
    bjorck_method: str = "bjorck"
    retraction_tol: float = 5e-4
    linf_training: str = "differentiated"
    linf_projection: str = "ball"
    use_bias: bool = True
    # whether anything needs the gradient for the network's input (a conv stack below
    # the MLP does); False lets a riemannian first layer skip it
    input_grad: bool = False

    def build(self, rngs: nnx.Rngs) -> "LipschitzMLP":
        return LipschitzMLP(self, rngs=rngs)

    def layer_sizes(self) -> list[int]:
        """[in, h_1, …, out]: the input width, then each linear layer's output width.

        With maxout the next layer's input is h_i / group_size, not h_i; the exact
        kernel shapes are :meth:`layer_in_out` (``kernel_shapes`` in an export).
        """
        sizes = [self.in_features]
        for width in self.widths:
            sizes.append(width)
        return sizes + [self.out_features]

    def layer_scale(self) -> float:
        """s, the factor after every linear layer: K^(1/n) per layer, else 1 (K at the output)."""
        if self.lipschitz_placement == "per_layer":
            return float(self.lipschitz_constant) ** (1.0 / (len(self.widths) + 1))
        return 1.0

    def export_bias_scales(self) -> list[float]:
        """What each layer's bias is multiplied by in the export, where K sits at the
        output: 1/s^i for layer i (0-based; the module docstring's b_i / s^(i−1))."""
        s = self.layer_scale()
        return [s ** -i for i in range(len(self.widths) + 1)]

    def layer_in_out(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer, after the activation's width change."""
        pairs, fan_in = [], self.in_features
        for width in self.widths:
            pairs.append((fan_in, width))
            fan_in = acts.activation_output_width(self.activation, width, self.group_size)
        pairs.append((fan_in, self.out_features))
        return pairs

    def validate(self) -> "MLPSpec":
        """Raises a clear ValueError for any invalid field; returns self."""
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {list(self.widths)}.")
        acts.get_activation(self.activation, self.group_size)  # unknown name → error
        self.layer_in_out()  # group size must divide every width
        _check_lipschitz_constant(self.lipschitz_constant)
        if self.lipschitz_placement not in LIPSCHITZ_PLACEMENTS:
            raise ValueError(f"lipschitz_placement must be one of {', '.join(LIPSCHITZ_PLACEMENTS)}, "
                             f"got {self.lipschitz_placement!r}.")
        if self.lipschitz_placement == "per_layer" and not acts.lookup(self.activation).homogeneous:
            raise ValueError(f"lipschitz_placement='per_layer' needs a positively homogeneous activation "
                             f"(σ(s·z) = s·σ(z)); {self.activation!r} is not registered as one. "
                             "Use lipschitz_placement='output'.")
        chain = resolve_constraints(len(self.widths) + 1, self.constraint, self.first_constraint, self.norm)
        for name in dict.fromkeys(chain):  # each constraint in use validates its options
            constraints.get(name).make_options(self.constraint_options())
        return self

    def constraint_options(self) -> dict[str, Any]:
        """The constraint option fields (``bjorck_iters``, ``power_iters``, …) of this spec."""
        return {name: getattr(self, name) for name in constraints.option_fields()}


class LipschitzMLP(nnx.Module):
    """A K-Lipschitz MLP built from an :class:`MLPSpec` (see the module docstring)."""

    def __init__(self, spec: MLPSpec, *, rngs: nnx.Rngs):
        self.spec = spec.validate()
        chain = resolve_constraints(len(spec.widths) + 1, spec.constraint, spec.first_constraint, spec.norm)
        self.constraints = tuple(chain)
        self.layers = nnx.List(
            [
                LipschitzDense(
                    fan_in,
                    fan_out,
                    constraint=c,
                    use_bias=spec.use_bias,
                    input_grad=i > 0 or spec.input_grad,  # the first layer's input is the data
                    rngs=rngs,
                    **spec.constraint_options(),
                )
                for i, ((fan_in, fan_out), c) in enumerate(zip(spec.layer_in_out(), chain))
            ]
        )
        self.activation = acts.get_activation(spec.activation, spec.group_size)
        self.lipschitz_constant = float(spec.lipschitz_constant)
        self.layer_scale = spec.layer_scale()

    def forward_with_hidden(self, x: Array) -> tuple[Array, list[Array]]:
        """Returns f(x) and the post-activation hidden vectors h_1, …, h_{n-1}."""
        hidden = []
        h = x
        s = self.layer_scale  # 1 with K at the output: no multiply in the step then
        for layer in self.layers[:-1]:
            z = layer(h)
            h = self.activation(z if s == 1.0 else s * z)
            hidden.append(h)
        # K / s^(n−1): K with K at the output, s per layer
        return self.lipschitz_constant / s ** (len(self.layers) - 1) * self.layers[-1](h), hidden

    def __call__(self, x: Array) -> Array:
        return self.forward_with_hidden(x)[0]

    @property
    def retracts(self) -> bool:
        """Whether some layer keeps its kernel on its constraint set after each update
        (Björck retraction/riemannian, projected ∞-norm layers; see :meth:`retract`)."""
        return any(layer.retracts for layer in self.layers)

    def retract(self) -> dict[str, Array]:
        """Retracts (or projects) every such layer in place (call after each update).

        Returns per-step metrics, each reduced over the layers as its constraint's
        ``retract_metrics`` says: for Björck layers the worst ``retraction_drift`` (the
        residual the update caused) and ``orthogonality_residual`` (predicted ‖WᵀW − I‖₂
        now, what the next forward pass sees), the total ``retraction_steps`` and their
        n³ ``retraction_matmuls``; for projected ∞-norm layers the worst
        ``projection_excess``. Empty when no layer retracts.
        """
        values: dict[str, list[Array]] = {}
        reducers: dict[str, Callable] = {}
        for layer in self.layers:
            stats = layer.retract()
            if stats is None:
                continue
            for metric, (key, reduce) in layer.rule.retract_metrics.items():
                values.setdefault(metric, []).append(stats[key])
                reducers[metric] = reduce
        return {metric: reducers[metric](jnp.stack(vs)) for metric, vs in values.items()}


def mlp_spec_from_config(model_config: Any, in_features: int, out_features: int) -> MLPSpec:
    """An :class:`MLPSpec` from a ``config.model`` (ml_collections or dict-like)."""
    get = _getter(model_config)
    defaults = MLPSpec(in_features=1, widths=(), out_features=1)
    fields = {
        f.name: get(f.name, getattr(defaults, f.name))
        for f in dataclasses.fields(MLPSpec)
        if f.name not in ("in_features", "out_features", "widths")
    }
    widths = get("widths", None)
    if widths is None:
        raise ValueError("config.model.widths is required (a list of hidden widths, e.g. [128, 128]).")
    return MLPSpec(in_features=in_features, widths=tuple(widths), out_features=out_features, **fields).validate()


def _getter(model_config: Any) -> Callable:
    return model_config.get if hasattr(model_config, "get") else lambda k, d=None: getattr(model_config, k, d)


def _conv_spec_from_config(model_config, in_features, out_features, input_shape):
    from lipsort import conv_models  # conv_models imports this module

    return conv_models.spec_from_config(model_config, in_features, out_features, input_shape)


# config.model.kind → fn(config.model, in_features, out_features, input_shape) → a spec
# with .build(rngs). To add a model family: one entry here.
MODEL_KINDS: Registry[Callable] = Registry("model kind")
MODEL_KINDS.add("mlp", lambda cfg, i, o, shape: mlp_spec_from_config(cfg, i, o))
MODEL_KINDS.add("conv", _conv_spec_from_config)


def spec_from_config(model_config: Any, in_features: int, out_features: int, input_shape: tuple | None = None):
    """The spec of the model a ``config.model`` describes (``kind``: ``mlp``, the
    default, or ``conv``; :data:`MODEL_KINDS`). ``input_shape`` is the data's shape
    without the batch axis ((H, W, C) for images; conv models need it)."""
    kind = _getter(model_config)("kind", "mlp") or "mlp"
    return MODEL_KINDS.lookup(kind)(model_config, in_features, out_features, input_shape)


def build_model(model_config: Any, in_features: int, out_features: int, seed: int = 0,
                input_shape: tuple | None = None) -> nnx.Module:
    """Builds the model a config describes; every invalid field raises before any work."""
    return spec_from_config(model_config, in_features, out_features, input_shape).build(nnx.Rngs(seed))


def layer_norm_chain(spec: MLPSpec, names: Sequence[str]) -> list[tuple[float, float]]:
    """(p_in, p_out) in which each layer's operator norm enters the certificate."""
    p = 2 if spec.norm == "l2" else math.inf
    chain = []
    for c in names:
        p_in, p_out = constraints.get(c).norms or (p, p)  # 'none' keeps the current norm
        chain.append((p_in, p_out))
        p = p_out
    return chain


__all__ = [
    "MLPSpec",
    "LipschitzMLP",
    "build_model",
    "spec_from_config",
    "mlp_spec_from_config",
    "MODEL_KINDS",
    "resolve_constraints",
    "layer_norm_chain",
    "NORMS",
    "LIPSCHITZ_PLACEMENTS",
]
