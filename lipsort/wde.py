"""Wasserstein-1 estimation with a 1-Lipschitz critic (Kantorovich–Rubinstein dual).

    W1(P, Q) = sup_{Lip(f) ≤ 1} E_P f − E_Q f

The critic maximizes E_P f − E_Q f on fresh batches (loss :func:`lipsort.losses.kr_dual`).
After training, ``wasserstein_estimate`` is E_P f − E_Q f of the *exported* critic on
held-out samples. Since the exported critic is certified 1-Lipschitz (K = 1), the
estimate is a lower bound of W1 between the held-out empirical measures, which POT
computes exactly (``exact_w1_samples``); ``true_w1`` is the population value from
:mod:`lipsort.distributions`. With K ≠ 1 the estimate is divided by K.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from lipsort import distributions, losses, plots
from lipsort.export import numpy_forward
from lipsort.train import EvalContext, Task

LOSSES = ("kr_dual",)
# Exact OT on n held-out samples costs O(n²) memory and ~n³ time: cap it.
MAX_EXACT_OT_SAMPLES = 6000


def make_task(config) -> Task:
    data, train = config.data, config.train
    pair = distributions.get_pair(data.source)
    if train.loss not in LOSSES:
        raise ValueError(f"Unknown wde loss {train.loss!r}; valid losses are: {', '.join(LOSSES)}.")
    num_eval = int(data.num_eval)
    if num_eval < 2:
        raise ValueError(f"config.data.num_eval must be ≥ 2, got {num_eval}.")
    batch_size = int(train.batch_size)

    def sample_batch(key):
        kp, kq = jax.random.split(key)
        return pair.sample_p(kp, batch_size), pair.sample_q(kq, batch_size)

    def loss(model, batch):
        x_p, x_q = batch
        value = losses.kr_dual(model(x_p), model(x_q))
        return value, {"w1_batch": -value / model.lipschitz_constant}

    def evaluate(ctx: EvalContext) -> dict:
        kp, kq = jax.random.split(ctx.key)
        x_p = np.asarray(pair.sample_p(kp, num_eval))
        x_q = np.asarray(pair.sample_q(kq, num_eval))
        k = float(config.model.lipschitz_constant)
        f_p = numpy_forward(ctx.exported, x_p)[:, 0].astype(np.float64)
        f_q = numpy_forward(ctx.exported, x_q)[:, 0].astype(np.float64)
        estimate = (f_p.mean() - f_q.mean()) / k
        exact = distributions.exact_w1_samples(x_p, x_q) if num_eval <= MAX_EXACT_OT_SAMPLES else None
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
        loss=loss,
        evaluate=evaluate,
        certify_points=x0,
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
