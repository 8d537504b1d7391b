"""Two moons: the 2-D binary classification toy of the blog post (hinge vs BCE)."""
from __future__ import annotations

import numpy as np


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
