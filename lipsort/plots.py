"""Matplotlib figures of the runs (Agg backend: no display needed)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_metrics(metrics: Sequence[Mapping], path: str) -> None:
    """Training loss against step."""
    if not metrics:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [m["step"] for m in metrics]
    loss = np.array([m["loss"] for m in metrics])
    ax.plot(steps, loss)
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    _save(fig, path)


def plot_fit(x: np.ndarray, target: np.ndarray, pred: np.ndarray, path: str, title: str = "") -> None:
    """The fitted function against the target on a 1-D grid."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(x, target, "k--", lw=1.5, label="target")
    ax.plot(x, pred, "C1", lw=2, label="network")
    ax.set_xlabel("x")
    ax.legend()
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def plot_grad_norms(norms: Mapping[str, np.ndarray], path: str, title: str = "") -> None:
    """Histogram per layer of ‖∂f/∂h_l‖ over inputs (the poster's diagnosis)."""
    names = list(norms)
    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names), 2.6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        values = np.asarray(norms[name])
        ax.hist(values, bins=np.linspace(0, 1.05, 43), color="C0")
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.set_title(f"{name}\nmean {values.mean():.2f}", fontsize=9)
        ax.set_xlabel("‖∂f/∂h‖")
    axes[0][0].set_ylabel("inputs")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_critic_1d(x, f, samples_p, samples_q, path: str, optimal=None, title: str = "") -> None:
    """A 1-D critic with histograms of both sample sets."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(x, f, "C3", lw=2, label="critic f")
    if optimal is not None and np.all(np.isfinite(optimal)):
        # The optimal critic is defined up to a constant: align it on the learned one.
        ax.plot(x, optimal - np.mean(optimal) + np.mean(f), "k--", lw=1, label="optimal f* (shifted)")
    twin = ax.twinx()
    bins = np.linspace(x.min(), x.max(), 80)
    twin.hist(np.ravel(samples_p), bins=bins, alpha=0.35, color="C0", label="P")
    twin.hist(np.ravel(samples_q), bins=bins, alpha=0.35, color="C2", label="Q")
    twin.set_yticks([])
    ax.set_xlabel("x")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def plot_critic_2d(xx, yy, f, samples_p, samples_q, path: str, title: str = "") -> None:
    """A 2-D critic as filled contours with both sample sets on top."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    cs = ax.contourf(xx, yy, f, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax)
    ax.scatter(samples_p[:, 0], samples_p[:, 1], s=3, c="white", label="P")
    ax.scatter(samples_q[:, 0], samples_q[:, 1], s=3, c="C3", label="Q")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def plot_decision_boundary(xx, yy, logits, x, y, path: str, title: str = "") -> None:
    """The logit of a binary classifier, its zero level set, and the data."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    lim = max(float(np.max(np.abs(logits))), 1e-6)
    cs = ax.contourf(xx, yy, logits, levels=np.linspace(-lim, lim, 31), cmap="RdBu")
    ax.contour(xx, yy, logits, levels=[0.0], colors="k", linewidths=1.5)
    fig.colorbar(cs, ax=ax, label="logit f(x)")
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=4, edgecolors="none")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def grid_figure(rows: int, cols: int, size: float = 2.6):
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    return fig, axes


def save(fig, path: str) -> None:
    _save(fig, path)


