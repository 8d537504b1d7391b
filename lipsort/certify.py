"""Certificates and attacks: the upper bound, the search for a lower bound, robustness.

- Certified upper bound: Lip(f) ≤ Π_i ‖L_i‖_{p_i→q_i}, exact per-layer operator norms
  of the exported float32 weights computed in float64 (K is folded into the weights);
  activations are 1-Lipschitz in every norm used here.
- Empirical lower bound: the largest Jacobian norm ‖J_f(x)‖_{p→q} or pair ratio
  ‖f(x) − f(y)‖_q / ‖x − y‖_p found by search. Any such value is ≤ Lip(f), so a search
  value above the certificate is a violation (a bug).
- Robustness: a logit margin m = f_y − max_{j≠y} f_j certifies that no perturbation of
  norm ≤ ε changes the class when m > c·L·ε, with c = √2 for ℓ2 logits and c = 2 for
  ℓ∞ logits (each logit difference f_i − f_j is (c·L)-Lipschitz). PGD gives the
  matching empirical side: certified ≤ attacked ≤ clean accuracy.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

import numpy as np

from lipsort.export import ExportedModel, export_apply, export_params, record_type

Array = jax.Array
Fn = Callable[[Array], Array]  # batched: (B, d) → (B, m)


def layer_operator_norms(exported: ExportedModel) -> list[float]:
    """Exact norm of each exported linear record, in its (p_in, p_out) pair, in float64
    (recomputed from the stored arrays, not read from the records' ``bound``)."""
    return [record_type(r).bound(r, exported.arrays) for r in exported.linear_layers]


def lipschitz_upper_bound(exported: ExportedModel) -> float:
    """Certified Lip(f) from the input norm to the output norm of the export: the product
    of every record's bound (linear records' operator norms, activations' constants)."""
    return float(math.prod(record_type(r).bound(r, exported.arrays) for r in exported.layers))


def io_norms(exported: ExportedModel) -> tuple[float, float]:
    """(input norm, output norm) in which the certificate holds."""
    chain = exported.layer_norms()
    return chain[0][0], chain[-1][1]


def _vector_norm(v: Array, p: float) -> Array:
    if p == math.inf:
        return jnp.max(jnp.abs(v), axis=-1)
    return jnp.sqrt(jnp.sum(v * v, axis=-1) + 1e-30)


def _dual(p: float) -> float:
    return 1.0 if p == math.inf else 2.0


def jacobian_norm(f: Fn, x: Array, p: float, q: float) -> Array:
    """‖J_f(x)‖_{p→q} for each row of x (shape (B,)); J computed by reverse mode."""
    jac = jax.vmap(jax.jacrev(lambda xi: f(xi[None])[0]))(x)  # (B, m, d)
    if (p, q) == (2, 2):
        # σ_max² = λ_max of the Gram on the smaller side (cheaper than a batched SVD).
        small = jac @ jnp.swapaxes(jac, -1, -2) if jac.shape[-2] <= jac.shape[-1] else jnp.swapaxes(jac, -1, -2) @ jac
        return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(small)[..., -1], 0.0))
    # ℓp → ℓ∞: max over output rows of the dual norm of the row.
    row_dual = jnp.sum(jnp.abs(jac), axis=-1) if p == math.inf else jnp.linalg.norm(jac, axis=-1)
    if q == math.inf:
        return jnp.max(row_dual, axis=-1)
    raise ValueError(f"Jacobian norm from ℓ{p} to ℓ{q} is not supported.")


def _as_apply(f, params):
    """Searches call ``apply(params, x)``; a plain f(x) is wrapped (and recompiled)."""
    if params is None:
        return (lambda _, x: f(x)), ()
    return f, params


@functools.partial(jax.jit, static_argnames=("apply", "p", "q", "steps", "num_samples"))
def _jacobian_search(apply, params, x, key, p, q, steps, sigma, lr, num_samples):
    """(largest ‖J‖ found, the point where it was found)."""
    f = functools.partial(apply, params)

    def body(carry, key):
        x, best, best_x = carry
        eps = jax.random.normal(key, (num_samples,) + x.shape, x.dtype)
        plus = jax.vmap(lambda e: jacobian_norm(f, x + sigma * e, p, q))(eps)  # (S, B)
        minus = jax.vmap(lambda e: jacobian_norm(f, x - sigma * e, p, q))(eps)
        grad = jnp.einsum("sb,sbd->bd", plus - minus, eps) / (2 * sigma * num_samples)
        grad = grad / (jnp.linalg.norm(grad, axis=-1, keepdims=True) + 1e-12)
        values = jnp.concatenate([plus.ravel(), minus.ravel(), jacobian_norm(f, x, p, q)])
        points = jnp.concatenate([(x + sigma * eps).reshape(-1, x.shape[-1]),
                                  (x - sigma * eps).reshape(-1, x.shape[-1]), x])
        i = jnp.argmax(values)
        better = values[i] > best
        return (x + lr * grad, jnp.where(better, values[i], best), jnp.where(better, points[i], best_x)), None

    init = (x, jnp.asarray(-jnp.inf, x.dtype), x[0])
    (_, best, best_x), _ = jax.lax.scan(body, init, jax.random.split(key, steps))
    return best, best_x


def jacobian_norm_search(
    f, x0: Array, p: float, q: float, key: Array, steps: int = 50, sigma: float = 0.05,
    lr: float = 0.05, num_samples: int = 8, params=None,
) -> float:
    """Ascent on x ↦ ‖J_f(x)‖: the largest Jacobian norm found from the starts ``x0``.

    For piecewise-linear networks ‖J‖ is piecewise constant, so its autodiff gradient is
    0 almost everywhere; the ascent direction is the gradient of the Gaussian-smoothed
    objective E_δ ‖J(x + σδ)‖, estimated by antithetic samples
    (‖J(x+σδ)‖ − ‖J(x−σδ)‖)·δ / 2σ. Every evaluated point counts toward the maximum.

    ``f`` is f(x), or f(params, x) when ``params`` is given; the latter compiles once per
    function and shapes, so repeated searches (sweeps, tests) are cheap.
    """
    apply, params = _as_apply(f, params)
    x = jnp.asarray(x0, jnp.float32)
    return float(_jacobian_search(apply, params, x, key, p, q, steps, sigma, lr, num_samples)[0])


@functools.partial(jax.jit, static_argnames=("apply", "p", "q", "steps", "lr"))
def _pair_search(apply, params, x, key, p, q, steps, lr, init_scale):
    """(largest ratio found, the pair (x, δ) where it was found)."""
    delta = init_scale * jax.random.normal(key, x.shape, x.dtype)

    def ratios(pair):
        x, d = pair
        num = _vector_norm(apply(params, x + d) - apply(params, x), q)
        return num / jnp.maximum(_vector_norm(d, p), 1e-12)

    opt = optax.adam(lr)

    def keep_best(pair, best, best_pair):
        r = ratios(pair)
        i = jnp.argmax(r)
        better = r[i] > best
        chosen = tuple(jnp.where(better, part[i], kept) for part, kept in zip(pair, best_pair))
        return jnp.where(better, r[i], best), chosen

    def body(carry, _):
        pair, state, best, best_pair = carry
        r, grads = jax.value_and_grad(lambda ps: -jnp.sum(jnp.log(ratios(ps) + 1e-12)))(pair)
        updates, state = opt.update(grads, state)
        best, best_pair = keep_best(pair, best, best_pair)
        return (optax.apply_updates(pair, updates), state, best, best_pair), None

    pair = (x, delta)
    init = (pair, opt.init(pair), jnp.asarray(-jnp.inf, x.dtype), (x[0], delta[0]))
    (pair, _, best, best_pair), _ = jax.lax.scan(body, init, None, length=steps)
    return keep_best(pair, best, best_pair)


def pair_ratio_search(
    f, x0: Array, p: float, q: float, key: Array, steps: int = 100, lr: float = 0.01,
    init_scale: float = 0.1, params=None,
) -> float:
    """Gradient ascent (Adam) on ‖f(x) − f(y)‖_q / ‖x − y‖_p over pairs (x, y = x + δ)."""
    apply, params = _as_apply(f, params)
    x = jnp.asarray(x0, jnp.float32)
    return float(_pair_search(apply, params, x, key, p, q, steps, lr, init_scale)[0])


def lipschitz_lower_bound(
    f, x0: Array, p: float, q: float, key: Array, steps: int = 50, params=None
) -> float:
    """max(Jacobian-norm search, pair-ratio search): an empirical lower bound of Lip(f).

    ``f`` is f(x), or f(params, x) with ``params`` given (compiled once and reused).
    """
    k1, k2 = jax.random.split(key)
    return max(
        jacobian_norm_search(f, x0, p, q, k1, steps=steps, params=params),
        pair_ratio_search(f, x0, p, q, k2, steps=2 * steps, params=params),
    )


class CertificateContradiction(AssertionError):
    """A lower bound above the certified upper bound by more than rounding: a bug."""


# float64 evaluations of the float32 export's function and the exact float64 norms agree to
# about 1e-13 relative; a gap beyond this is not rounding.
ROUNDING_SLACK = 1e-9


def _float64_copy(exported: ExportedModel) -> ExportedModel:
    return ExportedModel({k: np.asarray(v, np.float64) for k, v in exported.arrays.items()}, exported.meta)


@functools.partial(jax.jit, static_argnames=("apply", "p", "q"))
def _jacobian_norm_jit(apply, params, x, p, q):
    return jacobian_norm(functools.partial(apply, params), x, p, q)


def float64_jacobian_norm(exported: ExportedModel, x: np.ndarray, p: float, q: float) -> float:
    """‖J_f(x)‖_{p→q} of the export's function at one point, computed in float64."""
    with jax.enable_x64(True):
        params = export_params(_float64_copy(exported))
        x64 = jnp.asarray(np.asarray(x, np.float64)[None])
        return float(_jacobian_norm_jit(export_apply(exported), params, x64, p, q)[0])


def float64_pair_ratio(exported: ExportedModel, x: np.ndarray, delta: np.ndarray, p: float, q: float) -> float:
    """‖f(x + δ) − f(x)‖_q / ‖δ‖_p of the export's function, in float64 with numpy."""
    from lipsort.export import numpy_forward

    x, delta = np.asarray(x, np.float64)[None], np.asarray(delta, np.float64)[None]
    f64 = _float64_copy(exported)
    diff = (numpy_forward(f64, x + delta) - numpy_forward(f64, x))[0]
    norm = lambda v, r: float(np.max(np.abs(v)) if r == math.inf else np.linalg.norm(v))
    return norm(diff, q) / max(norm(delta[0], p), 1e-300)


def export_lower_bound(exported: ExportedModel, x0: Array, key: Array, steps: int = 50) -> float:
    """The lower-bound search on an export's function, in the export's norms.

    The search runs in float32 (fast, compiled once per architecture); the best Jacobian
    point and the best pair it found are then evaluated again in float64, and that is the
    value returned: float32 rounding can lift a ratio above the exact certificate, which
    is not a violation. A float64 value above :func:`lipschitz_upper_bound` by more than
    rounding (:data:`ROUNDING_SLACK`) raises :class:`CertificateContradiction`; within
    rounding it is reported as the upper bound itself.
    """
    p, q = io_norms(exported)
    apply, params = export_apply(exported), export_params(exported)
    x = jnp.asarray(x0, jnp.float32)
    k1, k2 = jax.random.split(key)
    _, best_x = _jacobian_search(apply, params, x, k1, p, q, steps, 0.05, 0.05, 8)
    _, (pair_x, pair_d) = _pair_search(apply, params, x, k2, p, q, 2 * steps, 0.01, 0.1)
    lower = max(float64_jacobian_norm(exported, np.asarray(best_x), p, q),
                float64_pair_ratio(exported, np.asarray(pair_x), np.asarray(pair_d), p, q))
    upper = lipschitz_upper_bound(exported)
    if lower > upper * (1 + ROUNDING_SLACK):
        raise CertificateContradiction(
            f"the lower-bound search found {lower!r} > the certified upper bound {upper!r} (float64): "
            "the certificate is wrong; this is a bug, please report it with the export."
        )
    return min(lower, upper)


# --- robustness -----------------------------------------------------------------------


def margins(logits: Array, labels: Array) -> Array:
    """m = f_y − max_{j≠y} f_j per example (negative when misclassified).

    For a single logit (binary, labels in {0, 1}) the margin is (2y − 1)·f.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.shape[-1] == 1:
        return (2.0 * labels - 1.0) * logits[..., 0]
    true = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return true - jnp.max(others, axis=-1)


def margin_factor(output_norm: float, num_outputs: int) -> float:
    """c in "certified when m > c·L·ε": 1 for one logit, √2 for ℓ2 logits, 2 for ℓ∞."""
    if num_outputs == 1:
        return 1.0
    return 2.0 if output_norm == math.inf else math.sqrt(2.0)


def certified_radius(margin: Array, lipschitz: float, output_norm: float, num_outputs: int) -> Array:
    """The radius m / (c·L) within which the prediction provably cannot change."""
    if not lipschitz > 0:
        raise ValueError(f"lipschitz must be > 0, got {lipschitz}.")
    return jnp.maximum(margin, 0.0) / (margin_factor(output_norm, num_outputs) * lipschitz)


def certified_accuracy(
    logits: Array, labels: Array, eps: float, lipschitz: float, output_norm: float = 2
) -> float:
    """Fraction of examples correctly classified with margin m > c·L·ε."""
    m = margins(logits, labels)
    factor = margin_factor(output_norm, jnp.shape(logits)[-1])
    return _fraction(m > factor * lipschitz * eps)


def _project(delta: Array, eps: float, p: float) -> Array:
    if p == math.inf:
        return jnp.clip(delta, -eps, eps)
    n = jnp.linalg.norm(delta.reshape(delta.shape[0], -1), axis=-1)
    factor = jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
    return delta * factor.reshape((-1,) + (1,) * (delta.ndim - 1))


def _random_start(key: Array, shape, eps: float, p: float) -> Array:
    if p == math.inf:
        return jax.random.uniform(key, shape, minval=-eps, maxval=eps)
    k1, k2 = jax.random.split(key)
    direction = jax.random.normal(k1, shape)
    flat = direction.reshape(shape[0], -1)
    direction = direction / jnp.linalg.norm(flat, axis=-1).reshape((-1,) + (1,) * (len(shape) - 1))
    radius = eps * jax.random.uniform(k2, (shape[0],)) ** (1.0 / flat.shape[1])
    return direction * radius.reshape((-1,) + (1,) * (len(shape) - 1))


def _norm_p(p) -> float:
    """2 or inf from the spellings callers use (2, "l2", inf, "inf", "linf")."""
    return math.inf if p in ("inf", "linf", math.inf) else 2


def _pgd_core(f: Fn, x: Array, labels: Array, eps, p: float, key: Array, steps: int, step_size,
              clip, random_start: bool) -> tuple[Array, Array]:
    """PGD on the margin: (most adversarial point visited, its margin), per example.

    Pure and traceable (``eps`` and ``step_size`` may be traced), so it serves both
    :func:`pgd_attack` and the jit-once batched :func:`pgd_worst_margins`. The clean
    point is the starting "best", so the returned margin is ≤ the clean margin.
    """
    def clip_x(z):
        return z if clip is None else jnp.clip(z, clip[0], clip[1])

    def margin_of(z):
        return margins(f(z), labels)

    grad_fn = jax.grad(lambda z: jnp.sum(margin_of(z)))

    def step(carry, _):
        delta, best_x, best_m = carry
        g = grad_fn(clip_x(x + delta))
        if p == math.inf:
            move = jnp.sign(g)
        else:
            flat = jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1)
            move = g / jnp.maximum(flat, 1e-12).reshape((-1,) + (1,) * (g.ndim - 1))
        delta = _project(clip_x(x + delta - step_size * move) - x, eps, p)
        z = clip_x(x + delta)
        m = margin_of(z)
        better = m < best_m
        best_x = jnp.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), z, best_x)
        return (delta, best_x, jnp.minimum(m, best_m)), None

    delta0 = _random_start(key, x.shape, eps, p) if random_start else jnp.zeros_like(x)
    delta0 = _project(clip_x(x + delta0) - x, eps, p)
    start = (delta0, x, margin_of(x))
    (_, best_x, best_m), _ = jax.lax.scan(step, start, None, length=steps)
    return best_x, best_m


def pgd_attack(
    f: Fn, x: Array, labels: Array, eps: float, p: float, key: Array, steps: int = 50,
    step_size: float | None = None, clip: tuple[float, float] | None = None,
    random_start: bool = True,
) -> Array:
    """Projected gradient descent on the margin within {‖δ‖_p ≤ ε}.

    Returns, per example, the most adversarial point visited (lowest margin), the clean
    point included, so attacked accuracy can never exceed clean accuracy. ℓ∞ steps
    use sign(∇), ℓ2 steps the normalized gradient; ``clip`` keeps x + δ in the data range.
    """
    p = _norm_p(p)
    x = jnp.asarray(x, jnp.float32)
    labels = jnp.asarray(labels)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best_x, _ = jax.jit(lambda x, labels, key: _pgd_core(
        f, x, labels, eps, p, key, steps, step_size, clip, random_start))(x, labels, key)
    return best_x


@functools.partial(jax.jit, static_argnames=("apply", "p", "steps", "clip"))
def _pgd_batch_margins(apply, params, x, labels, eps, key, p, steps, clip):
    f = functools.partial(apply, params)
    # Madry et al.'s step 2.5·ε/steps: the walk can cross the ball (2.5 diameters / 2)
    # while the last steps are fine enough to settle on its boundary.
    _, best_m = _pgd_core(f, x, labels, eps, p, key, steps, 2.5 * eps / steps, clip, True)
    return best_m


def pgd_worst_margins(
    apply, params, x, labels, eps: float, p, key: Array, steps: int = 50,
    batch_size: int = 1000, clip: tuple[float, float] | None = None,
) -> "np.ndarray":
    """The lowest margin PGD finds within {‖δ‖_p ≤ ε} for every example, in batches.

    ``apply(params, x)`` is a fixed function object (e.g. ``export.export_apply``) and
    ε is traced, so one compilation serves every batch and every ε of a norm: the last
    batch is padded to ``batch_size`` (padding rows are dropped from the result).
    Each batch gets its own random start (key folded with the batch index).
    An example is broken at ε iff its entry is ≤ 0; entries are ≤ the clean margins.
    """
    import numpy as np

    p = _norm_p(p)
    if not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}.")
    if batch_size < 1 or steps < 1:
        raise ValueError(f"batch_size and steps must be ≥ 1, got {batch_size} and {steps}.")
    clip = None if clip is None else (float(clip[0]), float(clip[1]))
    out = []
    for i, xb, yb, real in _padded_batches(x, labels, batch_size):
        m = _pgd_batch_margins(apply, params, xb, yb, jnp.float32(eps), jax.random.fold_in(key, i), p, int(steps), clip)
        out.append(np.asarray(m)[:real])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _padded_batches(x, labels, batch_size: int):
    """(index, x batch, label batch, real size) over ``x`` in float32: the last batch is padded
    with copies of its first example (when there are several batches), so one compilation
    serves every batch."""
    import numpy as np

    x = np.asarray(x, np.float32)
    labels = np.asarray(labels)
    n = x.shape[0]
    for i, start in enumerate(range(0, n, batch_size)):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        real = xb.shape[0]
        if real < batch_size and n > batch_size:
            pad = batch_size - real
            xb = np.concatenate([xb, np.repeat(xb[:1], pad, 0)])
            yb = np.concatenate([yb, np.repeat(yb[:1], pad, 0)])
        yield i, jnp.asarray(xb), jnp.asarray(yb), real


def _fraction(hits: Array) -> float:
    """count / n in float64: a float32 mean of equal counts can differ in the last bits, and
    then certified ≤ attacked ≤ clean fails on equal numbers."""
    hits = np.asarray(hits)
    return int(hits.sum()) / hits.size


def accuracy(logits: Array, labels: Array) -> float:
    """Fraction with a positive margin (argmax = label; sign agrees for one logit)."""
    return _fraction(margins(logits, labels) > 0)


def attack_accuracy(
    f: Fn, x: Array, labels: Array, eps: float, p: float, key: Array, **pgd_kwargs
) -> float:
    """Accuracy under :func:`pgd_attack`."""
    return accuracy(f(pgd_attack(f, x, labels, eps, p, key, **pgd_kwargs)), labels)


# --- a stronger attack: evidence that the certificate is not vacuous, and how tight it is -----


def _cosine_step_sizes(steps: int, eps, p: float) -> Array:
    """Per-step sizes α_t = α₀·½(1 + cos(π t / steps)), α₀ = ε/2 (ℓ∞ sign steps and ℓ2
    unit steps alike): large early steps cross the ball, the last ones settle on its
    boundary (or vertex) instead of oscillating around it as a constant step does."""
    t = jnp.arange(steps, dtype=jnp.float32)
    return 0.5 * eps * 0.5 * (1.0 + jnp.cos(jnp.pi * t / steps))


def _pgd_scheduled(f: Fn, x: Array, labels: Array, targets: Array, eps, p: float, delta0: Array,
                   step_sizes: Array, clip) -> Array:
    """PGD with a per-step size from ``delta0``: the lowest true margin at any point visited.

    The objective descended is f_y − f_t for rows with a target t ≥ 0 (a targeted run: it
    pushes class t up, wherever the current runner-up is) and the margin f_y − max_{j≠y} f_j
    for rows with t < 0. Whatever the objective, the *margin* of every evaluated point (each
    iterate, the last included) is what is kept. The gradient and the margin come from one
    forward pass per step. Pure and traceable, like :func:`_pgd_core`.
    """
    def clip_x(z):
        return z if clip is None else jnp.clip(z, clip[0], clip[1])

    def objective(z):
        logits = f(z)
        m = margins(logits, labels)
        if logits.shape[-1] == 1:
            return jnp.sum(m), m
        true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
        target = jnp.take_along_axis(logits, jnp.maximum(targets, 0)[:, None], axis=-1)[:, 0]
        return jnp.sum(jnp.where(targets >= 0, true - target, m)), m

    grad_fn = jax.grad(objective, has_aux=True)
    expand = (-1,) + (1,) * (x.ndim - 1)

    def step(carry, alpha):
        delta, best = carry
        g, m = grad_fn(clip_x(x + delta))
        if p == math.inf:
            move = jnp.sign(g)
        else:
            move = g / jnp.maximum(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1), 1e-12).reshape(expand)
        delta = _project(clip_x(x + delta - alpha * move) - x, eps, p)
        return (delta, jnp.minimum(best, m)), None

    delta0 = _project(clip_x(x + delta0) - x, eps, p)
    (delta, best), _ = jax.lax.scan(step, (delta0, margins(f(x), labels)), step_sizes)
    return jnp.minimum(best, margins(f(clip_x(x + delta)), labels))


def _strong_runs(num_logits: int, restarts: int, targeted: bool) -> list[int]:
    """The runs after the first, as targets: −1 = a margin run, t ≥ 1 = targeted at y + t (mod C)."""
    wrong = list(range(1, num_logits)) if targeted and num_logits > 1 else []
    return [-1] * (restarts - 1) + wrong


@functools.partial(jax.jit, static_argnames=("apply", "p", "steps", "restarts", "targeted", "clip"))
def _strong_batch_margins(apply, params, x, labels, eps, key, p, steps, restarts, targeted, clip):
    f = functools.partial(apply, params)
    # Run 0 is the tables' attack verbatim (pgd_worst_margins: constant step 2.5·ε/steps,
    # the same key for a batch): the strong attack is never weaker than it at equal steps,
    # key and batch size.
    _, worst = _pgd_core(f, x, labels, eps, p, key, steps, 2.5 * eps / steps, clip, True)
    num_logits = jax.eval_shape(f, x).shape[-1]
    runs = _strong_runs(num_logits, restarts, targeted)
    if not runs:
        return worst
    b, r = x.shape[0], len(runs)
    # Every other run at once, stacked along the batch: one (r·b)-row scan, which keeps
    # the matrix products large on a CPU and compiles one program per shape.
    xs = jnp.broadcast_to(x[None], (r,) + x.shape).reshape((r * b,) + x.shape[1:])
    ys = jnp.tile(labels, r)
    offsets = jnp.repeat(jnp.asarray(runs, labels.dtype), b)
    targets = jnp.where(offsets < 0, -1, (ys + offsets) % max(num_logits, 1))
    delta0 = _random_start(jax.random.fold_in(key, 1), xs.shape, eps, p)
    m = _pgd_scheduled(f, xs, ys, targets, eps, p, delta0, _cosine_step_sizes(steps, eps, p), clip)
    return jnp.minimum(worst, jnp.min(m.reshape(r, b), axis=0))


def strong_attack_margins(
    apply, params, x, labels, eps: float, p, key: Array, *, steps: int = 200, restarts: int = 10,
    targeted: bool = True, batch_size: int = 50, clip: tuple[float, float] | None = None,
) -> "np.ndarray":
    """The lowest margin a strong PGD ensemble finds within {‖δ‖_p ≤ ε}, per example.

    A much stronger search than the tables' :func:`pgd_worst_margins` (20 steps, one
    random start), for evidence that certified points are not broken and for the gap
    between certified and attacked accuracy. Per example, the minimum of:

    - the clean margin;
    - ``restarts`` margin PGD runs of ``steps`` steps from random starts in the ball: the
      first is the tables' attack itself (constant step 2.5·ε/steps, key folded with the
      batch index as in :func:`pgd_worst_margins`), so at equal ``steps``, ``key`` and
      ``batch_size`` this is never weaker than it; the others use a cosine-decaying step
      from ε/2 to 0;
    - with ``targeted``, one run per wrong class j (C − 1 runs, cosine step, random
      start) descending f_y − f_j, i.e. pushing that one class up: plain margin PGD follows
      the current runner-up and can miss a class that is further now but closer at ε.

    Every run keeps the lowest *margin* of every point it visits. ℓ∞ steps use sign(∇),
    ℓ2 steps the normalized gradient; ``clip`` keeps x + δ in the data range. ``p`` is the
    certificate's input norm (2 or inf).

    Cost: (restarts + C − 1) runs of ``steps`` forward+backward passes per example (run 0
    an extra forward per step), ≈ 19 × 200 for 10 classes at the defaults. ``apply`` is a
    fixed function object and ε is traced, so one compilation serves every batch and every
    ε of a norm (the last batch is padded to ``batch_size``); one compiled call holds
    ``batch_size × (restarts − 1 + C − 1)`` rows, so size ``batch_size`` to memory.
    Measured (784-1024-1024-1024-10, 10 classes, defaults, 2 CPU cores shared, 2026-12-02):
    ≈ 1.8 points/s at batch 50 (≈ 1.2–1.4 at batch 100); width 512: ≈ 5.5 points/s.
    An example is broken at ε iff its entry is ≤ 0; entries are ≤ the clean margins.
    """
    p = _norm_p(p)
    if not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}.")
    if batch_size < 1 or steps < 1 or restarts < 1:
        raise ValueError(f"batch_size, steps and restarts must be ≥ 1, got {batch_size}, {steps} and {restarts}.")
    clip = None if clip is None else (float(clip[0]), float(clip[1]))
    out = []
    for i, xb_j, yb_j, real in _padded_batches(x, labels, batch_size):
        m = _strong_batch_margins(apply, params, xb_j, yb_j, jnp.float32(eps), jax.random.fold_in(key, i),
                                  p, int(steps), int(restarts), bool(targeted), clip)
        clean = margins(apply(params, xb_j), yb_j)
        out.append(np.minimum(np.asarray(m), np.asarray(clean))[:real])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def strong_attack_report(clean_margins, strong_margins, certified_mask) -> dict:
    """Counts for the strong attack over the same n points (numpy in, plain numbers out).

    ``points``: n; ``certified``: how many are certified; ``broken_certified``: certified
    points the attack breaks (strong margin ≤ 0): anything but 0 contradicts the
    certificate, a bug; ``clean_accuracy``, ``attack_accuracy`` (strong margin > 0, the
    margins taken ≤ the clean ones) and ``certified_accuracy`` as shares of n; ``gap``:
    attack_accuracy − certified_accuracy, how much robustness the certificate leaves
    unproven (an upper bound of the true gap, since the attack is only a search). The gap is
    meaningful when the points are the whole test set (or a random subset of it), not when
    they are only the certified ones.
    """
    clean = np.asarray(clean_margins, np.float64).reshape(-1)
    strong = np.asarray(strong_margins, np.float64).reshape(-1)
    certified = np.asarray(certified_mask, bool).reshape(-1)
    if not clean.shape == strong.shape == certified.shape:
        raise ValueError(f"clean_margins, strong_margins and certified_mask must have one entry per point, got "
                         f"{clean.shape}, {strong.shape} and {certified.shape}.")
    strong = np.minimum(strong, clean)
    n = int(clean.size)
    share = (lambda mask: float(np.mean(mask))) if n else (lambda mask: float("nan"))
    survived = strong > 0
    return {
        "points": n,
        "certified": int(np.sum(certified)),
        "broken_certified": int(np.sum(certified & ~survived)),
        "clean_accuracy": share(clean > 0),
        "attack_accuracy": share(survived),
        "certified_accuracy": share(certified),
        "gap": share(survived) - share(certified),
    }
