"""Run files in a workdir: config.json, metrics.jsonl, results.json, orbax checkpoints.

Every trainer (:mod:`lipsort.train`) goes through here, so each run writes the same
files the same way:

- ``config.json``: the resolved config; a workdir resumes only the run it holds
  (:func:`check_same_run`, ``train.num_steps`` may change);
- ``metrics.jsonl``: one JSON object per logged step, truncated to the checkpoint on
  resume (:func:`truncate_metrics`);
- ``checkpoints/``: orbax checkpoints of the flat list of training-state leaves
  (:class:`Checkpointer`, two kept); ``best/``: the best model of the learning curve
  (``curve.jsonl``) when ``config.eval.select_best`` names a metric;
- ``results.json``: written atomically, its common keys assembled once
  (:func:`common_results`) for every experiment;
- the export (:mod:`lipsort.export`) and ``loss.png``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from lipsort import certify, plots
from lipsort.export import ExportedModel
from lipsort.validation import ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CURVE = "curve.jsonl"  # learning curve: evaluations during training (config.eval.curve_every)
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
BEST = "best"  # the checkpoint of the best curve point (config.eval.select_best)
LOCK = ".lock"
# Fields a finished run may change on a rerun: they change what is measured, not what was
# trained, so the run is evaluated again without training (prefixes of flattened names).
EVALUATION_FIELDS = ("eval.", "certify.", "data.num_eval", "data.grid_size")


class WorkdirBusy(ConfigError):
    """Another process holds the workdir's lock."""


class CheckpointError(ConfigError):
    """No checkpoint in the workdir can be resumed."""


@contextlib.contextmanager
def locked(workdir: str, wait: bool = False):
    """Holds an exclusive lock on ``workdir`` (its ``.lock`` file, with the holder's pid)
    for the whole block: a second run on the same workdir stops at once with
    :class:`WorkdirBusy`, or waits when ``wait``. The lock dies with its process."""
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot use workdir {workdir!r}: {e.strerror or e}; choose a writable --workdir.") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise WorkdirBusy(
                f"workdir {workdir!r} is in use by another run (pid {holder}); wait for it to finish "
                "or use another --workdir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    return str(o)


def finite_json(obj, path: str = "") -> tuple[Any, list[str]]:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, and the dotted
    paths where that happened: strict JSON (jq, JavaScript) has no NaN or Infinity."""
    if isinstance(obj, dict):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = finite_json(v, f"{path}{k}.")
            bad += b
        return out, bad
    if isinstance(obj, (list, tuple)):
        pairs = [finite_json(v, f"{path}{i}.") for i, v in enumerate(obj)]
        return [p[0] for p in pairs], [b for p in pairs for b in p[1]]
    if isinstance(obj, (np.ndarray, jax.Array)) and np.ndim(obj) > 0:
        return finite_json(np.asarray(obj).tolist(), path)
    if isinstance(obj, (float, np.floating, jax.Array, np.ndarray)) and not isinstance(obj, bool):
        value = float(obj)
        return (value, []) if math.isfinite(value) else (None, [path[:-1]])
    if isinstance(obj, np.integer):
        return int(obj), []
    return obj, []


def strict(record: dict) -> dict:
    """A dict ready for strict JSON: non-finite values as null, listed in ``non_finite``."""
    clean, bad = finite_json(record)
    if bad:
        clean["non_finite"] = sorted(set(clean.get("non_finite") or []) | set(bad))
    return clean


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(strict(obj) if isinstance(obj, dict) else finite_json(obj)[0], f, indent=2, sort_keys=True,
                  default=json_default, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def json_line(record: dict) -> str:
    """One strict-JSON line of metrics.jsonl."""
    return json.dumps(strict(record), default=json_default, allow_nan=False)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def is_evaluation_field(name: str) -> bool:
    return any(name == p or name.startswith(p) for p in EVALUATION_FIELDS)


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{flattened field: (old, new)} for every field that differs."""
    old, new = flatten(old), flatten(new)
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def training_hash(config_dict: dict) -> str:
    """A hash of every field that shapes the trained weights (all but evaluation fields):
    stored with each checkpoint, so a checkpoint resumes only the run that wrote it."""
    fields = {k: v for k, v in flatten(config_dict).items() if not is_evaluation_field(k)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass
class RunStart:
    """What :func:`start_run` found: ``finished`` (results.json exists) and the evaluation
    fields changed since (``evaluation_changes``, {field: (old, new)})."""

    finished: bool
    evaluation_changes: dict
    config_hash: str


def move_aside(workdir: str) -> str | None:
    """Renames a non-empty workdir to ``<workdir>.previous-<timestamp>`` (never deletes)."""
    if not os.path.isdir(workdir) or not os.listdir(workdir):
        return None
    target = f"{workdir.rstrip(os.sep)}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(workdir, target)
    logging.warning("--restart: moved the old run in %s to %s", workdir, target)
    return target


def start_run(workdir: str, config: ml_collections.ConfigDict) -> RunStart:
    """Checks the workdir against ``config`` (hold :func:`locked` first) and writes config.json.

    A workdir resumes only the run it holds: any changed field that shapes training
    (``train.num_steps`` included: a schedule depends on it) is refused with the list of
    fields. A finished run may change evaluation fields (:data:`EVALUATION_FIELDS`): it is
    then evaluated again without training, and results.json records both configs.
    """
    config_dict = config_to_dict(config)
    path, results_path = os.path.join(workdir, CONFIG), os.path.join(workdir, RESULTS)
    finished = os.path.exists(results_path)
    changes: dict = {}
    if os.path.exists(path):
        with open(path) as f:
            changes = config_changes(json.load(f), config_dict)
        training = [k for k in changes if not is_evaluation_field(k)]
        if training:
            raise ConfigError(
                f"workdir {workdir!r} holds a run with a different config (differs in: "
                f"{', '.join(training)}); use a new --workdir, the same config to resume, or "
                "--restart to start over (the old run is moved aside, not deleted)."
            )
    write_json(path, config_dict)
    return RunStart(finished, changes, training_hash(config_dict))  # only evaluation fields remain


def read_config(workdir: str) -> ml_collections.ConfigDict:
    with open(os.path.join(workdir, CONFIG)) as f:
        return ml_collections.ConfigDict(json.load(f))


def read_metrics(workdir: str, name: str = METRICS) -> list[dict]:
    """The records of ``metrics.jsonl`` (or of ``name``, e.g. :data:`CURVE`)."""
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, step: int) -> None:
    """On resume, drops metrics and curve records logged after the checkpoint (they will
    be logged again)."""
    for name in (METRICS, CURVE):
        if not os.path.exists(os.path.join(workdir, name)):
            continue
        kept = [m for m in read_metrics(workdir, name) if m["step"] <= step]
        with open(os.path.join(workdir, name), "w") as f:
            for m in kept:
                f.write(json_line(m) + "\n")


# --- checkpoints ---------------------------------------------------------------------------


def _drop_orbax_info(record) -> bool:
    # Orbax logs a dozen INFO lines per save through absl; they drown the progress line.
    return record.levelno >= 30 or "orbax" not in record.pathname  # 30 = std WARNING


def _leaf_signature(leaves) -> list[list]:
    return [[list(np.shape(x)), str(np.asarray(x).dtype)] for x in leaves]


def _checksum(leaves) -> str:
    h = hashlib.sha256()
    for x in leaves:
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()


class Checkpointer:
    """Orbax checkpoints of the flat list of training-state leaves, by step, each with a
    ``meta-<step>.json`` beside it: the run's :func:`training_hash`, the leaves' shapes
    and dtypes, and a SHA-256 of their bytes, checked before anything is resumed."""

    def __init__(self, directory: str, config_hash: str | None = None):
        import orbax.checkpoint as ocp

        absl_logger = logging.get_absl_logger()
        if _drop_orbax_info not in absl_logger.filters:
            absl_logger.addFilter(_drop_orbax_info)

        self._ocp = ocp
        self.directory = os.path.abspath(directory)
        self.config_hash = config_hash
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )

    def _meta_path(self, step: int) -> str:
        return os.path.join(self.directory, f"meta-{step}.json")

    def save(self, step: int, state) -> None:
        leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
        self.manager.save(step, args=self._ocp.args.StandardSave({f"leaf_{i:05d}": x for i, x in enumerate(leaves)}))
        self.manager.wait_until_finished()
        write_json(self._meta_path(step), {"step": step, "config_hash": self.config_hash,
                                           "leaves": _leaf_signature(leaves), "sha256": _checksum(leaves)})

    def _steps(self) -> list[int]:
        try:
            return sorted(self.manager.all_steps(), reverse=True)
        except Exception:  # an unreadable checkpoint folder: nothing listed
            return []

    def _try_restore(self, step: int, target: dict, signature: list) -> tuple[list | None, str]:
        """(leaves, "") for a verified checkpoint, or (None, why it is not usable)."""
        try:
            with open(self._meta_path(step)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
        if meta is not None:
            if self.config_hash is not None and meta.get("config_hash") not in (None, self.config_hash):
                return None, "it was written by a run with another config"
            if meta.get("leaves") != signature:
                return None, "its arrays' shapes or dtypes differ from the model being built"
        try:
            restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(target))
        except Exception as e:  # orbax/tensorstore errors of missing or truncated files
            return None, f"it cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        leaves = [np.asarray(restored[k]) for k in sorted(restored)]
        if meta is None:
            logging.warning("checkpoint %d in %s has no meta file (an older lipsort wrote it): resumed "
                            "unverified", step, self.directory)
        elif meta.get("sha256") != _checksum(leaves):
            return None, "its content does not match its checksum (corrupt)"
        return leaves, ""

    def _reopen(self) -> None:
        self.manager.close()
        self.manager = self._ocp.CheckpointManager(
            self.directory, options=self._ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )

    def _set_aside(self, step: int) -> list[tuple[str, str]]:
        """Renames an unusable step (and its meta) to ``unusable-<step>-<time>``: orbax then
        neither lists nor overwrites it, and nothing is deleted."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moves = [(os.path.join(self.directory, str(step)), os.path.join(self.directory, f"unusable-{step}-{stamp}")),
                 (self._meta_path(step), os.path.join(self.directory, f"unusable-meta-{step}-{stamp}.json"))]
        moves = [(a, b) for a, b in moves if os.path.exists(a)]
        for a, b in moves:
            os.rename(a, b)
        return moves

    def restore(self, state):
        """(step, state) of the latest verified checkpoint, or (None, state) when there is
        none. A corrupt or mismatched checkpoint is set aside (renamed, not deleted) with a
        warning, and the one before it is tried; when checkpoints exist but none is
        usable, everything is put back as it was and :class:`CheckpointError` is raised."""
        leaves, treedef = jax.tree.flatten(state)
        target = {
            f"leaf_{i:05d}": jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
            for i, x in enumerate(leaves)
        }
        signature = _leaf_signature(leaves)
        reasons, moved = [], []
        while True:
            steps = self._steps()
            if not steps:
                break
            step = steps[0]
            restored, why = self._try_restore(step, target, signature)
            if restored is not None:
                if reasons:
                    logging.warning("resuming from the older checkpoint %d instead (%s)", step, "; ".join(reasons))
                return step, jax.tree.unflatten(treedef, [jnp.asarray(x) for x in restored])
            reasons.append(f"checkpoint {step}: {why}")
            logging.warning("checkpoint %d in %s is not usable: %s", step, self.directory, why)
            # A damaged step can keep orbax from reading the others: set it aside, reopen.
            moved += self._set_aside(step)
            self._reopen()
        if not reasons:
            return None, state
        for a, b in reversed(moved):  # none usable: leave the folder as it was found
            os.rename(b, a)
        self._reopen()
        raise CheckpointError(
            f"no usable checkpoint in {self.directory} ({'; '.join(reasons)}); rerun with --restart to "
            "start over (the old run is moved aside, not deleted)."
        )

    def close(self) -> None:
        self.manager.close()


def resume(workdir: str, state, config_hash: str | None = None) -> tuple[Checkpointer, int | None, Any]:
    """Opens the workdir's checkpoints and restores the latest verified one into
    ``state``'s structure. Returns (checkpointer, step restored or None, state); metrics
    logged after that step are dropped."""
    checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINTS), config_hash)
    step, state = checkpointer.restore(state)
    if step is not None:
        logging.info("resuming from the checkpoint at step %d in %s", step, workdir)
    truncate_metrics(workdir, step or 0)
    return checkpointer, step, state


# --- results --------------------------------------------------------------------------------


def common_results(
    config: ml_collections.ConfigDict,
    exported: ExportedModel,
    *,
    steps: int,
    start_time: float,
    resumed_from: int | None,
    data_source: str,
    lower_bound: float | None,
    params,
) -> dict:
    """The keys every results.json has (DESIGN.md), from the run and its export."""
    p_in, p_out = certify.io_norms(exported)
    return {
        "experiment": config.experiment,
        "steps": steps,
        "wall_time_s": round(time.time() - start_time, 3),
        "resumed_from_step": resumed_from,
        "data_source": data_source,
        "lipschitz_constant": float(config.model.lipschitz_constant),
        "lipschitz_upper_bound": certify.lipschitz_upper_bound(exported),
        "lipschitz_lower_bound": lower_bound,
        "certificate_norms": ["inf" if p == math.inf else "2" for p in (p_in, p_out)],
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
    }


def read_results(workdir: str) -> dict:
    with open(os.path.join(workdir, RESULTS)) as f:
        return json.load(f)


def finish_run(workdir: str, common: dict, extra: dict, run: RunStart | None = None,
               warnings: list[str] | None = None) -> dict:
    """Plots the metrics, adds ``final_loss`` (and ``warnings``), writes results.json and
    returns it. A re-evaluation of a finished run keeps the previous results.json as
    ``results.previous-<timestamp>.json`` and records the changed fields."""
    metrics = read_metrics(workdir)
    plots.plot_metrics(metrics, os.path.join(workdir, "loss.png"))
    results = {**common, "final_loss": metrics[-1]["loss"] if metrics else None, **extra}
    if warnings:
        results["warnings"] = list(warnings)
    path = os.path.join(workdir, RESULTS)
    if run is not None and run.finished and os.path.exists(path):
        previous = f"results.previous-{time.strftime('%Y%m%d-%H%M%S')}.json"
        os.replace(path, os.path.join(workdir, previous))
        results["reevaluated"] = {"previous_results": previous,
                                  "changed_fields": {k: list(v) for k, v in run.evaluation_changes.items()}}
    write_json(path, results)
    logging.info("results: %s", json.dumps(results, default=json_default))
    return results
