"""Experiment kinds (``config.experiment``): one module per task, each with ``make_task``.

=============  ============================  =========  ==========================
experiment     module                        trainer    what it trains
=============  ============================  =========  ==========================
``fit``        :mod:`lipsort.tasks.fit`      default    regression of |x| (and kin)
``wde``        :mod:`lipsort.tasks.wde`      default    a Wasserstein-1 critic
``classify``   :mod:`lipsort.tasks.classify` default    a certified classifier
``gan``        :mod:`lipsort.tasks.gan`      gan        a WGAN (generator + critic)
=============  ============================  =========  ==========================

``make_task(config) -> Task`` checks the task's fields and describes the experiment to
the loop (:mod:`lipsort.train`): sizes, a jit-able batch sampler, a loss, a final
evaluation, and ``prepare(workdir)``, which runs once before anything is traced (load
data, train or find a generator). To add a task: a module here with ``make_task`` and
one line in :data:`TASKS`.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from lipsort.registry import Registry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    module: str  # imported on first use: tfds/POT only load for the tasks that need them
    trainer: str = "default"  # a key of lipsort.train.TRAINERS


TASKS: Registry[TaskEntry] = Registry("experiment")
for _name, _entry in (
    ("fit", TaskEntry("lipsort.tasks.fit")),
    ("wde", TaskEntry("lipsort.tasks.wde")),
    ("classify", TaskEntry("lipsort.tasks.classify")),
    ("gan", TaskEntry("lipsort.tasks.gan", trainer="gan")),
):
    TASKS.add(_name, _entry)


@dataclasses.dataclass
class EvalContext:
    """What a task's final evaluation gets."""

    config: ml_collections.ConfigDict
    model: Any  # the trained lipsort.models.LipschitzMLP
    exported: Any  # its lipsort.export.ExportedModel
    workdir: str
    key: Array


def _nothing_to_prepare(workdir: str) -> None:
    del workdir


@dataclasses.dataclass
class Task:
    """One experiment, as the generic loop sees it.

    ``sample_batch(key)`` and ``loss(model, batch)`` run inside ``jax.jit``;
    ``loss`` returns (scalar, dict of scalar metrics). ``evaluate`` runs once after
    training and returns the experiment's keys for ``results.json`` (it may write plots).
    ``certify_points`` are the starts of the Lipschitz lower-bound search. ``prepare``
    runs once, after validation and before any tracing. ``curve(exported, key)``, if
    set, evaluates an exported model during training (``config.eval.curve_every``: the
    learning curve in ``curve.jsonl``). ``seed_dependent``: the data itself depends on
    ``config.seed`` (then seeds cannot share one vmapped program). ``input_shape``: the
    shape of one example before flattening ((H, W, C) for images; None for vectors).
    """

    in_features: int
    out_features: int
    data_source: str
    sample_batch: Callable[[Array], Any]
    loss: Callable[[Any, Any], tuple[Array, dict[str, Array]]]
    evaluate: Callable[[EvalContext], dict[str, Any]]
    certify_points: np.ndarray
    prepare: Callable[[str], None] = _nothing_to_prepare
    curve: Callable[[Any, Array], dict] | None = None
    seed_dependent: bool = False
    input_shape: tuple | None = None  # an example's shape, (H, W, C) for images (conv models need it)


def entry(experiment: str) -> TaskEntry:
    return TASKS.lookup(experiment)


def make_task(config) -> Task:
    """The :class:`Task` of ``config.experiment`` (its fields checked)."""
    return importlib.import_module(entry(config.get("experiment")).module).make_task(config)
