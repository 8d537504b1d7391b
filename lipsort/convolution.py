"""The convolution operator and its norm: apply (JAX and numpy), compose, certify.

Conventions (DESIGN.md, export format 2): images are NHWC, kernels HWIO (kh, kw, c_in,
c_out), and a convolution is XLA's cross-correlation

    y[n, i, j, o] = Σ_{u, v, c} x_pad[n, i·s_h + u, j·s_w + v, c] · K[u, v, c, o].

Paddings (:data:`PADDINGS`): ``"zeros"`` is XLA's SAME zero padding; ``"circular"`` pads
by (k−1)//2 before and k//2 after with wrap-around, then VALID. With stride 1 both keep
the spatial size.

The certified norm (:func:`certified_conv_norm`, float64). A stride-1 circular
convolution on an N₁×N₂ torus is block-diagonalized by the 2-D DFT: its ℓ2 operator norm
is exactly max over the N₁·N₂ frequencies f of σ_max(K̂(f)), K̂(f) = Σ_{u,v} K[u, v]
e^{−2πi(f₁u/N₁ + f₂v/N₂)} (a c_in×c_out matrix). A zero-padded (SAME) convolution of an
H×W input is the restriction of the circular one on the torus of (H + kh − 1)×(W + kw − 1)
to the zero-embedded input and the H×W output window (no wrapped tap reaches a nonzero
pixel), so that torus's norm is a proven upper bound.

Strides, by the polyphase decomposition. On a torus whose sides T are multiples of the
stride s, y[i] = Σ_u x[i·s + u]·K[u] = Σ_{q, r} x_r[i + q]·K[q·s + r] with x_r[m] =
x[m·s + r]: a stride-1 circular convolution on the (T/s)-torus of the s₁s₂·c_in-channel
input (x_r)_r, a permutation of x, with the kernel regrouped (:func:`polyphase_kernel`).
Its DFT norm is therefore exact for a circular layer with s | H, and for zero padding the
torus of side ⌈(H + k − 1)/s⌉·s contains the layer as above (the input shift by the SAME
padding is a circular shift, an isometry). A circular layer with s ∤ H keeps a subset of
the stride-1 outputs, so the stride-1 norm bounds it.
"""
from __future__ import annotations

import collections
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

from lipsort.norms import _one_blas_thread

Array = jax.Array
PADDINGS: tuple[str, ...] = ("zeros", "circular")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"Unknown padding {padding!r}; valid paddings are: {', '.join(PADDINGS)}.")
    return padding


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """XLA's SAME padding of one spatial axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _circular_pads(k: int) -> tuple[int, int]:
    return (k - 1) // 2, k // 2


def output_size(size: int, k: int, stride: int, padding: str) -> int:
    """The output length of one spatial axis (ceil(size / stride) for both paddings)."""
    check_padding(padding)
    return -(-size // stride)


# How the JAX convolution is computed (:func:`conv`): XLA's convolution, or the patches of
# the padded input (kh·kw strided slices, concatenated on the channel axis) times the
# reshaped kernel, one matmul. On XLA:CPU a convolution inside a while loop (every
# lax.scan: the training chunks, PGD, the searches) takes a slow path, ~20× its time
# outside one (jax-ml/jax#12868; 1.6 s vs 69 ms for the gradient of a 14×14×64→32 conv
# at batch 256, this repo's 2-core CPU, 2026-12-02), while the matmul form runs at
# 76–83 ms inside a scan. "auto": the matmul form on CPU, XLA's convolution elsewhere.
CONV_IMPLEMENTATIONS: tuple[str, ...] = ("auto", "xla", "matmul")


def _padded(x: Array, kernel_hw, strides, padding: str, xp=jnp) -> Array:
    (kh, kw), (sh, sw) = kernel_hw, strides
    if check_padding(padding) == "circular":
        return xp.pad(x, [(0, 0), _circular_pads(kh), _circular_pads(kw), (0, 0)], mode="wrap")
    pads = [_same_pads(x.shape[1], kh, sh), _same_pads(x.shape[2], kw, sw)]
    return xp.pad(x, [(0, 0), *pads, (0, 0)])


def _conv_matmul(x: Array, kernel: Array, strides, padding: str) -> Array:
    kh, kw, c_in, c_out = kernel.shape
    (sh, sw), (h, w) = strides, x.shape[1:3]
    ho, wo = -(-h // sh), -(-w // sw)
    x = _padded(x, (kh, kw), strides, padding)
    patches = jnp.concatenate([x[:, u: u + sh * (ho - 1) + 1: sh, v: v + sw * (wo - 1) + 1: sw]
                               for u in range(kh) for v in range(kw)], axis=-1)
    return patches @ kernel.reshape(kh * kw * c_in, c_out)


def conv(x: Array, kernel: Array, strides=(1, 1), padding: str = "zeros", impl: str = "auto") -> Array:
    """The convolution of NHWC ``x`` with HWIO ``kernel`` (JAX, differentiable);
    ``impl``: :data:`CONV_IMPLEMENTATIONS` (the same function, computed two ways)."""
    strides = tuple(int(s) for s in strides)
    if impl not in CONV_IMPLEMENTATIONS:
        raise ValueError(f"Unknown conv impl {impl!r}; valid: {', '.join(CONV_IMPLEMENTATIONS)}.")
    if impl == "matmul" or (impl == "auto" and jax.default_backend() == "cpu"):
        return _conv_matmul(x, kernel, strides, padding)
    if check_padding(padding) == "circular":
        x = _padded(x, kernel.shape[:2], strides, padding)
        return jax.lax.conv_general_dilated(x, kernel, strides, "VALID", dimension_numbers=_DIMENSIONS)
    return jax.lax.conv_general_dilated(x, kernel, strides, "SAME", dimension_numbers=_DIMENSIONS)


def conv_numpy(x: np.ndarray, kernel: np.ndarray, strides=(1, 1), padding: str = "zeros") -> np.ndarray:
    """:func:`conv` with numpy only (what an export's reader runs), in x's precision."""
    x, kernel = np.asarray(x), np.asarray(kernel)
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    x = _padded(x, (kh, kw), strides, padding, np)
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return np.einsum("nijcuv,uvco->nijo", windows, kernel.astype(x.dtype, copy=False))


def space_to_depth(x, block: int):
    """(N, H, W, C) → (N, H/b, W/b, b·b·C), out[i, j, (di·b + dj)·C + c] = x[i·b + di, j·b + dj, c].

    A permutation of the entries (an isometry in every ℓp). Works on numpy and JAX arrays.
    """
    n, h, w, c = x.shape
    if h % block or w % block:
        raise ValueError(f"space_to_depth({block}) needs a height and width divisible by {block}, got {h}×{w}.")
    x = x.reshape(n, h // block, block, w // block, block, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // block, w // block, block * block * c)


def compose_kernels(a, b, xp=jnp):
    """The kernel of ``conv(conv(x, a), b)`` up to a circular shift: (ah+bh−1, aw+bw−1, c1, c3),
    C[t] = Σ_{u+v=t} A[u]·B[v] (kernels HWIO, x a row vector of channels).

    For circular padding, conv(·, C) is the composition shifted by a whole number of
    pixels (the two kernels' centres add up to C's centre or one pixel off), which keeps
    every operator norm; so the composition of orthogonal convolutions is orthogonal.
    """
    bh, bw = b.shape[:2]
    total = None
    for vh in range(bh):
        for vw in range(bw):
            term = xp.einsum("hwij,jk->hwik", a, b[vh, vw])
            term = xp.pad(term, [(vh, bh - 1 - vh), (vw, bw - 1 - vw), (0, 0), (0, 0)])
            total = term if total is None else total + term
    return total


def kernel_gram(kernel, xp=jnp):
    """The conv operator's Gram PᵀP as a kernel: G[t, i, j] = Σ_{u, o} K[u, i, o] K[u + t, j, o]
    for every offset t ∈ [−(k−1), k−1]² (shape (2kh−1, 2kw−1, c_in, c_in); JAX, or numpy
    with ``xp=np``). One small contraction per offset: no convolution op (see
    :data:`CONV_IMPLEMENTATIONS` on XLA:CPU's convolutions inside loops)."""
    kh, kw = kernel.shape[:2]
    padded = xp.pad(kernel, [(kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0), (0, 0)])
    rows = [xp.stack([xp.einsum("uvio,uvjo->ij", kernel, padded[th: th + kh, tw: tw + kw])
                      for tw in range(2 * kw - 1)]) for th in range(2 * kh - 1)]
    return xp.stack(rows)


# AOL divides by √d; a dead input channel (d = 0) gets a finite scale.
AOL_EPS = 1e-12


def aol_rescale(kernel: Array) -> Array:
    """AOL (Prach & Lampert 2022): K · diag(d)^{-1/2} on the input channels, with
    d_i = Σ_{t, j} |G[t, i, j]| the absolute row sums of the operator's Gram
    (:func:`kernel_gram`). Then ‖conv(·, K′)‖₂ ≤ 1 for circular padding (Gershgorin on
    D PᵀP D) and hence for zero padding and any stride (module docstring)."""
    d = jnp.sum(jnp.abs(kernel_gram(kernel)), axis=(0, 1, 3))
    return kernel * jax.lax.rsqrt(d + AOL_EPS)[None, None, :, None]


def aol_rescale_numpy(kernel: np.ndarray) -> np.ndarray:
    """:func:`aol_rescale` in numpy float64."""
    k = np.asarray(kernel, np.float64)
    d = np.abs(kernel_gram(k, np)).sum(axis=(0, 1, 3))
    return k / np.sqrt(d + AOL_EPS)[None, None, :, None]


def _folded(kernel: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """The kernel's taps summed modulo the torus (a kernel larger than the torus wraps)."""
    kh, kw = kernel.shape[:2]
    out = np.zeros((n1, n2) + kernel.shape[2:], kernel.dtype)
    for u in range(kh):
        for v in range(kw):
            out[u % n1, v % n2] += kernel[u, v]
    return out


def torus_size(input_hw, kernel_hw, padding: str, strides=(1, 1)) -> tuple[int, int]:
    """The torus whose (strided) circular convolution certifies the layer (module
    docstring); its sides are multiples of the strides that :func:`certifying_strides` keeps."""
    strides = certifying_strides(input_hw, padding, strides)
    if check_padding(padding) == "circular":
        return tuple(int(n) for n in input_hw)
    return tuple(-(-(int(n) + int(k) - 1) // s) * s for n, k, s in zip(input_hw, kernel_hw, strides))


def certifying_strides(input_hw, padding: str, strides=(1, 1)) -> tuple[int, int]:
    """The strides the certificate uses: the layer's, except along an axis of a circular
    layer whose stride does not divide its size (there: 1, a valid but looser bound)."""
    strides = tuple(int(s) for s in strides)
    if any(s < 1 for s in strides):
        raise ValueError(f"Conv strides must be ≥ 1, got {strides}.")
    if check_padding(padding) == "circular":
        return tuple(s if int(n) % s == 0 else 1 for n, s in zip(input_hw, strides))
    return strides


def polyphase_kernel(kernel: np.ndarray, strides) -> np.ndarray:
    """The stride-1 kernel of a stride-s convolution on its polyphase input (module
    docstring): P[q₁, q₂, (r₁·s₂ + r₂)·c_in + c, o] = K[q₁s₁ + r₁, q₂s₂ + r₂, c, o],
    shape (⌈kh/s₁⌉, ⌈kw/s₂⌉, s₁s₂·c_in, c_out); the identity for stride 1."""
    (s1, s2), (kh, kw, c_in, c_out) = strides, kernel.shape
    if (s1, s2) == (1, 1):
        return kernel
    out = np.zeros((-(-kh // s1), -(-kw // s2), s1 * s2 * c_in, c_out), kernel.dtype)
    for u in range(kh):
        for v in range(kw):
            phase = (u % s1) * s2 + v % s2
            out[u // s1, v // s2, phase * c_in: (phase + 1) * c_in] = kernel[u, v]
    return out


def _spectrum(kernel: np.ndarray, input_hw, padding: str, strides=(1, 1)) -> tuple[np.ndarray, int, int]:
    """P̂(f) for every frequency f of the certifying (T/s)-torus, P the polyphase kernel:
    (N₁·N₂, s₁s₂·c_in, c_out), float64."""
    k = np.asarray(kernel, np.float64)
    strides = certifying_strides(input_hw, padding, strides)
    t1, t2 = torus_size(input_hw, k.shape[:2], padding, strides)
    n1, n2 = t1 // strides[0], t2 // strides[1]
    p = polyphase_kernel(k, strides)
    spectrum = np.fft.fft2(_folded(p, n1, n2), axes=(0, 1))
    return spectrum.reshape(n1 * n2, p.shape[2], p.shape[3]), n1, n2


def _certified_conv_norm(kernel: np.ndarray, input_hw, padding: str, strides=(1, 1)) -> float:
    k = np.asarray(kernel, np.float64)
    matrices, n1, n2 = _spectrum(k, input_hw, padding, strides)
    # Many small SVDs: a threaded BLAS only contends (19–26 s vs 3.4 s for an export of the
    # 4-conv benchmark net on 2 busy cores, scripts/benchmark.py part k, 2026-12-02).
    with _one_blas_thread():
        sigma = float(np.linalg.svd(matrices, compute_uv=False)[:, 0].max())
    scale = float(np.linalg.norm(np.abs(k).sum(axis=(0, 1))))
    margin = 8.0 * 2.0**-53 * (math.log2(n1 * n2) + max(k.shape[2:]) + 1) * scale
    return sigma + margin


# The certificate recomputes every record's norm from the stored arrays (lipsort.certify),
# and an export, its certificate and the run's summary ask for the same kernels: a small
# cache keyed by the kernel's bytes makes each exact norm one FFT + SVD per kernel.
_NORM_CACHE: collections.OrderedDict = collections.OrderedDict()
_NORM_CACHE_SIZE = 64


def certified_conv_norm(kernel, input_hw, padding: str, strides=(1, 1)) -> float:
    """A proven upper bound of the ℓ2 operator norm of the convolution of an
    ``input_hw`` image with ``kernel`` at ``strides``, in float64.

    Exact (up to the margin below) for circular padding with strides that divide the
    size; for zero padding the norm of the (strided) circular convolution on the enlarged
    torus (module docstring). The
    margin covers the rounding of the float64 FFT and SVD: each K̂(f) is computed with a
    Frobenius error ≤ c·u·log₂(N₁N₂)·S and its σ_max with an error ≤ c·u·n·S
    (u = 2⁻⁵³, S = ‖(Σ_taps |K|)‖_F ≥ every ‖K̂(f)‖₂); 8·u·(log₂(N₁N₂) + n + 1)·S is far above both.
    Results are cached by the kernel's exact bytes (a pure function of them).
    """
    k = np.ascontiguousarray(kernel)
    key = (hashlib.blake2b(k.tobytes(), digest_size=16).hexdigest(), k.dtype.str, k.shape,
           tuple(int(s) for s in input_hw), check_padding(padding), certifying_strides(input_hw, padding, strides))
    if key in _NORM_CACHE:
        _NORM_CACHE.move_to_end(key)
        return _NORM_CACHE[key]
    norm = _certified_conv_norm(k, input_hw, padding, strides)
    _NORM_CACHE[key] = norm
    if len(_NORM_CACHE) > _NORM_CACHE_SIZE:
        _NORM_CACHE.popitem(last=False)
    return norm


def conv_operator_norm_estimate(kernel: Array, input_shape, strides=(1, 1), padding: str = "zeros",
                                iters: int = 100, seed: int = 0) -> float:
    """A power-iteration estimate (a lower bound, up to convergence) of the ℓ2 norm of
    the convolution on ``input_shape`` (H, W, C): iterates x ← PᵀP x by reverse mode."""
    kernel = jnp.asarray(kernel, jnp.float32)

    def op(x):
        return conv(x, kernel, strides, padding)

    def step(x, _):
        y, vjp = jax.vjp(op, x)
        (x,) = vjp(y)
        return x / jnp.linalg.norm(x), None

    x = jax.random.normal(jax.random.key(seed), (1, *input_shape), jnp.float32)
    x, _ = jax.lax.scan(step, x / jnp.linalg.norm(x), None, length=iters)
    return float(jnp.linalg.norm(op(x)))


__all__ = [
    "PADDINGS", "conv", "conv_numpy", "space_to_depth", "compose_kernels", "kernel_gram",
    "aol_rescale", "aol_rescale_numpy", "certified_conv_norm",
    "conv_operator_norm_estimate", "output_size", "torus_size", "certifying_strides", "polyphase_kernel",
]
