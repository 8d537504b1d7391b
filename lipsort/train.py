"""The training loop every experiment shares: ``train_and_evaluate(config, workdir)``.

``config.experiment`` selects a task (:mod:`lipsort.tasks`) and its trainer
(:data:`TRAINERS`: ``default`` for one network, ``gan`` for generator + critic). The
default trainer:

1. validates the whole config (:mod:`lipsort.validation`) and prepares the task
   (``Task.prepare``: data, a generator) before anything is traced;
2. builds the state (:func:`create_train_state`) and resumes from the workdir's latest
   checkpoint (:mod:`lipsort.workdir`);
3. runs the pure train step (:func:`make_chunk_runner`): ``nnx.split`` the model once,
   then ``jax.jit`` a ``lax.scan`` over a chunk of steps (one dispatch per logging
   interval); batches are a function of (seed, step) only, so a resumed run sees exactly
   the batches an uninterrupted one does; retraction- and riemannian-mode Björck kernels
   are retracted after every update; with ``config.train.data_parallel`` the batch is
   sharded over a mesh (:mod:`lipsort.parallel`);
4. logs progress (step, loss, rate, ETA), fails fast on non-finite loss or weights
   naming the step, checkpoints (:func:`run_chunked_loop`);
5. exports (:mod:`lipsort.export`), certifies (upper bound exact from the export, lower
   bound by search, :mod:`lipsort.certify`), evaluates the task, writes results.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lipsort import certify, optim, parallel, riemannian_adam, tasks, workdir as run_files
from lipsort.export import export_model, save_export
from lipsort.models import LipschitzMLP, MLPSpec
from lipsort.tasks import EvalContext
from lipsort.validation import ConfigError, check_int, get, raise_if, validate_config

Array = jax.Array
# Consecutive steps a retraction-mode run may spend above retraction_tol before it stops
# (config.train.divergence_patience).
DIVERGENCE_PATIENCE = 500

__all__ = [
    "ConfigError", "TRAINERS", "TrainState", "create_train_state", "make_chunk_runner", "run_chunked_loop",
    "train_and_evaluate", "validate_config",
]


@dataclasses.dataclass
class TrainState:
    """A model as the pure train step sees it: ``state = (params, rest, opt_state)``."""

    model: LipschitzMLP
    graphdef: nnx.GraphDef
    state: tuple
    tx: optax.GradientTransformation


def create_train_state(config: ml_collections.ConfigDict, spec: MLPSpec) -> TrainState:
    """The model of ``spec`` (seeded by ``config.seed``), split for the pure step, and the
    optimizer of ``config.train`` (with the manifold mask Riemannian Adam needs)."""
    model = spec.build(nnx.Rngs(int(config.seed)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optim.make_optimizer(config.train, riemannian_adam.tangent_kernel_mask(model, params))
    return TrainState(model, graphdef, (params, rest, tx.init(params)), tx)


def make_chunk_runner(
    graphdef: nnx.GraphDef,
    loss: Callable[[nnx.Module, Any], tuple[Array, dict[str, Array]]],
    sample_batch: Callable[[Array], Any],
    tx: optax.GradientTransformation,
    data_key: Array | None,
    *,
    retracts: bool,
    mesh: Mesh | None = None,
) -> Callable:
    """``run_chunk(state, steps) -> (state, (losses, aux))``: a ``lax.scan`` of train steps.

    ``state`` is ``(params, rest, opt_state)`` from ``nnx.split(model, nnx.Param, ...)``;
    the batch of step t is ``sample_batch(fold_in(data_key, t))``, a pure function of
    (seed, step), so a resumed run sees the batches an uninterrupted one does. One step:
    gradient of ``loss``, optimizer update, then (``retracts``) the stop-gradient
    retraction of retraction-mode Björck kernels (:mod:`lipsort.retraction`). With a
    ``mesh`` the batch is sharded along its leading axis over the ``data`` devices.
    With ``data_key=None`` the key is an argument, ``run_chunk(state, steps, data_key)``:
    the form :func:`train_seeds` vmaps over seeds.
    """
    batch_sharding = NamedSharding(mesh, P("data")) if mesh is not None else None
    update = make_update(graphdef, loss, tx, retracts=retracts)

    def run_keyed_chunk(state, steps, data_key):
        def train_step(state, step):
            batch = sample_batch(jax.random.fold_in(data_key, step))
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            return update(state, batch)

        return jax.lax.scan(train_step, state, steps)  # one dispatch for a whole logging interval

    if data_key is None:
        return run_keyed_chunk
    return lambda state, steps: run_keyed_chunk(state, steps, data_key)


def make_update(
    graphdef: nnx.GraphDef,
    loss: Callable[[nnx.Module, Any], tuple[Array, dict[str, Array]]],
    tx: optax.GradientTransformation,
    *,
    retracts: bool,
) -> Callable:
    """``update(state, batch) -> (state, (loss, aux))``: one optimizer step of ``loss`` on
    the model ``(params, rest)``, then the retraction when the model ``retracts``. The
    GAN's critic updates use it too, so every trained Lipschitz network is retracted."""

    def loss_fn(params, rest, batch):
        # copy=True: fresh Variables at this trace level, so layers may update their
        # state in the forward pass (spectral normalization's power-iteration vector).
        m = nnx.merge(graphdef, params, rest, copy=True)
        value, aux = loss(m, batch)
        _, _, new_rest = nnx.split(m, nnx.Param, ...)  # e.g. spectral norm's power vector
        return value, (aux, new_rest)

    def retract(params, rest):
        m = nnx.merge(graphdef, params, rest, copy=True)
        stats = m.retract()
        _, params, rest = nnx.split(m, nnx.Param, ...)
        return params, rest, stats

    def update(state, batch):
        params, rest, opt_state = state
        (value, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if retracts:
            params, rest, stats = retract(params, rest)
            aux = {**aux, **stats}
        return (params, rest, opt_state), (value, aux)

    return update


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


@dataclasses.dataclass
class Member:
    """One network a training loop trains: its workdir (``metrics.jsonl``, ``curve.jsonl``),
    its checkpointer and its ``check`` (:func:`make_check`). A loop over seeds vmapped in
    one program (:func:`train_seeds`) has one member per seed, the state stacked on axis 0.
    ``curve(step, state) -> record``, if set, is appended to ``curve.jsonl`` every
    ``curve_every`` steps (e.g. the held-out estimate of the exported critic)."""

    workdir: str
    checkpointer: run_files.Checkpointer
    check: Callable[[int, int, np.ndarray, dict, Any], None]
    curve: Callable[[int, Any], dict] | None = None
    best: "BestKeeper | None" = None


@dataclasses.dataclass
class BestKeeper:
    """Model selection on the learning curve (``config.eval.select_best``): the state of
    the curve point with the highest ``metric`` is checkpointed in ``<workdir>/best`` and
    evaluated at the end instead of the last one. On resume the best value so far is read
    back from ``curve.jsonl`` (which the resume has cut at the checkpoint's step)."""

    metric: str
    checkpointer: run_files.Checkpointer
    value: float = -math.inf
    step: int | None = None

    @classmethod
    def open(cls, workdir: str, metric: str, config_hash: str | None) -> "BestKeeper":
        keeper = cls(metric, run_files.Checkpointer(os.path.join(workdir, run_files.BEST), config_hash))
        for record in run_files.read_metrics(workdir, run_files.CURVE):
            if record.get(metric, -math.inf) > keeper.value:
                keeper.value, keeper.step = float(record[metric]), int(record["step"])
        return keeper

    def offer(self, step: int, record: dict, state) -> None:
        if self.metric not in record:
            raise KeyError(f"config.eval.select_best={self.metric!r} is not in the learning curve's record "
                           f"(it has: {', '.join(sorted(record))}).")
        if record[self.metric] > self.value:  # strictly better: ties keep the earlier model
            self.value, self.step = float(record[self.metric]), step
            self.checkpointer.save(step, state)

    def selected_state(self, final_step: int, final_state):
        """The state to evaluate: the best one (the final state when it is the best)."""
        if self.step is None or self.step == final_step:
            return final_state
        step, state = self.checkpointer.restore(final_state)
        if step != self.step:
            raise run_files.CheckpointError(
                f"the best model (step {self.step}, {self.metric} {self.value:.4g}) has no checkpoint in "
                f"{self.checkpointer.directory} (found step {step}); rerun with --restart.")
        return state


def _per_member(members: list[Member], stacked: bool, losses, aux, state):
    """(member, its losses, its aux, its state) for each member of the loop."""
    if not stacked:
        return [(members[0], losses, aux, state)]
    return [(m, losses[i], {k: v[i] for k, v in aux.items()}, jax.tree.map(lambda x, i=i: x[i], state))
            for i, m in enumerate(members)]


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(run_files.json_line(record) + "\n")


def run_chunked_loop(
    run_chunk: Callable,
    state,
    step: int,
    *,
    num_steps: int,
    log_every: int,
    ckpt_every: int,
    members: list[Member],
    start_time: float,
    stacked: bool = False,
    curve_every: int = 0,
    describe: Callable[[dict], str] = lambda record: f"loss {record['loss']:.4g}",
    stop_after_step: int | None = None,
) -> tuple[Any, int, bool]:
    """The loop every trainer shares: ``run_chunk(state, steps) -> (state, (losses, aux))``
    from ``step`` to ``num_steps`` in chunks that end at logging, checkpoint and curve steps.

    After each chunk each member's ``check(step, end, losses, aux, state)`` may raise (fail
    fast on non-finite values); every ``log_every`` steps a record goes to each member's
    ``metrics.jsonl`` and a progress line (``describe(record)`` per member, rate, ETA) to
    the log; every ``ckpt_every`` steps each member's state is checkpointed; every
    ``curve_every`` steps (0 = never) each member's ``curve`` is recorded. ``stacked``:
    the state (and losses, aux) carry one member per index of axis 0. Returns (state,
    step, stopped), stopped when ``stop_after_step`` simulated a kill after a checkpoint.
    Closes the checkpointers.
    """
    loop_start, first_step = time.time(), step
    boundaries = [b for b in (log_every, ckpt_every, curve_every) if b > 0]
    while step < num_steps:
        end = min([num_steps] + [(step // b + 1) * b for b in boundaries])
        state, (losses, aux) = run_chunk(state, jnp.arange(step, end))
        losses = np.asarray(losses)  # aux stays on the device: its means are jnp's, as logged before
        slices = _per_member(members, stacked, losses, aux, state)
        for member, member_losses, member_aux, member_state in slices:
            member.check(step, end, member_losses, member_aux, member_state)
        step = end
        described = []
        for member, member_losses, member_aux, member_state in slices:
            record = {
                "step": step,
                "loss": float(member_losses.mean()),
                **{k: float(np.mean(v)) for k, v in member_aux.items()},
                "elapsed_s": round(time.time() - start_time, 3),
            }
            described.append(describe(record))
            if step % log_every == 0 or step == num_steps:
                _append(os.path.join(member.workdir, run_files.METRICS), record)
            if member.curve is not None and curve_every and (step % curve_every == 0 or step == num_steps):
                point = {"step": step, **member.curve(step, member_state)}
                _append(os.path.join(member.workdir, run_files.CURVE), point)
                if member.best is not None:
                    member.best.offer(step, point, member_state)
            if step % ckpt_every == 0 or step == num_steps:
                member.checkpointer.save(step, member_state)
        if step % log_every == 0 or step == num_steps:
            rate = (step - first_step) / max(time.time() - loop_start, 1e-9)
            logging.info(
                "step %d/%d  %s  %.2f steps/s  ETA %s",
                step, num_steps, " | ".join(described), rate, _format_eta((num_steps - step) / rate),
            )
        if (step % ckpt_every == 0 or step == num_steps) and stop_after_step is not None and step >= stop_after_step:
            for member in members:
                member.checkpointer.close()
            return state, step, True
    for member in members:
        member.checkpointer.close()
    return state, step, False


def _close_best(members: list[Member]) -> None:
    for member in members:
        if member.best is not None:
            member.best.checkpointer.close()


def loop_settings(config) -> tuple[int, int, int]:
    """(num_steps, log_every, checkpoint_every) of ``config.train``."""
    train = config.train
    return int(train.num_steps), int(train.log_every), int(train.checkpoint_every)


def run_keys(config) -> tuple[Array, Array]:
    """(data key, evaluation key) of ``config.seed``: batches and evaluation never share one."""
    seed_key = jax.random.PRNGKey(int(config.seed))
    return jax.random.fold_in(seed_key, 1), jax.random.fold_in(seed_key, 2)


def evaluation_key(config) -> Array:
    """The key of the task's final evaluation (``EvalContext.key``) of a run of ``config``."""
    return jax.random.fold_in(run_keys(config)[1], 1)


def search_lower_bound(config, exported, points, key) -> float | None:
    """The certificate's empirical side (``config.certify.search_steps``, 0 = skip)."""
    search_steps = int(get(get(config, "certify"), "search_steps", 20))
    if search_steps <= 0:
        return None
    return certify.export_lower_bound(exported, jnp.asarray(points, jnp.float32), key, steps=search_steps)


# A retraction-mode update is meant to leave the manifold a little (drift ≈ 0.03 at the
# rates the mode is made for); past DRIFT_WARN each update needs several Björck steps and
# the kernels are projected back rather than retracted. DRIFT_PATIENCE consecutive steps
# past it earn one warning.
DRIFT_WARN, DRIFT_PATIENCE = 0.1, 50
# Per-step metrics that measure how far retraction-mode kernels are from their manifold;
# inf means "not measured after a rescale", so they are checked against the tolerance,
# not for finiteness.
RESIDUAL_METRICS = ("orthogonality_residual",)


class DivergenceError(FloatingPointError):
    """Training left the regime where the network it trains is the one it certifies."""


def make_check(workdir: str, spec: MLPSpec | None, patience: int, warnings: list[str],
               weights: Callable[[Any], Any] = lambda state: state[0]) -> Callable:
    """``check(step, end, losses, aux, state)`` for :func:`run_chunked_loop`: fail fast on a
    non-finite loss, metric or weight (naming the step); warn once when a retraction-mode
    kernel's residual exceeds ``retraction_tol`` (or is not finite), and stop with
    :class:`DivergenceError` when that lasts more than ``patience`` consecutive steps.
    ``weights(state)`` picks the trained parameters out of the loop's state."""
    tol = float(spec.retraction_tol) if spec is not None else math.inf
    riemannian = spec is not None and spec.bjorck_training == "riemannian"
    streak = {"bad": 0, "warned": False, "drift_warned": False}
    drifts: list[float] = []  # the current run of consecutive drifts past DRIFT_WARN

    def check_drift(step, values, steps_taken):
        for i, d in enumerate(np.atleast_1d(values)):
            drifts[:] = drifts + [float(d)] if d > DRIFT_WARN else []
            if len(drifts) == DRIFT_PATIENCE and not streak["drift_warned"]:
                streak["drift_warned"] = True
                steps_per_update = float(np.mean(steps_taken)) if steps_taken is not None else float("nan")
                remedy = ("lower config.train.learning_rate (the drift of tangent updates grows with its square)"
                          if riemannian else
                          "lower config.train.learning_rate (drift scales with it), or use "
                          "bjorck_training='riemannian' with optimizer 'riemannian_adam'")
                message = (f"steps {step + i + 2 - DRIFT_PATIENCE}–{step + i + 1}: retraction_drift stayed above "
                           f"{DRIFT_WARN:g} (median {np.median(drifts):.3g}, retraction_tol {tol:g}; "
                           f"{steps_per_update:.1f} Björck steps per update): each update knocks the kernels "
                           f"far off the orthonormal manifold and the retraction projects them back; {remedy}.")
                warnings.append(message)
                logging.warning("%s", message)

    def check(step, end, losses, aux, state):
        bad = ~np.isfinite(losses)
        if bad.any():
            raise FloatingPointError(
                f"non-finite loss ({losses[np.argmax(bad)]}) at step {step + int(np.argmax(bad)) + 1} of "
                f"{workdir}; lower config.train.learning_rate or check the data."
            )
        if "retraction_drift" in aux and not streak["drift_warned"]:
            check_drift(step, np.asarray(aux["retraction_drift"]), aux.get("retraction_steps"))
        for name, values in aux.items():
            values = np.asarray(values)
            if name in RESIDUAL_METRICS:
                for i, r in enumerate(np.atleast_1d(values)):
                    streak["bad"] = streak["bad"] + 1 if not r <= tol else 0
                    if streak["bad"] and not streak["warned"]:
                        streak["warned"] = True
                        how_far = (f"{name} {r:.3g} > retraction_tol {tol:g}" if np.isfinite(r) else
                                   "so far that the retraction had to rescale them, residual unknown")
                        message = (f"step {step + i + 1}: the training-time kernels are off the orthonormal "
                                   f"manifold ({how_far}), so the network being trained is not the 1-Lipschitz "
                                   "one that is exported; lower config.train.learning_rate (or use "
                                   "bjorck_training='riemannian' with SGD or riemannian_adam).")
                        warnings.append(message)
                        logging.warning("%s", message)
                    if streak["bad"] > patience:
                        raise DivergenceError(
                            f"{name} stayed above retraction_tol {tol:g} for {streak['bad']} steps (up to step "
                            f"{step + i + 1}) in {workdir}: training diverged from the manifold; lower "
                            "config.train.learning_rate (or raise config.train.divergence_patience)."
                        )
            elif not np.all(np.isfinite(values)):
                raise FloatingPointError(f"non-finite metric {name!r} between steps {step + 1} and {end} of "
                                         f"{workdir}; lower config.train.learning_rate or check the data.")
        if not all_finite(weights(state)):
            raise FloatingPointError(f"non-finite weights after step {end} of {workdir}.")

    return check


def make_curve(task: tasks.Task, graphdef: nnx.GraphDef, eval_key: Array) -> Callable[[int, Any], dict] | None:
    """``Member.curve`` for ``config.eval.curve_every``: the task's ``curve`` of the model
    exported at that step, with the final evaluation's key (so the last point of the curve
    is the final estimate); None when the task has no curve."""
    if task.curve is None:
        return None
    key = jax.random.fold_in(eval_key, 1)

    def curve(step, state):
        del step
        start = time.time()
        params, rest, _ = state
        model = nnx.merge(graphdef, params, rest)
        model.eval()
        record = task.curve(export_model(model), key)
        return {**record, "curve_eval_s": round(time.time() - start, 3)}

    return curve


def _finish(config, task: tasks.Task, graphdef: nnx.GraphDef, state, workdir: str, run: run_files.RunStart, *,
            step: int, start_time: float, resumed_from: int | None, warnings: list[str],
            shared: dict | None = None, best: BestKeeper | None = None) -> dict:
    """Export, certificate, the task's evaluation and results.json of one trained network
    (of its best state on the learning curve when ``best`` selects one)."""
    _, eval_key = run_keys(config)
    if best is not None:
        state = best.selected_state(step, state)
        shared = {**(shared or {}), "selected": {"by": best.metric, "step": best.step, "value": best.value}}
    params, rest, _ = state
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    exported = export_model(model)
    save_export(exported, workdir)
    lower = search_lower_bound(config, exported, task.certify_points, jax.random.fold_in(eval_key, 0))
    extra = task.evaluate(EvalContext(config, model, exported, workdir, evaluation_key(config)))
    common = run_files.common_results(
        config, exported, steps=step, start_time=start_time, resumed_from=resumed_from,
        data_source=task.data_source, lower_bound=lower, params=params,
    ) | (shared or {})
    warnings = warnings + extra.pop("warnings", [])  # the task's own (e.g. accuracy at chance)
    return run_files.finish_run(workdir, common, extra, run, warnings)


def train_default(config: ml_collections.ConfigDict, workdir: str, *, stop_after_step: int | None = None) -> dict | None:
    """The trainer of one network on a :class:`lipsort.tasks.Task` (module docstring)."""
    return train_together([config], [workdir], stop_after_step=stop_after_step)[0]


def seed_configs(config: ml_collections.ConfigDict, seeds) -> list[ml_collections.ConfigDict]:
    """``config`` once per seed (``config.seed`` replaced)."""
    out = []
    for seed in seeds:
        c = ml_collections.ConfigDict(config.to_dict())
        c.seed = int(seed)
        out.append(c)
    return out


def can_vmap_seeds(config: ml_collections.ConfigDict) -> str | None:
    """Why the seeds of ``config`` should not train in one vmapped program, or None if they
    can: the default trainer only, a task whose data does not depend on the seed, one
    device per batch (no data parallelism), no Björck retraction after each update (its
    data-dependent loops run their longest branch for every seed under vmap; the exact
    projections of ∞-norm layers have none)."""
    experiment = get(config, "experiment")
    if experiment in tasks.TASKS and tasks.TASKS[experiment].trainer != "default":
        return f"the {experiment} experiment has its own trainer"
    if get(get(config, "train"), "data_parallel", False):
        return "config.train.data_parallel shards each batch instead"
    task, spec = validate_config(config)
    if task.seed_dependent:
        return f"the {experiment} task's data depends on config.seed"
    model = nnx.eval_shape(lambda: spec.build(nnx.Rngs(0)))
    if any(layer.retracts and layer.constraint == "bjorck" for layer in model.layers):
        # The retraction's data-dependent loop and lazy branch become always-taken under
        # vmap: 3 riemannian-mode seeds vmapped took 2.1× their time one by one
        # (scripts/benchmark.py --parts=f, 2 CPU cores, 2026-12-02).
        return "retraction/riemannian-mode Björck layers retract with data-dependent loops, slower under vmap"
    return None


def train_seeds(config: ml_collections.ConfigDict, seeds, workdirs: list[str], *,
                stop_after_step: int | None = None) -> list[dict | None]:
    """Trains ``config`` once per seed into ``workdirs``, the seeds together in one compiled
    program (``jax.vmap`` over the seed axis of parameters, optimizer state and data keys)
    where :func:`can_vmap_seeds` allows, one after the other otherwise. Each workdir is an
    ordinary run (``python -m lipsort.main`` with that seed resumes or re-evaluates it)."""
    configs = seed_configs(config, seeds)
    why_not = can_vmap_seeds(config) if len(configs) > 1 else "one seed"
    if why_not is None:
        return train_together(configs, workdirs, stop_after_step=stop_after_step)
    if len(configs) > 1:
        logging.info("training seeds %s one by one: %s", list(seeds), why_not)
    return [train_and_evaluate(c, w, stop_after_step=stop_after_step) for c, w in zip(configs, workdirs)]


def seed_mesh(num_seeds: int) -> Mesh | None:
    """A 1-D mesh (axis ``seeds``) over all devices when there are several and they divide
    the seeds: each device then trains its own seeds (no communication)."""
    n = jax.device_count()
    if n == 1 or num_seeds % n:
        return None
    return jax.make_mesh((n,), ("seeds",), axis_types=(jax.sharding.AxisType.Auto,))


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n: int):
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def train_together(configs: list[ml_collections.ConfigDict], workdirs: list[str], *,
                   stop_after_step: int | None = None) -> list[dict | None]:
    """Trains the networks of ``configs`` (one config, or the same config with different
    seeds) into ``workdirs``; returns their results.json (None where ``stop_after_step``
    stopped them). Several networks that resume from the same step train in one vmapped
    program; each workdir gets its own metrics, checkpoints, export and results."""
    start_time = time.time()
    task, spec = validate_config(configs[0])  # the others differ in their seed only (checked next)
    if len(configs) > 1:
        seedless = [{**run_files.flatten(run_files.config_to_dict(c)), "seed": None} for c in configs]
        if any(s != seedless[0] for s in seedless) or task.seed_dependent:
            raise ValueError("train_together vmaps seeds of one config whose task does not depend on the seed.")
        errors: list[str] = []
        for c in configs:
            check_int(errors, "config.seed", get(c, "seed"), minimum=0)
        raise_if(errors)
    with contextlib.ExitStack() as held:
        for workdir in workdirs:
            held.enter_context(run_files.locked(workdir))
        runs = [run_files.start_run(w, c) for w, c in zip(workdirs, configs)]
        results: list[dict | None] = [None] * len(configs)
        pending = []
        for i, run in enumerate(runs):
            if run.finished and not run.evaluation_changes:
                logging.info("%s holds this run, finished: nothing to do (results.json is kept as it is)", workdirs[i])
                results[i] = run_files.read_results(workdirs[i])
            else:
                pending.append(i)
        if not pending:
            return results
        task.prepare(workdirs[pending[0]])

        num_steps, log_every, ckpt_every = loop_settings(configs[0])
        curve_every = int(get(get(configs[0], "eval"), "curve_every", 0) or 0)
        select_best = get(get(configs[0], "eval"), "select_best", "") or ""
        patience = int(get(configs[0].train, "divergence_patience", DIVERGENCE_PATIENCE))
        ts = None
        resumed: dict[int, tuple[int | None, Any, Member, list[str]]] = {}
        for i in pending:
            ts = create_train_state(configs[i], spec)
            checkpointer, resumed_from, state = run_files.resume(workdirs[i], ts.state, runs[i].config_hash)
            warnings: list[str] = []
            check = make_check(workdirs[i], spec if ts.model.retracts else None, patience, warnings)
            member = Member(workdirs[i], checkpointer, check, make_curve(task, ts.graphdef, run_keys(configs[i])[1]))
            if select_best:
                member.best = BestKeeper.open(workdirs[i], select_best, runs[i].config_hash)
            resumed[i] = (resumed_from, state, member, warnings)

        # Networks that resume from the same step train together.
        groups: dict[int, list[int]] = {}
        for i in pending:
            groups.setdefault(resumed[i][0] or 0, []).append(i)
        for first_step, group in sorted(groups.items()):
            stacked = len(group) > 1
            members = [resumed[i][2] for i in group]
            if stacked:
                logging.info("training seeds %s together (vmapped, one program)", [int(configs[i].seed) for i in group])
                runner = make_chunk_runner(ts.graphdef, task.loss, task.sample_batch, ts.tx, None,
                                           retracts=ts.model.retracts)
                keys = jnp.stack([run_keys(configs[i])[0] for i in group])
                state = _stack([resumed[i][1] for i in group])
                mesh = seed_mesh(len(group))
                if mesh is not None:
                    state, keys = jax.device_put((state, keys), NamedSharding(mesh, P("seeds")))
                vmapped = jax.jit(jax.vmap(runner, in_axes=(0, None, 0)))  # seeds × (state, key); steps shared

                def run_chunk(state, steps, vmapped=vmapped, keys=keys):
                    return vmapped(state, steps, keys)
            else:
                state = resumed[group[0]][1]
                mesh = parallel.make_data_mesh(configs[group[0]])
                if mesh is not None:
                    state = jax.device_put(state, NamedSharding(mesh, P()))  # replicated parameters
                run_chunk = jax.jit(make_chunk_runner(
                    ts.graphdef, task.loss, task.sample_batch, ts.tx, run_keys(configs[group[0]])[0],
                    retracts=ts.model.retracts, mesh=mesh,
                ))
            state, step, stopped = run_chunked_loop(
                run_chunk, state, first_step, num_steps=num_steps, log_every=log_every, ckpt_every=ckpt_every,
                members=members, start_time=start_time, stacked=stacked, curve_every=curve_every,
                stop_after_step=stop_after_step,
            )
            if stopped:
                _close_best(members)
                continue
            states = _unstack(state, len(group)) if stacked else [state]
            # A vmapped run's wall time is the whole program's: say which seeds shared it.
            shared = {"trained_with_seeds": [int(configs[i].seed) for i in group]} if stacked else {}
            for i, member_state in zip(group, states):
                resumed_from, _, _, warnings = resumed[i]
                results[i] = _finish(configs[i], task, ts.graphdef, member_state, workdirs[i], runs[i], step=step,
                                     start_time=start_time, resumed_from=resumed_from, warnings=warnings,
                                     shared=shared, best=resumed[i][2].best)
            _close_best(members)
        return results


def _gan_trainer(config, workdir, *, stop_after_step=None):
    return importlib.import_module("lipsort.tasks.gan").train_gan(config, workdir, stop_after_step=stop_after_step)


# trainer name (lipsort.tasks.TaskEntry.trainer) → fn(config, workdir, *, stop_after_step).
TRAINERS: dict[str, Callable[..., dict | None]] = {"default": train_default, "gan": _gan_trainer}


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_after_step: int | None = None,
    restart: bool = False,
) -> dict | None:
    """Trains the experiment ``config`` describes in ``workdir`` and returns results.json.

    Started again on the same workdir, the run resumes from its latest verified
    checkpoint (and gives bit-identical results on CPU); a finished run is not trained
    again (changed evaluation fields re-evaluate it). ``restart`` moves an existing run
    aside (``<workdir>.previous-<timestamp>``) and starts over. ``stop_after_step``
    simulates a kill right after the first checkpoint at or past that step (for tests);
    the function then returns None.
    """
    if restart:
        validate_config(config)  # a bad config moves nothing
        with run_files.locked(workdir):
            pass  # refuses while another run holds it
        run_files.move_aside(workdir)
    experiment = get(config, "experiment")
    trainer = tasks.TASKS[experiment].trainer if experiment in tasks.TASKS else "default"
    return TRAINERS[trainer](config, workdir, stop_after_step=stop_after_step)
