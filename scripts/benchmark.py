"""Performance benchmark: orthonormalization, constrained training, deel-torchlip.

    python scripts/benchmark.py [--parts a,b,c,d,e] [--json [PATH]] [--repeats 20]
    python scripts/benchmark.py --parts i   # export + certificate time per constraint
    python scripts/benchmark.py --parts j   # the ℓ∞ configs' training step
    python scripts/benchmark.py --parts k   # conv nets: training step, export + certificate
    python scripts/benchmark.py --parts l   # XLA convolution gradients inside lax.scan

(a) one order-1 Björck iteration vs the two matmuls it must do (Gram WᵀW and W·G),
    n×n float32, jitted, after warm-up, median over repeats, as a ratio (floor = 1.0).
(b) matmuls to reach ‖WᵀW − I‖₂ ≤ 1e-5 (float32) and ≤ 1e-10 (float64) from the
    certified start, for Björck orders 1–4 (order p = p+1 matmuls a step) and for the
    fast schedule (odd polynomials of degree 3–13 chosen per step, then one order-1 Björck), on a
    Gaussian 1024×1024 start and a Gaussian (784, 1024) start; ratio vs order 1 and
    σ_max of the result (float64 SVD). The residual checks are not counted.

(c) train step of the 784-1024-1024-1024-10 MLP on bundled MNIST (multiclass hinge),
    lipsort.train's real step, with Adam, SGD with momentum 0.9 and plain SGD: Björck + GroupSort(2)
    in retraction mode, in riemannian mode (tangent gradients + lazy retraction; with
    Riemannian Adam, lipsort.riemannian_adam, where the others use Adam) and (Adam only,
    unless --no-unrolled) unrolled with 15 steps, vs the unconstrained ReLU MLP with
    the same optimizer, batch 256 and 1024, interleaved chunks, ratio of the minimum times;
    then --residual-steps steps of training of each: test accuracy, the mean step time over
    the second half of training (ratio to the unconstrained model, same optimizer: it
    includes how often the lazy retraction ran), ‖WᵀW − I‖₂ held during training
    (predicted every step, exact at a few steps), how often a Björck step ran, and the
    residual after export.
(d) the same retraction step vs deel-torchlip (SpectralLinear + GroupSort2) in its own
    venv (scripts/torchlip_step.py; skipped with the install command if absent).
(e) steps per second of the WDE and robustness configs as shipped.
(f) seeds trained together (lipsort.train.train_seeds): one vmapped step of --seeds-count
    seeds of the :paper Wasserstein critic (784 → 720 → 720 → 1, batch 64; Björck in
    riemannian mode with Riemannian Adam, and spectral) against that many single-seed
    steps, interleaved; ratio < 1 means vmapping saves time.
(g) one generator step (5 critic updates + 1 generator update, batch 64) of the Lipschitz
    WGAN (configs/gan_mnist.py:lipschitz: Björck GroupSort(4) critic, riemannian mode, no
    penalty) and of WGAN-GP with the DCGAN generator (configs/gan_mnist.py:dcgan; its
    upsamplings as parity matmuls, and as lax.conv_transpose for comparison) against
    WGAN-GP's (configs/gan_mnist.py), interleaved.
(h) where the :paper Wasserstein critic's step goes (784 → 720 → 720 → 1, batch 64 per side,
    configs/wde_mnist.py:paper, one seed): the full step (batch sampling + gradient +
    update [+ retraction]) of the unconstrained critic, spectral, and Björck in riemannian
    mode (Riemannian Adam); the same steps on a fixed batch (no sampling); the batch
    sampling alone (data gather + generator forward); and the riemannian step without its
    retraction (attribution only: that model leaves the manifold). Interleaved chunks;
    ratios to the unconstrained full step.
(i) export + certificate time of a 784-1024×3-10 model per constraint: lipsort.export.export_model
    then certify.lipschitz_upper_bound and certify.layer_operator_norms, for Björck (retraction and
    unrolled), spectral, ℓ∞ (norm linf), two_inf first layer + ℓ∞ and none (models at init, GroupSort(2));
    wall time of the first call (JAX compilation included) and the minimum over repeats, process
    CPU time of that minimum, the certificate. The norm cache is cleared before every repeat.
(j) the ℓ∞ training step of configs/robust_mnist_linf.py's model (784-1024×3-10, MaxMin, bundled
    MNIST, multiclass hinge): projected training onto the ℓ1 sphere with AggMo (the shipped
    configs), the differentiated projection with Adam (the previous default), the blog's
    two_inf → ℓ∞ network projected, against the unconstrained ReLU MLP with Adam, batch 256 and
    1024, interleaved chunks, ratio of the minimum times (lipsort.train's real step).
(k) convolutions: the training step of a conv net (lipsort.models.build_model, kind "conv": 3×3
    convs of 32, 64, 64, 128 channels, zero padding, space_to_depth(2) after the 2nd and 4th,
    dense 256 head, batch 256, random images and labels, multiclass hinge, Adam) with AOL and
    BCOP convs (GroupSort(2), Björck head in retraction mode) against the unconstrained net
    (ReLU, and GroupSort(2); for attribution also unconstrained convs with the Björck head), at
    28×28×1 (--conv-inputs 28x28x1,32x32x3 adds 32×32×3), interleaved chunks of --conv-chunk
    steps; ms/step, images/s, ratios of the minimum times (lipsort.train's real step:
    make_chunk_runner's lax.scan of gradient, optimizer update and the head's retraction).
    Then the constrained convs' kernel construction alone (constrained_kernel() of every conv
    layer, value + gradient, in a jitted lax.scan), and export + certificate time of the AOL
    and BCOP models at init (export_model, then certify.lipschitz_upper_bound; first call and
    minimum over --repeats/20 repeats, as in part i), and the minimum over --repeats/10 with
    numpy's BLAS on one thread (threaded OpenBLAS spins on shared cores).
(l) why the CPU paths avoid XLA convolutions in training loops: --l-steps SGD steps of one
    3×3 convolution (7×7×128 → 256, batch 64, zero padding), updating its kernel or its
    input, as a rolled lax.scan and unrolled, with lax.conv_general_dilated and with
    lipsort.convolution.conv (patches @ kernel on CPU); ms per step, ratio scanned/unrolled.

Every matmul runs at Precision.HIGHEST (as in lipsort.orthogonal). ``--json`` writes all
numbers as JSON (to PATH, or stdout with no PATH) in addition to the printed tables.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lipsort.fast_orthogonal import fast_schedule, odd_polynomial_step, polynomial_step_matmuls
from lipsort.orthogonal import (
    bjorck,
    bjorck_step,
    certified_scale,
    gram_matrix,
    matmul,
    taylor_coefficients,
)

PARTS = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l")
# Part (e): the experiment configs whose training speed researchers will feel.
E_CONFIGS = ("wde_mnist", "wde_fashion_mnist", "robust_mnist_l2", "robust_mnist_linf",
             "robust_fashion_mnist_l2", "robust_fashion_mnist_linf")
TORCH_PYTHON = os.environ.get("LIPSORT_TORCH_PYTHON", "/opt/venv-torchlip/bin/python")
TORCH_INSTALL = "python -m venv /opt/venv-torchlip && /opt/venv-torchlip/bin/pip install torch deel-torchlip"
TOLS = {"float32": 1e-5, "float64": 1e-10}
MAX_STEPS = 150


def _median_time(fn, x, repeats):
    jax.block_until_ready(fn(x))  # compile
    jax.block_until_ready(fn(x))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def part_a(sizes, repeats, seed):
    """Order-1 Björck step vs its two-matmul floor."""
    rng = np.random.default_rng(seed)
    step = jax.jit(lambda w: bjorck(w, 1, prescale=False))
    floor = jax.jit(lambda w: matmul(w, matmul(w.T, w)))
    rows = []
    print("\n(a) one order-1 Björck iteration vs its 2 matmuls (float32, jitted, median)")
    print(f"{'n':>6} {'bjorck step ms':>15} {'2 matmuls ms':>13} {'ratio':>7}")
    for n in sizes:
        w = certified_scale(jnp.asarray(rng.normal(size=(n, n)), jnp.float32))[0]
        t_step = _median_time(step, w, repeats)
        t_floor = _median_time(floor, w, repeats)
        rows.append(dict(n=n, bjorck_step_s=t_step, two_matmuls_s=t_floor, ratio=t_step / t_floor))
        print(f"{n:>6} {t_step * 1e3:>15.2f} {t_floor * 1e3:>13.2f} {t_step / t_floor:>7.3f}")
    return rows


def _residual_at_most(x, tol):
    """Whether ‖G − I‖₂ ≤ tol, and the value (exact eigvalsh only when it can be ≤ tol)."""
    g = np.asarray(gram_matrix(x), np.float64)
    r = g - np.eye(g.shape[0])
    lower = max(np.linalg.norm(r) / np.sqrt(g.shape[0]), np.abs(np.diag(r)).max())
    if lower > tol:
        return False, lower
    val = float(np.abs(np.linalg.eigvalsh(r)).max())
    return val <= tol, val


def _count(start, steps, tol):
    """Applies (step_fn, matmuls) pairs until the residual is ≤ tol; returns counts."""
    x, used, n_steps = start, 0, 0
    ok, res = _residual_at_most(x, tol)
    for fn, cost in steps:
        if ok or n_steps >= MAX_STEPS:
            break
        x = fn(x)
        used += cost
        n_steps += 1
        ok, res = _residual_at_most(x, tol)
    sigma = float(np.linalg.norm(np.asarray(x, np.float64), 2))
    return dict(matmuls=used if ok else None, steps=n_steps, residual=res, sigma_max=sigma)


def _bjorck_steps(order):
    coeffs = taylor_coefficients(order, 0.5)
    fn = jax.jit(lambda x: bjorck_step(x, gram_matrix(x), coeffs))
    while True:
        yield fn, order + 1


def _fast_steps(lower):
    for coeffs in fast_schedule(lower):
        yield jax.jit(lambda x, c=coeffs: odd_polynomial_step(x, c)), polynomial_step_matmuls(coeffs)
    yield from _bjorck_steps(1)


def part_b(seed, lowers):
    rng = np.random.default_rng(seed)
    starts = {
        "gaussian 1024x1024": rng.normal(size=(1024, 1024)),
        "gaussian (784, 1024)": rng.normal(size=(784, 1024)),
    }
    methods = [(f"bjorck order {p}", lambda p=p: _bjorck_steps(p)) for p in (1, 2, 3, 4)]
    methods += [(f"fast (lower={lo:g})", lambda lo=lo: _fast_steps(lo)) for lo in lowers]
    rows = []
    for dtype, tol in TOLS.items():
        with jax.enable_x64(dtype == "float64"):
            for name, w in starts.items():
                start = certified_scale(jnp.asarray(w, dtype))[0]
                print(f"\n(b) {name}, {dtype}: matmuls to ‖WᵀW − I‖₂ ≤ {tol:g} from the certified start")
                print(f"{'method':<22} {'matmuls':>8} {'steps':>6} {'vs order 1':>11} {'residual':>10} {'σ_max − 1':>11}")
                base = None
                for method, make in methods:
                    r = _count(start, make(), tol)
                    if method == "bjorck order 1":
                        base = r["matmuls"]
                    ratio = r["matmuls"] / base if r["matmuls"] and base else None
                    rows.append(dict(start=name, dtype=dtype, tol=tol, method=method, ratio_vs_order1=ratio, **r))
                    mm = "—" if r["matmuls"] is None else str(r["matmuls"])
                    rs = "—" if ratio is None else f"{ratio:.2f}"
                    print(f"{method:<22} {mm:>8} {r['steps']:>6} {rs:>11} {r['residual']:>10.2e} "
                          f"{r['sigma_max'] - 1:>11.2e}")
    return rows


# --- (c) training step: constrained vs unconstrained ----------------------------------------

MLP_WIDTHS = (1024, 1024, 1024)
# name → model fields; the reference is the plain network.
STEP_MODELS = {
    "unconstrained relu": dict(activation="relu", group_size=None, constraint="none"),
    "bjorck+groupsort retraction": dict(
        activation="group_sort", group_size=2, constraint="bjorck", bjorck_training="retraction"
    ),
    "bjorck+groupsort riemannian": dict(
        activation="group_sort", group_size=2, constraint="bjorck", bjorck_training="riemannian"
    ),
    "bjorck+groupsort unrolled-15": dict(
        activation="group_sort", group_size=2, constraint="bjorck", bjorck_training="unrolled", bjorck_iters=15
    ),
}
SGD_MOMENTUM = 0.9
SGD_LR = 0.01
RIEMANNIAN_ADAM_LR = 3e-4
OPTIMIZERS = ("adam", "momentum", "sgd")


def _optimizer(name, lrs, model, params):
    """lipsort.train's optimizer for ``name`` (the benchmark's names map onto config fields).

    "adam" is Riemannian Adam (one second moment per kernel, lipsort.riemannian_adam) at
    lrs["riemannian_adam"] for a model with riemannian-mode kernels (what a user of that
    mode should pick: plain Adam's per-coordinate scaling undoes the tangent projection)
    and plain Adam at lrs["adam"] for the others.
    """
    import ml_collections
    from lipsort import optim, riemannian_adam

    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    mask = riemannian_adam.tangent_kernel_mask(model, params)
    adam = "riemannian_adam" if any(jax.tree.leaves(mask)) else "adam"
    fields = dict(adam=dict(optimizer=adam, learning_rate=lrs[adam]),
                  momentum=dict(optimizer="sgd", learning_rate=lrs["sgd"], momentum=SGD_MOMENTUM),
                  sgd=dict(optimizer="sgd", learning_rate=lrs["sgd"]))[name]
    return optim.make_optimizer(ml_collections.ConfigDict(fields), mask)


def _optimizer_label(name, lrs):
    return {"adam": f"Adam lr {lrs['adam']:g} (riemannian mode: Riemannian Adam lr {lrs['riemannian_adam']:g})",
            "momentum": f"SGD lr {lrs['sgd']:g} momentum {SGD_MOMENTUM:g}",
            "sgd": f"SGD lr {lrs['sgd']:g} (no momentum)"}[name]


def _mnist(batch_size):
    """Bundled MNIST (lipsort.data), a jit-able batch sampler, the hinge loss, test arrays."""
    from lipsort import data as lipdata, losses
    import ml_collections

    images = lipdata.load(ml_collections.ConfigDict(dict(dataset="mnist", source="bundled")))
    xs, ys = jnp.asarray(images.x_train), jnp.asarray(images.y_train)

    def sample_batch(key):
        idx = jax.random.randint(key, (batch_size,), 0, xs.shape[0])
        return xs[idx], ys[idx]

    def loss(model, batch):
        return losses.multiclass_hinge(model(batch[0]), batch[1], margin=0.3), {}

    return images.source, sample_batch, loss, (images.x_test, images.y_test)


def _step_runner(fields, batch_size, lrs, seed, optimizer="adam"):
    """(run_chunk jitted, initial state, graphdef, data source, test set) with lipsort.train's
    real train step."""
    from flax import nnx
    from lipsort import train
    from lipsort.models import LipschitzMLP, MLPSpec

    source, sample_batch, loss, test = _mnist(batch_size)
    model = LipschitzMLP(MLPSpec(in_features=784, widths=MLP_WIDTHS, out_features=10, **fields),
                         rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = _optimizer(optimizer, lrs, model, params)
    run = jax.jit(train.make_chunk_runner(graphdef, loss, sample_batch, tx, jax.random.key(seed),
                                          retracts=model.retracts))
    return run, (params, rest, tx.init(params)), graphdef, source, test


def _time_chunks(runners, chunk, repeats):
    """Per-step seconds of each runner: chunks of ``chunk`` steps, interleaved across
    runners so that load from other processes hits all of them alike; min and median."""
    states, times = {}, {name: [] for name in runners}
    for name, (run, state) in runners.items():
        states[name] = run(state, jnp.arange(chunk))[0]  # compile + warm-up
        jax.block_until_ready(states[name])
    for r in range(repeats):
        for name, (run, _) in runners.items():
            t0 = time.perf_counter()
            states[name] = run(states[name], jnp.arange(r * chunk, (r + 1) * chunk))[0]
            jax.block_until_ready(states[name])
            times[name].append((time.perf_counter() - t0) / chunk)
    return {name: (float(np.min(t)), float(np.median(t))) for name, t in times.items()}


class _TrainingRun:
    """One model trained step by step in chunks (lipsort.train's step), recording the
    retraction statistics of every update and the time of the chunks it is asked to time."""

    def __init__(self, model_name, optimizer, batch_size, lrs, seed):
        self.name, self.optimizer, self.batch_size = model_name, _optimizer_label(optimizer, lrs), batch_size
        self.run, self.state, self.graphdef, _, self.test = _step_runner(
            STEP_MODELS[model_name], batch_size, lrs, seed, optimizer)
        self.done, self.seconds, self.timed_steps = 0, 0.0, 0
        self.losses, self.exact = [], []
        self.stats = {k: [] for k in ("orthogonality_residual", "retraction_drift", "retraction_matmuls",
                                      "retraction_steps", "retraction_low_rank")}

    def advance(self, to_step, timed=False):
        t0 = time.perf_counter()
        self.state, (loss, aux) = self.run(self.state, jnp.arange(self.done, to_step))
        jax.block_until_ready(self.state)
        if timed:
            self.seconds, self.timed_steps = self.seconds + time.perf_counter() - t0, self.timed_steps + to_step - self.done
        self.done = to_step
        self.losses += np.asarray(loss).tolist()
        for k, values in self.stats.items():
            if k in aux:
                values += np.asarray(aux[k]).tolist()

    def sample_exact_residual(self):
        from flax import nnx
        from lipsort.orthogonal import orthogonality_residual

        if self.stats["orthogonality_residual"]:
            model = nnx.merge(self.graphdef, self.state[0], self.state[1])
            self.exact.append((self.done, max(float(orthogonality_residual(layer.kernel[...])) for layer in model.layers)))

    def result(self, late_window):
        from flax import nnx
        from lipsort.orthogonal import finish_orthonormalization, orthogonality_residual

        model = nnx.merge(self.graphdef, self.state[0], self.state[1])
        x_test, y_test = self.test
        logits = np.asarray(model(jnp.asarray(x_test)))
        out = dict(model=self.name, optimizer=self.optimizer, batch_size=self.batch_size, steps=self.done,
                   test_accuracy=float(np.mean(logits.argmax(-1) == np.asarray(y_test))),
                   final_loss=float(np.mean(self.losses[-20:])), late_window=late_window,
                   late_ms_per_step=1e3 * self.seconds / max(self.timed_steps, 1))
        st = self.stats
        if st["orthogonality_residual"]:
            with jax.enable_x64(True):
                export = max(float(orthogonality_residual(jnp.asarray(finish_orthonormalization(layer.kernel[...]))))
                             for layer in model.layers)
            retracted = np.asarray(st["retraction_steps"]) > 0
            out.update(max_predicted=max(st["orthogonality_residual"]), median_drift=float(np.median(st["retraction_drift"])),
                       retraction_fraction=float(np.mean(retracted)), mean_matmuls=float(np.mean(st["retraction_matmuls"])),
                       late_retraction_fraction=float(np.mean(retracted[late_window[0]:])),
                       low_rank_fraction=float(np.mean(np.asarray(st["retraction_low_rank"]) > 0)),
                       exact_at_steps=self.exact, exact_after_export=export)
        return out


def _train_and_track(model_names, optimizer, batch_size, lrs, steps, seed, chunk=25):
    """Trains each model ``steps`` steps; returns per model its test accuracy, the mean
    step time over the second half of training and, for retracting models, the predicted
    residual after every update, the exact ‖WᵀW − I‖₂ of the worst kernel at a few steps,
    how often a Björck step (or a low-rank correction) ran, and the residual after export.

    The first half runs model after model, untimed. The second half is timed in chunks of
    ``chunk`` steps interleaved across the models (as the step tables are), so that load
    from other processes hits all of them alike.
    """
    runs = [_TrainingRun(name, optimizer, batch_size, lrs, seed) for name in model_names]
    half = steps // 2
    chunk = max(c for c in range(1, min(chunk, steps - half) + 1) if (steps - half) % c == 0)  # equal timed calls
    # The last untimed call is `chunk` steps long: it compiles the call the timed ones reuse.
    first_half = sorted({e for e in (1, 10, 100, steps // 4) if 0 < e < half - chunk} | {half - chunk, half} - {0})
    for run in runs:
        for end in first_half:
            run.advance(end)
            run.sample_exact_residual()
    samples = {half + (steps - half) // 2, steps}
    for start in range(half, steps, chunk):
        end = min(start + chunk, steps)
        for run in runs:
            run.advance(end, timed=True)
            if end in samples:
                run.sample_exact_residual()
    return [run.result((half, steps)) for run in runs]


def part_c(batch_sizes, optimizers, repeats, chunk, lrs, residual_steps, seed, include_unrolled):
    rows = []
    for batch_size in batch_sizes:
        for optimizer in optimizers:
            runners = {}
            for name, fields in STEP_MODELS.items():
                if "unrolled" in name and not (include_unrolled and optimizer == "adam"):
                    continue
                run, state, _, source, _ = _step_runner(fields, batch_size, lrs, seed, optimizer)
                runners[name] = (run, state)
            timing = _time_chunks(runners, chunk, repeats)
            base_min, base_med = timing["unconstrained relu"]
            print(f"\n(c) 784-{'-'.join(map(str, MLP_WIDTHS))}-10 train step, batch {batch_size}, "
                  f"{_optimizer_label(optimizer, lrs)}, {source}; {repeats}×{chunk} steps interleaved")
            print(f"{'model':<30} {'ms/step min':>12} {'median':>8} {'ratio (min)':>12} {'ratio (median)':>15}")
            for name, (t_min, t_med) in timing.items():
                row = dict(batch_size=batch_size, optimizer=optimizer, model=name, ms_min=1e3 * t_min,
                           ms_median=1e3 * t_med, ratio_min=t_min / base_min, ratio_median=t_med / base_med)
                rows.append(row)
                print(f"{name:<30} {row['ms_min']:>12.1f} {row['ms_median']:>8.1f} {row['ratio_min']:>12.2f} "
                      f"{row['ratio_median']:>15.2f}")
    tracked = []
    if residual_steps < 1:
        return dict(steps=rows, training=tracked)
    print(f"\n(c) {residual_steps} training steps at batch {batch_sizes[0]}: test accuracy (bundled MNIST test "
          "split) and ‖WᵀW − I‖₂ held during training (predicted after every update; exact, float32 eigvalsh, "
          "worst kernel, at a few steps; after the float64 export)")
    for optimizer in optimizers:
        results = _train_and_track(("unconstrained relu", "bjorck+groupsort retraction", "bjorck+groupsort riemannian"),
                                   optimizer, batch_size=batch_sizes[0], lrs=lrs, steps=residual_steps, seed=seed)
        base = results[0]["late_ms_per_step"]
        for res in results:
            name = res["model"]
            res["late_ratio"] = res["late_ms_per_step"] / base
            tracked.append(res)
            line = (f"{name} [{res['optimizer']}]: test accuracy {res['test_accuracy']:.3f}, "
                    f"final loss {res['final_loss']:.4f}; steps {res['late_window'][0]}–{res['late_window'][1]} "
                    f"(interleaved): {res['late_ms_per_step']:.1f} ms/step = {res['late_ratio']:.2f}× unconstrained")
            if "max_predicted" in res:
                line += (f"; predicted residual max {res['max_predicted']:.2e}; exact "
                         + ", ".join(f"step {s}: {r:.2e}" for s, r in res["exact_at_steps"])
                         + f"; after export {res['exact_after_export']:.2e}; residual before retraction: "
                         f"median {res['median_drift']:.2e}; Björck step in {100 * res['retraction_fraction']:.0f}% "
                         f"of updates ({100 * res['late_retraction_fraction']:.0f}% in the second half), n³-matmuls per update (all layers): mean {res['mean_matmuls']:.2f}; "
                         f"rank-16 correction in {100 * res['low_rank_fraction']:.0f}% of updates")
            print(line)
    return dict(steps=rows, training=tracked)


# --- (d) vs deel-torchlip -------------------------------------------------------------------------


def part_d(batch_sizes, repeats, chunk, lr, seed, torch_python):
    """Our retraction step and deel-torchlip's step (its own venv, a subprocess), same
    architecture, batch, optimizer; each timed against its framework's plain ReLU MLP."""
    import subprocess

    if not os.path.exists(torch_python):
        print(f"\n(d) skipped: no deel-torchlip interpreter at {torch_python}. Install with:\n    {TORCH_INSTALL}\n"
              "or point LIPSORT_TORCH_PYTHON / --torch-python at one.")
        return dict(skipped=f"no interpreter at {torch_python}")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchlip_step.py")
    cmd = [torch_python, script, "--batch-sizes", ",".join(map(str, batch_sizes)),
           "--repeats", str(max(repeats // 3, 2)), "--chunk", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"\n(d) skipped: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        return dict(skipped=proc.stderr[-2000:])
    torch_out = json.loads(proc.stdout.strip().splitlines()[-1])
    torch_times = {(r["batch_size"], r["model"]): r for r in torch_out["results"]}
    rows = []
    for batch_size in batch_sizes:
        runners = {}
        for name in ("unconstrained relu", "bjorck+groupsort retraction"):
            run, state, _, _, _ = _step_runner(STEP_MODELS[name], batch_size, dict(adam=lr), seed)
            runners[name] = (run, state)
        ours = _time_chunks(runners, chunk, repeats)
        deel = torch_times[(batch_size, "deel-torchlip")]
        plain = torch_times[(batch_size, "torch relu")]
        row = dict(
            batch_size=batch_size,
            lipsort_ms_min=1e3 * ours["bjorck+groupsort retraction"][0],
            lipsort_relu_ms_min=1e3 * ours["unconstrained relu"][0],
            deel_torchlip_ms_min=1e3 * deel["s_min"],
            torch_relu_ms_min=1e3 * plain["s_min"],
        )
        row["speedup_vs_deel_torchlip"] = row["deel_torchlip_ms_min"] / row["lipsort_ms_min"]
        row["deel_torchlip_vs_torch_relu"] = row["deel_torchlip_ms_min"] / row["torch_relu_ms_min"]
        row["lipsort_vs_jax_relu"] = row["lipsort_ms_min"] / row["lipsort_relu_ms_min"]
        rows.append(row)
        print(f"\n(d) batch {batch_size}: lipsort Björck+GroupSort (retraction) {row['lipsort_ms_min']:.0f} ms/step "
              f"vs deel-torchlip {torch_out['deel_torchlip']} SpectralLinear+GroupSort2 {row['deel_torchlip_ms_min']:.0f} "
              f"ms/step: {row['speedup_vs_deel_torchlip']:.1f}× faster (min over repeats). References: "
              f"deel-torchlip / torch ReLU = {row['deel_torchlip_vs_torch_relu']:.1f}×, lipsort / JAX ReLU = "
              f"{row['lipsort_vs_jax_relu']:.2f}×; torch {torch_out['torch']}, {torch_out['threads']} threads")
    return dict(torch=torch_out, rows=rows)


# --- (e) experiment configs: steps per second -----------------------------------------------------


def part_e(names, repeats, chunk):
    """Training steps per second of each experiment config as shipped (its model, batch,
    optimizer, data), with lipsort.train's step; Björck configs also with unrolled
    Björck (bjorck_iters from the config) for comparison. Data loading and any missing
    generator (WDE) happen before the timing."""
    from lipsort import train
    from lipsort.config_loader import load_config

    rows = []
    print("\n(e) experiment configs: training steps per second (lipsort.train step, after compilation)")
    print(f"{'config':<28} {'mode':<12} {'batch':>6} {'steps/s':>9} {'ms/step':>9}")
    for name in names:
        try:
            config = load_config(name)
            modes = [config.model.get("bjorck_training", "unrolled")]
        except Exception as e:  # a config whose data is absent on this machine
            print(f"{name:<28} skipped: {e}")
            rows.append(dict(config=name, skipped=str(e)))
            continue
        if config.model.constraint == "bjorck" and modes[0] == "retraction":
            modes.append("unrolled")
        runners = {}
        for mode in modes:
            config.model.bjorck_training = mode
            try:
                task, spec = train.validate_config(config)
            except train.ConfigError as e:
                print(f"{name:<28} skipped: {e}")
                rows.append(dict(config=name, skipped=str(e)))
                break
            task.prepare("")  # data and any generator, before tracing (no workdir needed)
            # The trainer's own state: the same model, optimizer and manifold mask.
            ts = train.create_train_state(config, spec)
            run = jax.jit(train.make_chunk_runner(ts.graphdef, task.loss, task.sample_batch, ts.tx,
                                                  jax.random.key(0), retracts=ts.model.retracts))
            runners[mode] = (run, ts.state)
        if not runners:
            continue
        timing = _time_chunks(runners, chunk, repeats)
        for mode, (t_min, _) in timing.items():
            row = dict(config=name, mode=mode if config.model.constraint == "bjorck" else "-",
                       constraint=config.model.constraint, batch_size=int(config.train.batch_size),
                       steps_per_s=1.0 / t_min, ms_per_step=1e3 * t_min,
                       num_steps=int(config.train.num_steps))
            rows.append(row)
            print(f"{name:<28} {row['mode']:<12} {row['batch_size']:>6} {row['steps_per_s']:>9.1f} "
                  f"{row['ms_per_step']:>9.1f}")
    return rows


def _paper_critic(model_overrides: dict):
    """(config, prepared task, spec) of the wde_mnist:paper critic on bundled MNIST with
    ``config.model`` fields overridden (riemannian mode gets Riemannian Adam)."""
    from lipsort import train
    from lipsort.config_loader import load_config

    config = load_config("wde_mnist:paper")
    config.data.source = config.generator.data.source = "bundled"
    for k, v in model_overrides.items():
        config.model[k] = v
    if model_overrides.get("bjorck_training") == "riemannian":
        config.train.optimizer = "riemannian_adam"
    task, spec = train.validate_config(config)
    task.prepare("")
    return config, task, spec


def part_f(num_seeds, repeats, chunk):
    """Part (f): one vmapped step of ``num_seeds`` seeds vs ``num_seeds`` single steps."""
    from lipsort import train

    print(f"\n(f) {num_seeds} seeds in one vmapped program vs one by one (wde_mnist:paper critic, batch 64)")
    print(f"{'critic':<24} {'one seed ms':>12} {'vmapped ms':>11} {'ratio':>7}")
    rows = []
    for label, overrides in (("Björck riemannian", dict(constraint="bjorck", bjorck_training="riemannian")),
                             ("spectral", dict(constraint="spectral"))):
        config, task, spec = _paper_critic(overrides)
        configs = train.seed_configs(config, range(num_seeds))
        states = [train.create_train_state(c, spec) for c in configs]
        ts = states[0]
        runner = train.make_chunk_runner(ts.graphdef, task.loss, task.sample_batch, ts.tx, None,
                                         retracts=ts.model.retracts)
        keys = jnp.stack([train.run_keys(c)[0] for c in configs])
        vmapped = jax.jit(jax.vmap(runner, in_axes=(0, None, 0)))
        single = jax.jit(runner)
        timing = _time_chunks({
            "single": (lambda state, steps: single(state, steps, keys[0]), ts.state),
            "vmapped": (lambda state, steps: vmapped(state, steps, keys),
                        jax.tree.map(lambda *xs: jnp.stack(xs), *[t.state for t in states])),
        }, chunk, repeats)
        one, together = timing["single"][0], timing["vmapped"][0]
        row = dict(critic=label, seeds=num_seeds, single_ms=1e3 * one, vmapped_ms=1e3 * together,
                   ratio=together / (num_seeds * one))
        rows.append(row)
        print(f"{label:<24} {row['single_ms']:>12.1f} {row['vmapped_ms']:>11.1f} {row['ratio']:>7.2f}")
    return rows


def part_h(repeats, chunk):
    """Part (h): the :paper critic step, split into sampling, gradient + update, retraction."""
    from lipsort import train

    print("\n(h) where the wde_mnist:paper critic step goes (784 → 720 → 720 → 1, batch 64 per side)")
    runners, task = {}, None
    for label, overrides in (("unconstrained", dict(constraint="none")), ("spectral", dict(constraint="spectral")),
                             ("Björck riemannian", dict(constraint="bjorck", bjorck_training="riemannian"))):
        config, task, spec = _paper_critic(overrides)
        ts = train.create_train_state(config, spec)
        key = train.run_keys(config)[0]
        fixed = task.sample_batch(key)

        def runner(sample, retracts, ts=ts, task=task, key=key):
            return jax.jit(train.make_chunk_runner(ts.graphdef, task.loss, sample, ts.tx, key, retracts=retracts))

        runners[f"{label}: full step"] = (runner(task.sample_batch, ts.model.retracts), ts.state)
        runners[f"{label}: fixed batch"] = (runner(lambda k, fixed=fixed: fixed, ts.model.retracts), ts.state)
        if ts.model.retracts:
            runners[f"{label}: no retraction"] = (runner(task.sample_batch, False), ts.state)
    sample = task.sample_batch

    def sampling(state, steps):  # the batches alone, reduced so nothing is optimized away
        total = jax.lax.map(lambda t: sum(jnp.sum(x) for x in sample(jax.random.fold_in(state, t))), steps)
        return state, total

    runners["batch sampling alone"] = (jax.jit(sampling), jax.random.PRNGKey(0))
    timing = _time_chunks(runners, chunk, repeats)
    base = timing["unconstrained: full step"][0]
    print(f"{'step':<40} {'ms min':>8} {'ms median':>10} {'ratio (min)':>12}")
    rows = []
    for name, (t_min, t_med) in timing.items():
        rows.append(dict(step=name, ms_min=1e3 * t_min, ms_median=1e3 * t_med, ratio=t_min / base))
        print(f"{name:<40} {1e3 * t_min:>8.1f} {1e3 * t_med:>10.1f} {t_min / base:>12.2f}")
    return rows


def part_g(repeats, chunk):
    """Part (g): a generator step of the Lipschitz WGAN vs WGAN-GP's."""
    from lipsort import data
    from lipsort.config_loader import load_config
    from lipsort.tasks import gan

    print("\n(g) generator step: Lipschitz WGAN (Björck critic, no penalty) vs WGAN-GP, bundled MNIST")
    def conv_transpose(h, kernel):  # what the DCGAN generator computed before its parity matmuls
        return jax.lax.conv_transpose(h, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    runners = {}
    parity_matmuls = gan.upsample_conv_transpose
    for label, spec, upsample in (("WGAN-GP", "gan_mnist", None), ("Lipschitz WGAN", "gan_mnist:lipschitz", None),
                                  ("WGAN-GP, DCGAN", "gan_mnist:dcgan", parity_matmuls),
                                  ("  (lax.conv_transpose)", "gan_mnist:dcgan", conv_transpose)):
        config = load_config(spec)
        config.data.source = "bundled"
        images = data.load(config.data)
        critic, graphdef, optimizers, state = gan._init_state(config)
        step_fn = gan.make_step(graphdef, config, jnp.asarray(images.x_train), jax.random.PRNGKey(1), optimizers,
                                retracts=critic.retracts)
        runner = jax.jit(lambda s, steps, f=step_fn: jax.lax.scan(f, s, steps))
        if upsample is not None:  # traced now, with this upsampling
            gan.upsample_conv_transpose = upsample
            runner = runner.lower(state, jnp.arange(chunk)).compile()
            gan.upsample_conv_transpose = parity_matmuls
        runners[label] = (runner, state)
    timing = _time_chunks(runners, chunk, repeats)
    base = timing["WGAN-GP"][0]
    rows = []
    for label, (t_min, _) in timing.items():
        rows.append(dict(gan=label, ms_per_step=1e3 * t_min, ratio=t_min / base))
        print(f"{label:<16} {1e3 * t_min:>9.1f} ms per generator step  {t_min / base:>5.2f}×")
    return rows


I_MODELS = (
    ("bjorck retraction", dict(constraint="bjorck", bjorck_training="retraction", norm="l2")),
    ("bjorck unrolled", dict(constraint="bjorck", bjorck_training="unrolled", norm="l2")),
    ("spectral", dict(constraint="spectral", norm="l2")),
    ("linf", dict(constraint="linf", norm="linf")),
    ("two_inf + linf", dict(constraint="linf", first_constraint="two_inf", norm="l2")),
    ("none", dict(constraint="none", norm="l2")),
)


def part_i(repeats):
    """Part (i): export + certificate of the 784-1024-1024-1024-10 model, per constraint."""
    from flax import nnx

    from lipsort.models import build_model

    print("\n(i) export + certificate of a 784-1024-1024-1024-10 model (at init), seconds")
    print(f"{'model':<20} {'first':>7} {'min':>7} {'export':>7} {'certify':>8} {'CPU s':>7} {'certificate':>12}")
    rows = []
    for label, fields in I_MODELS:
        model = build_model(dict(widths=(1024, 1024, 1024), activation="group_sort", group_size=2, **fields), 784, 10)
        jax.block_until_ready(jax.tree.leaves(nnx.state(model)))  # the (asynchronous) init is not export time
        row = dict(model=label, **_export_times(model, repeats))
        rows.append(row)
        print(f"{label:<20} {row['first_s']:>7.2f} {row['min_s']:>7.2f} {row['export_s']:>7.2f} "
              f"{row['certify_s']:>8.2f} {row['cpu_s']:>7.2f} {row['lipschitz_upper_bound']:>12.9f}")
    return rows


# Part (j): name → (config.model fields, config.train optimizer fields); the first is the reference.
J_MODELS = {
    "unconstrained relu (adam)": (dict(activation="relu", constraint="none", norm="linf"),
                                  dict(optimizer="adam", learning_rate=1e-3)),
    "linf projected sphere (aggmo)": (dict(linf_training="projected", linf_projection="sphere"),
                                      dict(optimizer="aggmo", learning_rate=0.0033)),
    "linf differentiated (adam)": (dict(linf_training="differentiated"), dict(optimizer="adam", learning_rate=1e-2)),
    "two_inf+linf projected (aggmo)": (dict(norm="l2", first_constraint="two_inf", linf_training="projected",
                                            linf_projection="sphere"),
                                       dict(optimizer="aggmo", learning_rate=0.0033)),
}


def part_j(batch_sizes, repeats, chunk, seed):
    """Part (j): the ℓ∞ configs' training step against the unconstrained one."""
    import ml_collections
    from flax import nnx

    from lipsort import optim, train
    from lipsort.models import LipschitzMLP, MLPSpec

    rows = []
    for batch_size in batch_sizes:
        _, sample_batch, loss, _ = _mnist(batch_size)
        runners = {}
        for name, (model_fields, opt_fields) in J_MODELS.items():
            fields = {**dict(activation="max_min", group_size=2, constraint="linf", norm="linf"), **model_fields}
            model = LipschitzMLP(MLPSpec(in_features=784, widths=MLP_WIDTHS, out_features=10, **fields),
                                 rngs=nnx.Rngs(seed))
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            tx = optim.make_optimizer(ml_collections.ConfigDict(opt_fields))
            run = jax.jit(train.make_chunk_runner(graphdef, loss, sample_batch, tx, jax.random.key(seed),
                                                  retracts=model.retracts))
            runners[name] = (run, (params, rest, tx.init(params)))
        times = _time_chunks(runners, chunk, repeats)
        reference = times[next(iter(J_MODELS))][0]
        print(f"\n(j) ℓ∞ train step, 784-{'-'.join(map(str, MLP_WIDTHS))}-10 MaxMin, batch {batch_size}, "
              f"{repeats} interleaved chunks of {chunk} steps")
        print(f"{'model':<34} {'min ms':>8} {'median ms':>10} {'ratio':>7}")
        for name, (t_min, t_med) in times.items():
            rows.append(dict(batch_size=batch_size, model=name, min_ms=1e3 * t_min, median_ms=1e3 * t_med,
                             ratio=t_min / reference))
            print(f"{name:<34} {1e3 * t_min:>8.1f} {1e3 * t_med:>10.1f} {t_min / reference:>7.2f}")
    return rows


# Part (k): name → config.model fields over K_BASE; the first is the reference of the ratios.
K_BASE = dict(kind="conv", conv_channels=[32, 64, 64, 128], downsample=[False, True, False, True], kernel_size=3,
              padding="zeros", widths=[256], group_size=2, lipschitz_constant=1.0, norm="l2", bjorck_iters=15)
K_MODELS = {
    "unconstrained relu": dict(conv_constraint="none", constraint="none", activation="relu"),
    "unconstrained groupsort": dict(conv_constraint="none", constraint="none", activation="group_sort"),
    "none convs + bjorck head": dict(conv_constraint="none", constraint="bjorck", bjorck_training="retraction",
                                     activation="group_sort"),  # attribution: the head's share
    "aol + bjorck head": dict(conv_constraint="aol", constraint="bjorck", bjorck_training="retraction",
                              activation="group_sort"),
    "bcop + bjorck head": dict(conv_constraint="bcop", constraint="bjorck", bjorck_training="retraction",
                               activation="group_sort"),
}
K_NUM_CLASSES = 10


def _conv_model(fields, input_shape, seed):
    import ml_collections

    from lipsort.models import build_model

    config = ml_collections.ConfigDict({**K_BASE, **fields})
    return build_model(config, int(np.prod(input_shape)), K_NUM_CLASSES, seed, input_shape=tuple(input_shape))


def _random_images(input_shape, batch_size):
    """A jit-able sampler of random images (flattened, in [0, 1)) and labels, and the hinge loss."""
    from lipsort import losses

    features = int(np.prod(input_shape))

    def sample_batch(key):
        kx, ky = jax.random.split(key)
        return jax.random.uniform(kx, (batch_size, features)), jax.random.randint(ky, (batch_size,), 0, K_NUM_CLASSES)

    def loss(model, batch):
        return losses.multiclass_hinge(model(batch[0]), batch[1], margin=0.3), {}

    return sample_batch, loss


def _conv_step_runner(model, sample_batch, loss, seed):
    """(run_chunk jitted, initial state): lipsort.train's real step (gradient, Adam update,
    the head's retraction) in the training loop's lax.scan chunk, as in part (j)."""
    import ml_collections
    from flax import nnx

    from lipsort import optim, train

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optim.make_optimizer(ml_collections.ConfigDict(dict(optimizer="adam", learning_rate=1e-3)))
    run = jax.jit(train.make_chunk_runner(graphdef, loss, sample_batch, tx, jax.random.key(seed),
                                          retracts=model.retracts))
    return run, (params, rest, tx.init(params))


def _kernel_runner(model, seed):
    """(run(params, steps), params): every conv layer's constrained_kernel(), value and
    gradient (against a fixed random cotangent), in a jitted lax.scan as in the training
    chunk; the parameters take a 1e-9 step so that each step depends on the last."""
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    keys = jax.random.split(jax.random.key(seed), len(model.convs))
    cotangents = [jax.random.normal(k, conv.kernel_shape) for k, conv in zip(keys, model.convs)]

    def kernels(params):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return sum(jnp.vdot(conv.constrained_kernel(), c) for conv, c in zip(m.convs, cotangents))

    def step(params, _):
        return jax.tree.map(lambda p, g: p - 1e-9 * g, params, jax.grad(kernels)(params)), None

    return jax.jit(lambda params, steps: jax.lax.scan(step, params, steps)), params


def _export_times(model, repeats):
    """Export + certificate timing of one model (parts i, k): first, min, export, certify
    (the bound and every layer's norm, as a run's summary asks for them) and CPU seconds,
    and the bound; the norm caches are cleared before every repeat."""
    from lipsort import certify, convolution, export, norms

    times = []
    for _ in range(max(repeats, 1)):
        getattr(norms, "_SPECTRAL_CACHE", {}).clear()  # every repeat computes every norm
        convolution._NORM_CACHE.clear()
        cpu, t0 = time.process_time(), time.perf_counter()
        exported = export.export_model(model)
        t1 = time.perf_counter()
        bound = certify.lipschitz_upper_bound(exported)
        certify.layer_operator_norms(exported)
        t2 = time.perf_counter()
        times.append((t2 - t0, t1 - t0, t2 - t1, time.process_time() - cpu))
    best = min(times)
    return dict(first_s=times[0][0], min_s=best[0], export_s=best[1], certify_s=best[2], cpu_s=best[3],
                lipschitz_upper_bound=bound)


def part_k(input_shapes, batch_size, repeats, chunk, export_repeats, one_thread_repeats, seed, export_only=False):
    """Part (k): conv nets (AOL, BCOP) against the unconstrained one: step, kernels, export
    (``export_only``: the export timing alone)."""
    out = dict(steps=[], kernels=[], export=[])
    for shape in input_shapes:
        models = {name: _conv_model(fields, shape, seed) for name, fields in K_MODELS.items()}
        constrained = {name: m for name, m in models.items() if m.convs[0].rule.constrained}
        if not export_only:
            _part_k_steps(out, shape, models, constrained, batch_size, repeats, chunk, seed)
        _part_k_export(out, shape, constrained, export_repeats, one_thread_repeats)
    return out


def _part_k_steps(out, shape, models, constrained, batch_size, repeats, chunk, seed):
    """Part (k)'s train-step and kernel-construction timings at one input shape."""
    channels = "-".join(map(str, K_BASE["conv_channels"]))
    label = "×".join(map(str, shape))
    sample_batch, loss = _random_images(shape, batch_size)
    timing = _time_chunks({name: _conv_step_runner(m, sample_batch, loss, seed) for name, m in models.items()},
                          chunk, repeats)
    relu, groupsort = timing["unconstrained relu"][0], timing["unconstrained groupsort"][0]
    print(f"\n(k) conv net train step, {label} input, convs {channels} (3×3, zero padding, space_to_depth after "
          f"2 and 4), head {K_BASE['widths'][0]}, batch {batch_size}, Adam; {repeats}×{chunk} steps interleaved")
    print(f"{'model':<26} {'ms/step min':>12} {'median':>8} {'images/s':>9} {'vs relu':>8} {'vs groupsort':>13}")
    for name, (t_min, t_med) in timing.items():
        row = dict(input_shape=list(shape), batch_size=batch_size, model=name, ms_min=1e3 * t_min,
                   ms_median=1e3 * t_med, images_per_s=batch_size / t_min, ratio_vs_relu=t_min / relu,
                   ratio_vs_groupsort=t_min / groupsort)
        out["steps"].append(row)
        print(f"{name:<26} {row['ms_min']:>12.1f} {row['ms_median']:>8.1f} {row['images_per_s']:>9.1f} "
              f"{row['ratio_vs_relu']:>8.2f} {row['ratio_vs_groupsort']:>13.2f}")

    kernels = _time_chunks({name: _kernel_runner(m, seed) for name, m in constrained.items()}, chunk, repeats)
    print(f"(k) {label}: kernel construction alone (constrained_kernel() of the {len(K_BASE['conv_channels'])} "
          "convs, value + gradient, jitted lax.scan)")
    print(f"{'model':<26} {'ms min':>8} {'median':>8} {'of the step':>12}")
    for name, (t_min, t_med) in kernels.items():
        step_ms = next(r["ms_min"] for r in out["steps"] if r["model"] == name and r["input_shape"] == list(shape))
        row = dict(input_shape=list(shape), model=name, ms_min=1e3 * t_min, ms_median=1e3 * t_med,
                   fraction_of_step=1e3 * t_min / step_ms)
        out["kernels"].append(row)
        print(f"{name:<26} {row['ms_min']:>8.1f} {row['ms_median']:>8.1f} {row['fraction_of_step']:>11.0%}")


def _part_k_export(out, shape, constrained, export_repeats, one_thread_repeats):
    """Part (k)'s export + certificate timing at one input shape."""
    from flax import nnx

    label = "×".join(map(str, shape))
    print(f"(k) {label}: export + certificate (export_model, then certify.lipschitz_upper_bound and layer_operator_norms), "
          "seconds; "
          "last column: the minimum with numpy's BLAS on one thread (threadpoolctl)")
    print(f"{'model':<26} {'first':>7} {'min':>7} {'export':>7} {'certify':>8} {'CPU s':>7} {'certificate':>12} "
          f"{'1 thread':>9}")
    for name, model in constrained.items():
        jax.block_until_ready(jax.tree.leaves(nnx.state(model)))
        row = dict(input_shape=list(shape), model=name, **_export_times(model, export_repeats))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            row["min_one_blas_thread_s"] = None
        else:
            with threadpool_limits(1, "blas"):
                row["min_one_blas_thread_s"] = _export_times(model, one_thread_repeats)["min_s"]
        out["export"].append(row)
        one = "—" if row["min_one_blas_thread_s"] is None else f"{row['min_one_blas_thread_s']:.2f}"
        print(f"{name:<26} {row['first_s']:>7.2f} {row['min_s']:>7.2f} {row['export_s']:>7.2f} "
              f"{row['certify_s']:>8.2f} {row['cpu_s']:>7.2f} {row['lipschitz_upper_bound']:>12.9f} {one:>9}")


def part_l(repeats, steps):
    """Part (l): convolution gradients in a rolled ``lax.scan`` against the same steps unrolled."""
    from lipsort import convolution

    print(f"\n(l) {steps} SGD steps of a 3×3 conv (7×7×128 → 256, batch 64): lax.scan rolled vs unrolled, ms per step")
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 7, 7, 128))
    kernel = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, 128, 256))
    convs = {"lax.conv_general_dilated": lambda h, k: jax.lax.conv_general_dilated(
                 h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
             "convolution.conv": convolution.conv}
    print(f"{'convolution':<26} {'gradient of':<12} {'scanned':>9} {'unrolled':>9} {'ratio':>7}")
    rows = []
    for name, conv in convs.items():
        for wrt, start in (("kernel", kernel), ("input", x)):
            def step(v, t, conv=conv, wrt=wrt):  # t enters the loss so no step is hoisted or shared
                loss = (lambda k: jnp.sum(jnp.tanh(conv(x + t, k)))) if wrt == "kernel" else \
                    (lambda h: jnp.sum(jnp.tanh(conv(h, kernel + t))))
                return v - 1e-6 * jax.grad(loss)(v), None

            times = {}
            for unroll in (1, steps):
                run = jax.jit(lambda v, unroll=unroll, step=step: jax.lax.scan(
                    step, v, jnp.arange(steps, dtype=jnp.float32), unroll=unroll)[0])
                times[unroll] = _median_time(run, start, repeats) / steps
            row = dict(conv=name, gradient=wrt, scanned_ms=1e3 * times[1], unrolled_ms=1e3 * times[steps],
                       ratio=times[1] / times[steps])
            rows.append(row)
            print(f"{name:<26} {wrt:<12} {row['scanned_ms']:>9.1f} {row['unrolled_ms']:>9.1f} {row['ratio']:>7.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="a,b,c,d,e", help="comma-separated subset of: " + ",".join(PARTS))
    parser.add_argument("--json", nargs="?", const="-", default=None,
                        help="also write the results as JSON to PATH (stdout without PATH)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="256,512,1024", help="part (a) matrix sizes")
    parser.add_argument("--lowers", default="1e-3,1e-4", help="part (b) design bounds of the fast schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", default="256,1024", help="part (c) batch sizes")
    parser.add_argument("--chunk", type=int, default=10, help="part (c) steps per timed call")
    parser.add_argument("--lr", type=float, default=1e-3, help="parts (c), (d) Adam learning rate")
    parser.add_argument("--riemannian-adam-lr", type=float, default=RIEMANNIAN_ADAM_LR,
                        help="part (c) learning rate of Riemannian Adam, the 'adam' of riemannian-mode models "
                        "(its updates concentrate on the top gradient directions: ~3× below Adam's trains as well)")
    parser.add_argument("--sgd-lr", type=float, default=SGD_LR, help="part (c) SGD learning rate (with and without momentum)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help="part (c) optimizers: adam, momentum (SGD, 0.9), sgd (no momentum)")
    parser.add_argument("--residual-steps", type=int, default=500,
                        help="part (c) training steps over which accuracy and the residual are tracked (0: skip)")
    parser.add_argument("--seeds-count", type=int, default=3, help="part (f): seeds vmapped together")
    parser.add_argument("--conv-inputs", default="28x28x1", help="part (k) input shapes HxWxC (e.g. 28x28x1,32x32x3)")
    parser.add_argument("--conv-batch", type=int, default=256, help="part (k) batch size")
    parser.add_argument("--conv-export-only", action="store_true", help="part (k): the export timing alone")
    parser.add_argument("--conv-chunk", type=int, default=1,
                        help="part (k) steps per timed call (a conv step takes seconds on CPU)")
    parser.add_argument("--l-steps", type=int, default=4, help="part (l) SGD steps per scanned/unrolled call")
    parser.add_argument("--no-unrolled", action="store_true", help="part (c): skip the slow unrolled-15 model")
    parser.add_argument("--torch-python", default=TORCH_PYTHON,
                        help="part (d): python of a venv with torch + deel-torchlip (" + TORCH_INSTALL + ")")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; available: {','.join(PARTS)}")

    info = dict(
        date=datetime.date.today().isoformat(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        devices=[str(d) for d in jax.devices()],
        jax=jax.__version__,
        precision="HIGHEST",
    )
    print(f"lipsort benchmark — {info['date']}, devices {info['devices']}, "
          f"{info['cpu_count']} CPU cores, jax {info['jax']}")
    results = dict(info=info)
    if "a" in parts:
        results["a"] = part_a([int(s) for s in args.sizes.split(",")], args.repeats, args.seed)
    if "b" in parts:
        results["b"] = part_b(args.seed, [float(s) for s in args.lowers.split(",")])
    if "c" in parts:
        results["c"] = part_c([int(b) for b in args.batch_sizes.split(",")], args.optimizers.split(","),
                              args.repeats, args.chunk, dict(adam=args.lr, sgd=args.sgd_lr, riemannian_adam=args.riemannian_adam_lr), args.residual_steps,
                              args.seed, not args.no_unrolled)
    if "d" in parts:
        results["d"] = part_d([int(b) for b in args.batch_sizes.split(",")], args.repeats, args.chunk, args.lr,
                              args.seed, args.torch_python)
    if "e" in parts:
        results["e"] = part_e(list(E_CONFIGS), max(args.repeats // 2, 2), args.chunk)
    if "f" in parts:
        results["f"] = part_f(args.seeds_count, max(args.repeats // 2, 2), args.chunk)
    if "g" in parts:
        results["g"] = part_g(max(args.repeats // 2, 2), args.chunk)
    if "h" in parts:
        results["h"] = part_h(max(args.repeats // 2, 2), args.chunk)
    if "i" in parts:
        results["i"] = part_i(max(args.repeats // 5, 2))
    if "j" in parts:
        results["j"] = part_j([int(b) for b in args.batch_sizes.split(",")], max(args.repeats // 2, 2), args.chunk,
                              args.seed)
    if "k" in parts:
        shapes = [tuple(int(d) for d in s.split("x")) for s in args.conv_inputs.split(",")]
        # Export repeats: 1 by default (threaded OpenBLAS can take minutes a call on busy cores).
        results["k"] = part_k(shapes, args.conv_batch, max(args.repeats // 5, 2), args.conv_chunk,
                              max(args.repeats // 20, 1), max(args.repeats // 10, 2), args.seed,
                              export_only=args.conv_export_only)
    if "l" in parts:
        results["l"] = part_l(max(args.repeats // 10, 2), args.l_steps)
    if args.json is not None:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
