"""Wasserstein-1 estimation with a 1-Lipschitz critic (Kantorovich–Rubinstein dual).

    W1(P, Q) = sup_{Lip(f) ≤ 1} E_P f − E_Q f

The critic maximizes E_P f − E_Q f on fresh batches (loss :func:`lipsort.losses.kr_dual`).
After training, ``wasserstein_estimate`` is E_P f − E_Q f of the *exported* critic on
held-out samples. Since the exported critic is certified 1-Lipschitz (K = 1), the
estimate is a lower bound of W1 between the held-out empirical measures, which POT
computes exactly (``exact_w1_samples``); ``true_w1`` is the population value from
:mod:`lipsort.data.toys`. With K ≠ 1 the estimate is divided by K.

Two kinds of pairs:

- toys (``config.data.source`` names a pair of :mod:`lipsort.data.toys`, known W1);
- images (``config.data.dataset`` ∈ mnist, fashion_mnist, cifar10): P = the data
  (:mod:`lipsort.data`), Q = a WGAN-GP generator's samples (:mod:`lipsort.tasks.gan`),
  the paper's Wasserstein table. The generator is found by its config
  (``config.generator``, a gan config) under ``config.generator_dir``, trained there
  first if missing (the task's ``prepare`` step, before the critic is traced), then
  reused. The critic trains on the training images against fresh
  generator samples; the estimate uses the held-out test images against new generator
  samples (``config.data.num_eval`` of each), and ``exact_w1_samples`` is the exact OT
  cost between exactly those held-out samples. W1 of the populations is unknown
  (``true_w1`` is None).
"""
from __future__ import annotations

import os

import jax
import numpy as np

from lipsort import data, losses, plots
from lipsort.data import toys
from lipsort.export import numpy_forward
from lipsort.tasks import EvalContext, Task

LOSSES = ("kr_dual",)
# Exact OT on n held-out samples costs O(n²) memory and ~n³ time: cap it.
MAX_EXACT_OT_SAMPLES = 6000


def make_task(config) -> Task:
    if config.data.get("dataset") is not None:
        return _image_task(config)
    return _toy_task(config)


def kr_loss(model, batch):
    """The critic's loss on a batch (x_p, x_q): −(E_P f − E_Q f) (maximize the dual)."""
    x_p, x_q = batch
    value = losses.kr_dual(model(x_p), model(x_q))
    return value, {"w1_batch": -value / model.lipschitz_constant}


def dual_estimate(exported, x_p: np.ndarray, x_q: np.ndarray, k: float, exact: bool = True):
    """(f(x_p), f(x_q), (E_P f − E_Q f)/K, exact OT between the samples or None) of the
    exported critic, in float64; the exact value is skipped past MAX_EXACT_OT_SAMPLES
    (or when not ``exact``)."""
    f_p = numpy_forward(exported, x_p)[:, 0].astype(np.float64)
    f_q = numpy_forward(exported, x_q)[:, 0].astype(np.float64)
    estimate = (f_p.mean() - f_q.mean()) / k
    exact = toys.exact_w1_samples(x_p, x_q) if exact and len(x_p) <= MAX_EXACT_OT_SAMPLES else None
    return f_p, f_q, estimate, exact


def training_sample_estimate(exported, x_train: np.ndarray, generator, key, num_batches: int, batch_size: int,
                             k: float) -> float:
    """The paper's estimate: the mean over ``num_batches`` batches of ``batch_size`` of
    E f(training images) − E f(fresh generator samples), divided by K. Not a bound of W1
    between held-out samples (the critic has seen these images); reported beside it."""
    gaps = []
    for batch_key in jax.random.split(key, num_batches):
        k_real, k_fake = jax.random.split(batch_key)
        real = x_train[np.asarray(jax.random.randint(k_real, (batch_size,), 0, len(x_train)))]
        fake = np.asarray(generator.sample(k_fake, batch_size))
        gaps.append(numpy_forward(exported, real)[:, 0].astype(np.float64).mean()
                    - numpy_forward(exported, fake)[:, 0].astype(np.float64).mean())
    return float(np.mean(gaps) / k)


def _check_common(config) -> tuple[int, int]:
    if config.train.loss not in LOSSES:
        raise ValueError(f"Unknown wde loss {config.train.loss!r}; valid losses are: {', '.join(LOSSES)}.")
    num_eval = int(config.data.num_eval)
    if num_eval < 2:
        raise ValueError(f"config.data.num_eval must be ≥ 2, got {num_eval}.")
    return num_eval, int(config.train.batch_size)


def _toy_task(config) -> Task:
    pair = toys.get_pair(config.data.source)
    num_eval, batch_size = _check_common(config)

    def sample_batch(key):
        kp, kq = jax.random.split(key)
        return pair.sample_p(kp, batch_size), pair.sample_q(kq, batch_size)

    k = float(config.model.lipschitz_constant)

    def held_out(key):
        kp, kq = jax.random.split(key)
        return np.asarray(pair.sample_p(kp, num_eval)), np.asarray(pair.sample_q(kq, num_eval))

    def curve(exported, key) -> dict:
        return {"wasserstein_estimate": float(dual_estimate(exported, *held_out(key), k, exact=False)[2])}

    def evaluate(ctx: EvalContext) -> dict:
        x_p, x_q = held_out(ctx.key)
        f_p, f_q, estimate, exact = dual_estimate(ctx.exported, x_p, x_q, k)
        out = {
            "wasserstein_estimate": float(estimate),
            "true_w1": float(pair.true_w1),
            "exact_w1_samples": exact,
            "relative_error": float(abs(estimate - pair.true_w1) / pair.true_w1),
            "num_eval_samples": num_eval,
            "distributions": pair.description,
        }
        _plot(ctx, pair, x_p, x_q, estimate)
        return out

    x0 = np.asarray(pair.sample_q(jax.random.PRNGKey(0), 8))
    return Task(
        in_features=pair.dim,
        out_features=1,
        data_source=f"synthetic:{pair.name}",
        sample_batch=sample_batch,
        loss=kr_loss,
        evaluate=evaluate,
        certify_points=x0,
        curve=curve,
    )


def _plot(ctx: EvalContext, pair, x_p, x_q, estimate) -> None:
    title = (f"{ctx.config.model.activation} + {ctx.config.model.constraint}: "
             f"estimate {estimate:.4f}, true W1 {pair.true_w1:.4f}")
    path = os.path.join(ctx.workdir, "critic.png")
    both = np.concatenate([x_p, x_q])
    if pair.dim == 1:
        lo, hi = both.min() - 0.5, both.max() + 0.5
        x = np.linspace(lo, hi, 400, dtype=np.float32)[:, None]
        f = numpy_forward(ctx.exported, x)[:, 0]
        plots.plot_critic_1d(x[:, 0], f, x_p, x_q, path, optimal=pair.optimal_critic(x), title=title)
    elif pair.dim == 2:
        lo, hi = both.min(axis=0) - 0.75, both.max(axis=0) + 0.75
        xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
        grid = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
        f = numpy_forward(ctx.exported, grid)[:, 0].reshape(xx.shape)
        plots.plot_critic_2d(xx, yy, f, x_p[:500], x_q[:500], path, title=title)


# --- images: data against a GAN's samples ---------------------------------------------------


def _generator_dir(config) -> str:
    """Where the generator of ``config.generator`` lives (trained there when missing)."""
    from lipsort.tasks import gan

    base = config.get("generator_dir", "runs/generators")
    if not isinstance(base, str) or not base:
        raise ValueError(f"config.generator_dir must be a folder path, got {base!r}.")
    return gan.generator_dir(base, config.generator)


def _held_out(images, generator, key, num_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation's samples: the first ``num_eval`` held-out images and as many
    generator samples drawn with ``key``."""
    return images.x_test[:num_eval], np.asarray(generator.sample(key, num_eval))


def held_out_exact_w1(config, key) -> float:
    """``exact_w1_samples`` of an image run of ``config`` evaluated with ``key``
    (:func:`lipsort.train.evaluation_key`), without training a critic: the exact OT cost
    between the held-out images and the generator samples the evaluation draws. A
    fingerprint of the data, the generator and the seed together (a generator trained
    again elsewhere reproduces it only if it is the same function)."""
    from lipsort.tasks import gan

    images = data.load(config.data)
    generator = gan.ensure_generator(config.generator, _generator_dir(config))
    return float(toys.exact_w1_samples(*_held_out(images, generator, key, int(config.data.num_eval))))


def _image_task(config) -> Task:
    from lipsort.tasks import gan  # only image runs need it

    num_eval, batch_size = _check_common(config)
    gen_cfg = config.get("generator")
    if gen_cfg is None:
        raise ValueError("an image wde config needs config.generator (a gan config, e.g. "
                         "configs/gan_mnist.py's).")
    errors = gan.validate(gen_cfg)
    if errors:
        raise ValueError("config.generator: " + "; ".join(errors))
    if gen_cfg.data.dataset != config.data.dataset or tuple(gen_cfg.data.pixel_range) != tuple(config.data.pixel_range):
        raise ValueError(
            f"config.generator must model the same data: its dataset/pixel_range "
            f"{gen_cfg.data.dataset}/{tuple(gen_cfg.data.pixel_range)} differ from config.data's "
            f"{config.data.dataset}/{tuple(config.data.pixel_range)}."
        )
    images = data.load(config.data)  # a missing data set fails here, before any work
    if num_eval > len(images.x_test):
        raise ValueError(f"config.data.num_eval {num_eval} > the {len(images.x_test)} held-out "
                         f"images of {images.source}; lower it.")
    gen_dir = _generator_dir(config)
    x_train = images.x_train
    train_batches = (config.get("eval") or {}).get("train_batches", 0)
    if isinstance(train_batches, bool) or not isinstance(train_batches, int) or train_batches < 0:
        raise ValueError(f"config.eval.train_batches must be an integer ≥ 0 (0 = no training-sample "
                         f"estimate), got {train_batches!r}.")
    prepared: dict = {}

    def prepare(workdir: str) -> None:
        # Before the critic's step is traced: the generator's own training is a program
        # of its own, never staged into the critic's trace.
        del workdir
        prepared["generator"] = gan.ensure_generator(gen_cfg, gen_dir)

    def generator() -> "gan.Generator":
        if "generator" not in prepared:
            raise RuntimeError("the image wde task samples its generator only after Task.prepare(workdir).")
        return prepared["generator"]

    def sample_batch(key):
        kr, kg = jax.random.split(key)
        real = jax.numpy.asarray(x_train)[jax.random.randint(kr, (batch_size,), 0, len(x_train))]
        return real, generator().sample(kg, batch_size)

    k = float(config.model.lipschitz_constant)

    def held_out(key):
        # A key the training batches never used (they fold the step into another key).
        return _held_out(images, generator(), key, num_eval)

    def train_estimate(exported, key):
        return (training_sample_estimate(exported, x_train, generator(), jax.random.fold_in(key, 1), train_batches,
                                         batch_size, k) if train_batches else None)

    def curve(exported, key) -> dict:
        return {"wasserstein_estimate": float(dual_estimate(exported, *held_out(key), k, exact=False)[2]),
                "wasserstein_estimate_train": train_estimate(exported, key)}

    def evaluate(ctx: EvalContext) -> dict:
        x_p, x_q = held_out(ctx.key)
        f_p, f_q, estimate, exact = dual_estimate(ctx.exported, x_p, x_q, k)
        plot_image_critic(f_p, f_q, x_p, x_q, images.image_shape, os.path.join(ctx.workdir, "critic.png"),
                          title=f"{ctx.config.model.activation} + {ctx.config.model.constraint}: "
                                f"estimate {estimate:.3f}, exact OT {exact if exact is None else round(exact, 3)}")
        return {
            "wasserstein_estimate": float(estimate),
            "wasserstein_estimate_train": train_estimate(ctx.exported, ctx.key),
            "true_w1": None,
            "exact_w1_samples": exact,
            "estimate_over_exact": float(estimate / exact) if exact else None,
            "num_eval_samples": num_eval,
            "distributions": f"{images.name} test images vs {gan.gan_kind(gen_cfg)} samples ({gen_dir})",
            "generator_dir": gen_dir,
        }

    return Task(
        in_features=images.dim,
        out_features=1,
        data_source=f"{images.source} vs generator {gen_dir}",
        sample_batch=sample_batch,
        loss=kr_loss,
        evaluate=evaluate,
        certify_points=images.x_test[:8],
        prepare=prepare,
        curve=curve,
        input_shape=tuple(images.image_shape),  # a conv critic (config.model.kind="conv") sees images
    )


def plot_image_critic(f_p, f_q, x_p, x_q, image_shape, path: str, title: str = "") -> None:
    """Histogram of the critic on data vs generator, and the generator samples it ranks
    lowest (least data-like) and highest."""
    import matplotlib.pyplot as plt

    h, w, c = image_shape
    fig = plt.figure(figsize=(9, 3.6))
    ax = fig.add_subplot(1, 2, 1)
    bins = np.linspace(min(f_p.min(), f_q.min()), max(f_p.max(), f_q.max()), 40)
    ax.hist(f_p, bins, alpha=0.6, label="data (held out)")
    ax.hist(f_q, bins, alpha=0.6, label="generator")
    ax.set_xlabel("critic f(x)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=8)
    order = np.argsort(f_q)
    picks = np.concatenate([order[:6], order[-6:]])
    for i, idx in enumerate(picks):
        ax = fig.add_subplot(2, 12, 7 + (i % 6) + 12 * (i // 6))
        img = x_q[idx].reshape(h, w, c)
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
        ax.imshow(img[..., 0] if c == 1 else img, cmap="gray" if c == 1 else None)
        ax.set_axis_off()
    fig.text(0.75, 0.93, "generator samples: lowest f (top), highest f (bottom)", ha="center", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
