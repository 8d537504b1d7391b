"""Classification with a Lipschitz network, with certified and attacked accuracy.

The blog post's point: with a 1-Lipschitz f the logit margin is bounded by the
distance to the decision boundary, so BCE (which rewards ever larger margins on every
point) fights the constraint, while hinge loss max(0, m − s·f) stops at margin m and
lets the network spend its capacity on where the boundary goes.

Results: ``clean_accuracy`` (test set), ``certified_accuracy`` and ``attack_accuracy``
(dicts from ε, as a string, to accuracy; certified uses the *certified* Lipschitz upper
bound of the export: margin m > c·L·ε), and ``norm``.

Datasets (``config.data.source``): ``two_moons`` (generated here with numpy, no
dependency). Other sources plug in through :data:`DATASETS`.
"""
from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lipsort import certify, losses, plots
from lipsort.export import jax_forward, numpy_forward
from lipsort.train import EvalContext, Task

BINARY_LOSSES = ("hinge", "bce", "hkr")
MULTICLASS_LOSSES = ("multiclass_hinge", "cross_entropy")


def make_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as sklearn's make_moons), labels 0 (outer) / 1 (inner).

    Outer: (cos t, sin t); inner: (1 − cos t, 1/2 − sin t), t ~ U[0, π]; plus N(0, noise²).
    Exactly n//2 points per class (the first n − n//2 are class 0).
    """
    n0 = n - n // 2
    labels = np.concatenate([np.zeros(n0, np.int32), np.ones(n // 2, np.int32)])
    t = rng.uniform(0.0, np.pi, n)
    outer = np.stack([np.cos(t), np.sin(t)], -1)
    inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], -1)
    x = np.where(labels[:, None] == 0, outer, inner) + noise * rng.normal(size=(n, 2))
    return x.astype(np.float32), labels


def _two_moons(data, seed: int):
    rng = np.random.default_rng(seed)
    x_train, y_train = make_moons(int(data.num_train), float(data.noise), rng)
    x_test, y_test = make_moons(int(data.num_test), float(data.noise), rng)
    return (x_train, y_train), (x_test, y_test), 2, f"synthetic:two_moons(noise={float(data.noise):g})"


# config.data.source → fn(config.data, seed) → ((x, y) train, (x, y) test, classes, source).
DATASETS: dict[str, Callable] = {"two_moons": _two_moons}


def make_task(config) -> Task:
    data, train = config.data, config.train
    if data.source not in DATASETS:
        raise ValueError(f"Unknown dataset {data.source!r}; valid datasets are: {', '.join(DATASETS)}.")
    (x_train, y_train), (x_test, y_test), num_classes, source = DATASETS[data.source](data, int(config.seed))
    out_features = 1 if num_classes == 2 else num_classes
    valid = BINARY_LOSSES if out_features == 1 else MULTICLASS_LOSSES
    if train.loss not in valid:
        raise ValueError(f"loss {train.loss!r} does not fit {num_classes} classes; valid: {', '.join(valid)}.")
    loss_fn = losses.get_loss(train.loss)
    options = {"margin": float(train.margin)} if train.loss in ("hinge", "multiclass_hinge", "hkr") else {}
    epsilons = [float(e) for e in config.eval.epsilons]
    if any(e < 0 for e in epsilons):
        raise ValueError(f"config.eval.epsilons must be ≥ 0, got {epsilons}.")
    batch_size = int(train.batch_size)
    xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)

    def sample_batch(key):
        idx = jax.random.randint(key, (batch_size,), 0, xs.shape[0])
        return xs[idx], ys[idx]

    def loss(model, batch):
        x, y = batch
        logits = model(x)
        return loss_fn(logits, y, **options), {"accuracy": jnp.mean(certify.margins(logits, y) > 0)}

    def evaluate(ctx: EvalContext) -> dict:
        f = jax_forward(ctx.exported)
        p_in, p_out = certify.io_norms(ctx.exported)
        lip = certify.lipschitz_upper_bound(ctx.exported)
        logits = numpy_forward(ctx.exported, x_test)
        train_logits = numpy_forward(ctx.exported, x_train)
        certified, attacked = {}, {}
        for i, eps in enumerate(epsilons):
            certified[str(eps)] = certify.certified_accuracy(logits, y_test, eps, lip, p_out)
            attacked[str(eps)] = certify.attack_accuracy(
                f, x_test, y_test, eps, p_in, jax.random.fold_in(ctx.key, i), steps=int(config.eval.attack_steps)
            ) if eps > 0 else certify.accuracy(logits, y_test)
        clean = certify.accuracy(logits, y_test)
        if x_test.shape[1] == 2:
            lo, hi = x_test.min(0) - 0.5, x_test.max(0) + 0.5
            xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
            grid = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
            z = numpy_forward(ctx.exported, grid)[:, 0].reshape(xx.shape)
            plots.plot_decision_boundary(
                xx, yy, z, x_test, y_test, os.path.join(ctx.workdir, "decision_boundary.png"),
                title=f"{config.train.loss}: test accuracy {clean:.3f}",
            )
        return {
            "clean_accuracy": clean,
            "train_accuracy": certify.accuracy(train_logits, y_train),
            "certified_accuracy": certified,
            "attack_accuracy": attacked,
            "norm": config.model.norm,
            "num_train": int(len(x_train)),
            "num_test": int(len(x_test)),
        }

    return Task(
        in_features=x_train.shape[1],
        out_features=out_features,
        data_source=source,
        sample_batch=sample_batch,
        loss=loss,
        evaluate=evaluate,
        certify_points=x_test[:8],
    )
