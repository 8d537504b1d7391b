"""Run files in a workdir: config.json, metrics.jsonl, results.json, orbax checkpoints.

Every trainer (:mod:`lipsort.train`) goes through here, so each run writes the same
files the same way:

- ``config.json``: the resolved config; a workdir resumes only the run it holds
  (:func:`check_same_run`, ``train.num_steps`` may change);
- ``metrics.jsonl``: one JSON object per logged step, truncated to the checkpoint on
  resume (:func:`truncate_metrics`);
- ``checkpoints/``: orbax checkpoints of the flat list of training-state leaves
  (:class:`Checkpointer`, two kept);
- ``results.json``: written atomically, its common keys assembled once
  (:func:`common_results`) for every experiment;
- the export (:mod:`lipsort.export`) and ``loss.png``.
"""
from __future__ import annotations

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
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    return str(o)


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=json_default)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_run(workdir: str, config_dict: dict) -> None:
    """A workdir resumes only the run it holds (``train.num_steps`` may change)."""
    path = os.path.join(workdir, CONFIG)
    if not os.path.exists(path):
        return
    with open(path) as f:
        old, new = flatten(json.load(f)), flatten(config_dict)
    diff = sorted(k for k in set(old) | set(new) if k != "train.num_steps" and old.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"workdir {workdir!r} holds a run with a different config (differs in: "
            f"{', '.join(diff)}); use a new --workdir, or the same config to resume."
        )


def start_run(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Creates the workdir, refuses a different run in it, and writes config.json."""
    config_dict = config_to_dict(config)
    os.makedirs(workdir, exist_ok=True)
    check_same_run(workdir, config_dict)
    write_json(os.path.join(workdir, CONFIG), config_dict)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    with open(os.path.join(workdir, CONFIG)) as f:
        return ml_collections.ConfigDict(json.load(f))


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, METRICS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, step: int) -> None:
    """On resume, drops metrics logged after the checkpoint (they will be logged again)."""
    kept = [m for m in read_metrics(workdir) if m["step"] <= step]
    with open(os.path.join(workdir, METRICS), "w") as f:
        for m in kept:
            f.write(json.dumps(m) + "\n")


# --- checkpoints ---------------------------------------------------------------------------


def _drop_orbax_info(record) -> bool:
    # Orbax logs a dozen INFO lines per save through absl; they drown the progress line.
    return record.levelno >= 30 or "orbax" not in record.pathname  # 30 = std WARNING


class Checkpointer:
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
        """(step, state) of the latest checkpoint, or (None, state) when there is none."""
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


def resume(workdir: str, state) -> tuple[Checkpointer, int | None, Any]:
    """Opens the workdir's checkpoints and restores the latest one into ``state``'s
    structure. Returns (checkpointer, step restored or None, state); metrics logged
    after that step are dropped."""
    checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINTS))
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


def finish_run(workdir: str, common: dict, extra: dict) -> dict:
    """Plots the metrics, adds ``final_loss``, writes results.json and returns it."""
    metrics = read_metrics(workdir)
    plots.plot_metrics(metrics, os.path.join(workdir, "loss.png"))
    results = {**common, "final_loss": metrics[-1]["loss"] if metrics else None, **extra}
    write_json(os.path.join(workdir, RESULTS), results)
    logging.info("results: %s", json.dumps(results, default=json_default))
    return results
