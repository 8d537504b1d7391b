"""The training loop every experiment shares: ``train_and_evaluate(config, workdir)``.

An experiment (``config.experiment``) is a module with ``make_task(config) -> Task``
(registry :data:`EXPERIMENTS`): the input/output sizes, a jit-able batch sampler, a
loss, and a final evaluation. This module owns everything around it:

- validation of the whole config *before* any work (all errors reported at once);
- the pure train step (:func:`make_chunk_runner`): ``nnx.split`` the model once, then
  ``jax.jit`` a ``lax.scan`` over a chunk of steps (one dispatch per logging interval,
  which matters for the small models of the toys on CPU); batches are a function of
  (seed, step) only, so a resumed run sees exactly the batches an uninterrupted one does;
  retraction- and riemannian-mode Björck kernels are retracted after every update
  (riemannian: lazily, only past ``retraction_tol``);
- data parallelism (``config.train.data_parallel``): a mesh over all devices, batch
  sharded, parameters replicated (:func:`make_data_mesh`);
- run hygiene in the workdir: ``config.json``, ``metrics.jsonl``, ``results.json``,
  orbax checkpoints in ``checkpoints/`` with automatic resume, a progress line
  (step, loss, ETA), fail-fast on non-finite loss or weights naming the step;
- the export (``export.npz``/``export.json``) and the certificate keys
  ``lipschitz_upper_bound`` (exact, from the export) and ``lipschitz_lower_bound``
  (search, :func:`lipsort.certify.lipschitz_lower_bound`).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
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

from lipsort import certify, plots, riemannian_adam
from lipsort.export import ExportedModel, export_model, save_export
from lipsort.models import LipschitzMLP, MLPSpec, spec_from_config

Array = jax.Array

# config.experiment → module with make_task(config) -> Task.
EXPERIMENTS: dict[str, str] = {
    "fit": "lipsort.fit",
    "wde": "lipsort.wde",
    "classify": "lipsort.classify",
    "gan": "lipsort.gan",  # two networks: owns its loop (run), see train_and_evaluate
}
def _riemannian_adam(lr, train, manifold_mask) -> optax.GradientTransformation:
    if manifold_mask is None:
        raise ValueError("optimizer 'riemannian_adam' needs the manifold_mask of the model's parameters "
                         "(lipsort.riemannian_adam.tangent_kernel_mask(model, params)).")
    return riemannian_adam.riemannian_adam(lr, manifold_mask)


# name -> (learning rate or schedule, config.train, manifold mask) -> optimizer
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": lambda lr, train, manifold_mask: optax.adam(lr),
    "sgd": lambda lr, train, manifold_mask: optax.sgd(lr, momentum=float(_get(train, "momentum", 0.0)) or None),
    # One second moment per orthonormal kernel: keeps riemannian-mode updates tangent.
    "riemannian_adam": _riemannian_adam,
}
SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """An invalid config, found before any training starts."""


@dataclasses.dataclass
class EvalContext:
    """What a task's final evaluation gets."""

    config: ml_collections.ConfigDict
    model: LipschitzMLP
    exported: ExportedModel
    workdir: str
    key: Array


@dataclasses.dataclass
class Task:
    """One experiment, as the generic loop sees it.

    ``sample_batch(key)`` and ``loss(model, batch)`` run inside ``jax.jit``;
    ``loss`` returns (scalar, dict of scalar metrics). ``evaluate`` runs once after
    training and returns the experiment's keys for ``results.json`` (it may write plots).
    ``certify_points`` are the starts of the Lipschitz lower-bound search.
    """

    in_features: int
    out_features: int
    data_source: str
    sample_batch: Callable[[Array], Any]
    loss: Callable[[nnx.Module, Any], tuple[Array, dict[str, Array]]]
    evaluate: Callable[[EvalContext], dict[str, Any]]
    certify_points: np.ndarray


# --- validation -------------------------------------------------------------------------


def _get(cfg, key, default=None):
    return cfg.get(key, default) if cfg is not None and hasattr(cfg, "get") else default


def _check_int(errors: list[str], name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        errors.append(f"{name} must be an integer ≥ {minimum}, got {value!r}.")


def validate_config(config: ml_collections.ConfigDict) -> tuple[Task, MLPSpec]:
    """Checks every field the run will use; raises one :class:`ConfigError` listing all
    problems. Returns the task and the validated model spec (nothing is trained)."""
    errors: list[str] = []
    experiment = _get(config, "experiment")
    task = None
    if experiment not in EXPERIMENTS:
        errors.append(
            f"Unknown experiment {experiment!r}; valid experiments are: {', '.join(EXPERIMENTS)}."
        )
    else:
        try:
            task = importlib.import_module(EXPERIMENTS[experiment]).make_task(config)
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            errors.append(f"{experiment} task: {e}")
    _check_int(errors, "config.seed", _get(config, "seed"), minimum=0)
    spec = None
    model_cfg = _get(config, "model")
    if model_cfg is None:
        errors.append("config.model is missing.")
    else:
        in_f, out_f = (task.in_features, task.out_features) if task else (1, 1)
        try:
            spec = spec_from_config(model_cfg, in_f, out_f)
        except (ValueError, TypeError) as e:
            errors.append(f"config.model: {e}")
    train = _get(config, "train")
    if train is None:
        errors.append("config.train is missing.")
    else:
        for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
            _check_int(errors, f"config.train.{name}", _get(train, name))
        lr = _get(train, "learning_rate")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            errors.append(f"config.train.learning_rate must be a finite number > 0, got {lr!r}.")
        if _get(train, "optimizer", "adam") not in OPTIMIZERS:
            errors.append(
                f"Unknown optimizer {_get(train, 'optimizer')!r}; valid: {', '.join(OPTIMIZERS)}."
            )
        data_parallel = _get(train, "data_parallel", False)
        if not isinstance(data_parallel, bool):
            errors.append(f"config.train.data_parallel must be True or False, got {data_parallel!r}.")
        elif data_parallel and isinstance(_get(train, "batch_size"), int) and train.batch_size % jax.device_count():
            errors.append(
                f"config.train.batch_size {train.batch_size} must be divisible by the "
                f"{jax.device_count()} devices of the data-parallel mesh."
            )
        momentum = _get(train, "momentum", 0.0)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            errors.append(f"config.train.momentum must be a number in [0, 1) (SGD only), got {momentum!r}.")
        elif momentum and _get(train, "optimizer", "adam") != "sgd":
            errors.append(
                f"config.train.momentum={momentum} applies to optimizer 'sgd' only "
                f"(got optimizer {_get(train, 'optimizer', 'adam')!r}); set it to 0 or use 'sgd'."
            )
        if (_get(train, "optimizer", "adam") == "riemannian_adam" and spec is not None
                and not (spec.constraint == "bjorck" and spec.bjorck_training == "riemannian")):
            errors.append(
                "optimizer 'riemannian_adam' adapts one second moment per orthonormal kernel and needs "
                "config.model.constraint='bjorck' with config.model.bjorck_training='riemannian' "
                f"(got {spec.constraint!r}, {spec.bjorck_training!r}); use optimizer 'adam' otherwise."
            )
        if _get(train, "schedule", "constant") not in SCHEDULES:
            errors.append(f"Unknown schedule {_get(train, 'schedule')!r}; valid: {', '.join(SCHEDULES)}.")
    cert = _get(config, "certify")
    if cert is not None:
        _check_int(errors, "config.certify.search_steps", _get(cert, "search_steps", 1), minimum=0)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return task, spec


def make_optimizer(train: ml_collections.ConfigDict, manifold_mask=None) -> optax.GradientTransformation:
    """The optax optimizer of ``config.train``.

    ``manifold_mask`` (:func:`lipsort.riemannian_adam.tangent_kernel_mask`) tells
    ``riemannian_adam`` which parameters are orthonormal kernels; it is required for it.
    """
    lr = float(train.learning_rate)
    if _get(train, "schedule", "constant") == "cosine":
        lr = optax.cosine_decay_schedule(lr, int(train.num_steps), alpha=0.01)
    return OPTIMIZERS[_get(train, "optimizer", "adam")](lr, train, manifold_mask)


# --- workdir files ------------------------------------------------------------------------


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    return str(o)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_same_run(workdir: str, config_dict: dict) -> None:
    """A workdir resumes only the run it holds (``train.num_steps`` may change)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        old, new = _flatten(json.load(f)), _flatten(config_dict)
    diff = sorted(k for k in set(old) | set(new) if k != "train.num_steps" and old.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"workdir {workdir!r} holds a run with a different config (differs in: "
            f"{', '.join(diff)}); use a new --workdir, or the same config to resume."
        )


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_metrics(workdir: str, step: int) -> None:
    """On resume, drops metrics logged after the checkpoint (they will be logged again)."""
    kept = [m for m in read_metrics(workdir) if m["step"] <= step]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for m in kept:
            f.write(json.dumps(m) + "\n")


# --- checkpoints ---------------------------------------------------------------------------


def _drop_orbax_info(record) -> bool:
    # Orbax logs a dozen INFO lines per save through absl; they drown the progress line.
    return record.levelno >= 30 or "orbax" not in record.pathname  # 30 = std WARNING


class _Checkpointer:
    """Orbax checkpoints of the flat list of training-state leaves, by step."""

    def __init__(self, directory: str):
        import orbax.checkpoint as ocp

        absl_logger = logging.get_absl_logger()
        if _drop_orbax_info not in absl_logger.filters:
            absl_logger.addFilter(_drop_orbax_info)

        self._ocp = ocp
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )

    def save(self, step: int, state) -> None:
        leaves = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
        self.manager.save(step, args=self._ocp.args.StandardSave(leaves))
        self.manager.wait_until_finished()

    def restore(self, state):
        step = self.manager.latest_step()
        if step is None:
            return None, state
        leaves, treedef = jax.tree.flatten(state)
        target = {
            f"leaf_{i:05d}": jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
            for i, x in enumerate(leaves)
        }
        restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(target))
        return step, jax.tree.unflatten(treedef, [jnp.asarray(restored[k]) for k in sorted(restored)])

    def close(self) -> None:
        self.manager.close()


# --- the loop -------------------------------------------------------------------------------


def make_data_mesh(config: ml_collections.ConfigDict) -> Mesh | None:
    """A 1-D mesh over all devices (axis ``data``) when ``config.train.data_parallel``.

    Data parallelism: every device holds the whole (replicated) training state and a
    slice of each batch; XLA's SPMD partitioner turns the mean-over-batch gradient into
    per-device partial sums and an all-reduce. Same math as one device, so results agree
    up to the order of floating-point summation.
    """
    if not _get(config.train, "data_parallel", False):
        return None
    # Auto axes: we only constrain the batch; XLA propagates the rest (gradient all-reduce).
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def make_chunk_runner(
    graphdef: nnx.GraphDef,
    loss: Callable[[nnx.Module, Any], tuple[Array, dict[str, Array]]],
    sample_batch: Callable[[Array], Any],
    tx: optax.GradientTransformation,
    data_key: Array,
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
    """
    batch_sharding = NamedSharding(mesh, P("data")) if mesh is not None else None

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

    def train_step(state, step):
        params, rest, opt_state = state
        batch = sample_batch(jax.random.fold_in(data_key, step))
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        (value, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if retracts:
            params, rest, stats = retract(params, rest)
            aux = {**aux, **stats}
        return (params, rest, opt_state), (value, aux)

    def run_chunk(state, steps):  # one dispatch for a whole logging interval
        return jax.lax.scan(train_step, state, steps)

    return run_chunk



def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def run_chunked_loop(
    run_chunk: Callable,
    state,
    step: int,
    *,
    num_steps: int,
    log_every: int,
    ckpt_every: int,
    workdir: str,
    checkpointer: "_Checkpointer",
    start_time: float,
    check: Callable[[int, int, np.ndarray, dict, Any], None],
    describe: Callable[[dict], str] = lambda record: f"loss {record['loss']:.4g}",
    stop_after_step: int | None = None,
) -> tuple[Any, int, bool]:
    """The loop every experiment shares: ``run_chunk(state, steps) -> (state, (losses, aux))``
    from ``step`` to ``num_steps`` in chunks that end at logging and checkpoint steps.

    After each chunk ``check(step, end, losses, aux, state)`` may raise (fail fast on
    non-finite values); every ``log_every`` steps a record goes to ``metrics.jsonl`` and a
    progress line (``describe(record)``, rate, ETA) to the log; every ``ckpt_every`` steps
    the state is checkpointed. Returns (state, step, stopped), stopped when
    ``stop_after_step`` simulated a kill after a checkpoint. Closes ``checkpointer``.
    """
    loop_start, first_step = time.time(), step
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as metrics_file:
        while step < num_steps:
            end = min(num_steps, (step // log_every + 1) * log_every, (step // ckpt_every + 1) * ckpt_every)
            state, (losses, aux) = run_chunk(state, jnp.arange(step, end))
            losses = np.asarray(losses)
            check(step, end, losses, aux, state)
            step = end
            record = {
                "step": step,
                "loss": float(losses.mean()),
                **{k: float(np.mean(v)) for k, v in aux.items()},
                "elapsed_s": round(time.time() - start_time, 3),
            }
            if step % log_every == 0 or step == num_steps:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                rate = (step - first_step) / max(time.time() - loop_start, 1e-9)
                logging.info(
                    "step %d/%d  %s  %.2f steps/s  ETA %s",
                    step, num_steps, describe(record), rate, _format_eta((num_steps - step) / rate),
                )
            if step % ckpt_every == 0 or step == num_steps:
                checkpointer.save(step, state)
                if stop_after_step is not None and step >= stop_after_step:
                    checkpointer.close()
                    return state, step, True
    checkpointer.close()
    return state, step, False


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_after_step: int | None = None
) -> dict | None:
    """Trains the experiment ``config`` describes in ``workdir`` and returns results.json.

    Started again on the same workdir, the run resumes from its latest checkpoint (and
    gives bit-identical results on CPU). ``stop_after_step`` simulates a kill right after
    the first checkpoint at or past that step (for tests); the function then returns None.
    """
    own_loop = getattr(importlib.import_module(EXPERIMENTS.get(_get(config, "experiment"), __name__)), "run", None)
    if own_loop is not None:  # an experiment with its own loop (gan: generator + critic)
        return own_loop(config, workdir, stop_after_step=stop_after_step)
    start_time = time.time()
    task, spec = validate_config(config)
    config_dict = config_to_dict(config)
    os.makedirs(workdir, exist_ok=True)
    _check_same_run(workdir, config_dict)
    _write_json(os.path.join(workdir, "config.json"), config_dict)

    train = config.train
    num_steps, log_every, ckpt_every = int(train.num_steps), int(train.log_every), int(train.checkpoint_every)
    model = LipschitzMLP(spec, rngs=nnx.Rngs(int(config.seed)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_optimizer(train, riemannian_adam.tangent_kernel_mask(model, params))
    state = (params, rest, tx.init(params))

    checkpointer = _Checkpointer(os.path.join(workdir, "checkpoints"))
    step, state = checkpointer.restore(state)
    resumed_from = step
    if step is None:
        step = 0
        _truncate_metrics(workdir, 0)
    else:
        logging.info("resuming from the checkpoint at step %d in %s", step, workdir)
        _truncate_metrics(workdir, step)

    seed_key = jax.random.PRNGKey(int(config.seed))
    data_key, eval_key = jax.random.fold_in(seed_key, 1), jax.random.fold_in(seed_key, 2)

    mesh = make_data_mesh(config)
    if mesh is not None:
        state = jax.device_put(state, NamedSharding(mesh, P()))  # replicated parameters
    run_chunk = jax.jit(make_chunk_runner(
        graphdef, task.loss, task.sample_batch, tx, data_key, retracts=model.retracts, mesh=mesh
    ))

    def check(step, end, losses, aux, state):
        bad = ~np.isfinite(losses)
        if bad.any():
            raise FloatingPointError(
                f"non-finite loss ({losses[np.argmax(bad)]}) at step {step + int(np.argmax(bad)) + 1} of "
                f"{workdir}; lower config.train.learning_rate or check the data."
            )
        if not _all_finite(state[0]):
            raise FloatingPointError(f"non-finite weights after step {end} of {workdir}.")

    state, step, stopped = run_chunked_loop(
        run_chunk, state, step, num_steps=num_steps, log_every=log_every, ckpt_every=ckpt_every,
        workdir=workdir, checkpointer=checkpointer, start_time=start_time, check=check,
        stop_after_step=stop_after_step,
    )
    if stopped:
        return None

    params, rest, _ = state
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    exported = export_model(model)
    save_export(exported, workdir)
    p_in, p_out = certify.io_norms(exported)
    cert = _get(config, "certify")
    search_steps = int(_get(cert, "search_steps", 20))
    lower = certify.export_lower_bound(
        exported, jnp.asarray(task.certify_points, jnp.float32), jax.random.fold_in(eval_key, 0),
        steps=search_steps,
    ) if search_steps > 0 else None
    extra = task.evaluate(EvalContext(config, model, exported, workdir, jax.random.fold_in(eval_key, 1)))
    metrics = read_metrics(workdir)
    plots.plot_metrics(metrics, os.path.join(workdir, "loss.png"))
    results = {
        "experiment": config.experiment,
        "steps": step,
        "wall_time_s": round(time.time() - start_time, 3),
        "resumed_from_step": resumed_from,
        "data_source": task.data_source,
        "lipschitz_constant": float(spec.lipschitz_constant),
        "lipschitz_upper_bound": certify.lipschitz_upper_bound(exported),
        "lipschitz_lower_bound": lower,
        "certificate_norms": ["inf" if p == math.inf else "2" for p in (p_in, p_out)],
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        **extra,
    }
    _write_json(os.path.join(workdir, "results.json"), results)
    logging.info("results: %s", json.dumps(results, default=_json_default))
    return results
