"""Function fitting (regression) with a Lipschitz network: the paper's |x| experiment.

A 1-Lipschitz network must fit f(x) = |x| (itself 1-Lipschitz, with ‖f'‖ = 1
everywhere) on an interval, by mean squared error on uniform samples. GroupSort
networks fit it almost exactly; ReLU networks cannot, because ReLU zeroes the gradient
of every unit it switches off, so ‖∂f/∂h_l‖ shrinks layer after layer (gradient norm
attenuation) and the slope of the fit stays below 1.

The diagnosis (the poster's figure) is :func:`hidden_gradient_norms`: for each hidden
layer l, ‖∂f/∂h_l(x)‖₂ over a grid of inputs, where h_l is the layer's output after
the activation. With norm-preserving layers and GroupSort every one of them is 1.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lipsort import plots
from lipsort.export import ExportedModel, export_params, numpy_forward, record_type
from lipsort.tasks import EvalContext, Task

# data.source → the target function (jnp, elementwise on the single input).
TARGETS = {"abs": jnp.abs}
LOSSES = ("mse",)


def hidden_gradient_norms(exported: ExportedModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """{"input": ‖∂f/∂x‖, "h1": ‖∂f/∂h_1‖, …} per row of ``x`` for a scalar-output export.

    h_l is the output of the l-th activation record; the gradient is taken by adding a
    zero "tap" to h_l and differentiating with respect to it.
    """
    params = export_params(exported)
    records = exported.layers

    def forward(x, taps):
        h, t = x, iter(taps)
        for record in records:
            h = record_type(record).jax(record, params, h)
            if record["type"] == "activation":
                h = h + next(t)
        return h

    x = jnp.asarray(x, jnp.float32)
    shapes, h = [], x
    for record in records:
        h = record_type(record).jax(record, params, h)
        if record["type"] == "activation":
            shapes.append(h.shape)
    taps = [jnp.zeros(s, jnp.float32) for s in shapes]
    # rows are independent: the gradient of the sum is per example
    gx, gtaps = jax.grad(lambda x, taps: jnp.sum(forward(x, taps)[:, 0]), argnums=(0, 1))(x, taps)
    out = {"input": np.linalg.norm(np.asarray(gx), axis=-1)}
    for i, g in enumerate(gtaps):
        out[f"h{i + 1}"] = np.linalg.norm(np.asarray(g), axis=-1)
    return out


def _stats(v: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(np.mean(v)),
        "median": float(np.median(v)),
        "min": float(np.min(v)),
        "max": float(np.max(v)),
        "fraction_below_0.9": float(np.mean(v < 0.9)),
    }


def make_task(config) -> Task:
    data, train = config.data, config.train
    if data.source not in TARGETS:
        raise ValueError(f"Unknown fit target {data.source!r}; valid targets are: {', '.join(TARGETS)}.")
    if train.loss not in LOSSES:
        raise ValueError(f"Unknown fit loss {train.loss!r}; valid losses are: {', '.join(LOSSES)}.")
    low, high = float(data.low), float(data.high)
    if not low < high:
        raise ValueError(f"config.data.low must be < config.data.high, got [{low}, {high}].")
    grid_size = data.get("grid_size")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
        raise ValueError(f"config.data.grid_size (the evaluation grid) must be an integer ≥ 2, got {grid_size!r}.")
    target = TARGETS[data.source]
    batch_size = int(train.batch_size)

    def sample_batch(key):
        x = jax.random.uniform(key, (batch_size, 1), jnp.float32, low, high)
        return x, target(x)

    def loss(model, batch):
        x, y = batch
        return jnp.mean((model(x) - y) ** 2), {}

    def evaluate(ctx: EvalContext) -> dict:
        grid = np.linspace(low, high, int(data.grid_size), dtype=np.float32)[:, None]
        pred = numpy_forward(ctx.exported, grid)[:, 0]
        truth = np.asarray(target(grid))[:, 0]
        err = np.abs(pred - truth)
        norms = hidden_gradient_norms(ctx.exported, grid)
        name = f"{config.model.activation} + {config.model.constraint}"
        plots.plot_fit(grid[:, 0], truth, pred, os.path.join(ctx.workdir, "fit.png"),
                       title=f"{name}: max |error| {err.max():.4f}")
        plots.plot_grad_norms(norms, os.path.join(ctx.workdir, "grad_norms.png"),
                              title=f"{name}: gradient norm of the output w.r.t. each layer")
        return {
            "max_abs_error": float(err.max()),
            "mse": float(np.mean(err**2)),
            "grid_size": int(data.grid_size),
            "grad_norms": {k: _stats(v) for k, v in norms.items()},
        }

    return Task(
        in_features=1,
        out_features=1,
        data_source=f"synthetic:{data.source}[{low:g},{high:g}]",
        sample_batch=sample_batch,
        loss=loss,
        evaluate=evaluate,
        certify_points=np.linspace(low, high, 8, dtype=np.float32)[:, None],
    )
