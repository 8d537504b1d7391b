"""Data parallelism: a 1-D mesh over all devices, the batch sharded, parameters replicated."""
from __future__ import annotations

import jax
import ml_collections
from jax.sharding import Mesh


def make_data_mesh(config: ml_collections.ConfigDict) -> Mesh | None:
    """A 1-D mesh over all devices (axis ``data``) when ``config.train.data_parallel``.

    Every device holds the whole (replicated) training state and a slice of each batch;
    XLA's SPMD partitioner turns the mean-over-batch gradient into per-device partial
    sums and an all-reduce. Same math as one device, so results agree up to the order of
    floating-point summation.
    """
    train = config.get("train")
    if not (train is not None and train.get("data_parallel", False)):
        return None
    # Auto axes: we only constrain the batch; XLA propagates the rest (gradient all-reduce).
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
