r"""Sweeps as data: cells of config overrides × seeds, each cell's seeds in one program.

    python -m lipsort.sweep --config=configs/wde_mnist.py:paper --sweep=modes \
        --workdir=runs/sweeps/wde_mnist_modes [--seeds=0,1,2] [--config.train.num_steps=1024]

A config file offers its sweeps with ``get_sweep(arg) -> Sweep`` beside ``get_config``
(``--sweep=ARG``); a sweep is a list of :class:`Cell` (a name and ``{"dotted.field":
value}`` overrides of the config), seeds, and the ``results.json`` keys its table
aggregates. :func:`options` and :func:`product` build the usual grids.

Each (cell, seed) is an ordinary run in ``<workdir>/<cell slug>/seed_<s>`` (``python -m
lipsort.main`` with the same config resumes or re-evaluates it). The seeds of a cell train
together: ``jax.vmap`` over the seed axis of parameters, optimizer state and data keys,
in one compiled program, sharded over the devices when there are several
(:func:`lipsort.train.train_seeds`; one after the other where the task's data depends on
the seed, the experiment has its own trainer, or the model retracts after each update). The sweep is resumable: a finished run
is reused only when its stored config is the cell's (a run with a different training
config is moved aside, ``<dir>.previous-<timestamp>``, and trained again), an
interrupted one resumes from its checkpoint. Every cell is built and validated before
anything trains. Writes ``sweep.json`` (every run's metrics), ``table.md`` (mean ± std
over seeds per cell) and, where the runs recorded learning curves
(``config.eval.curve_every``), ``curves.png``.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import re
import sys
import time
from typing import Iterable, Sequence

import ml_collections
import numpy as np
from absl import logging

from lipsort import train, workdir as run_files
from lipsort.validation import ConfigError

SWEEP_JSON, TABLE_MD, CURVES_PNG = "sweep.json", "table.md", "curves.png"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One setting of a sweep: a name for tables and ``{"dotted.field": value}`` overrides."""

    name: str
    overrides: dict

    @property
    def slug(self) -> str:
        """The cell's folder name: its name in lower case, runs of other characters as ``_``."""
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_") or "base"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Cells × seeds, and the ``results.json`` keys (numbers) its table aggregates."""

    cells: tuple[Cell, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    # results.json keys its table aggregates; "a/b" reads results["a"]["b"] (e.g.
    # "certified_accuracy/0.1": the keys of nested records may hold dots themselves)
    metrics: tuple[str, ...] = ("final_loss",)
    curve_metrics: tuple[str, ...] = ()  # keys of curve.jsonl plotted in curves.png

    def __post_init__(self):
        slugs = [c.slug for c in self.cells]
        duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
        if duplicates:
            raise ValueError(f"sweep cells need distinct names; these share a folder: {', '.join(duplicates)}.")
        if not self.cells or not self.seeds:
            raise ValueError("a sweep needs at least one cell and one seed.")


def options(field: str, values: Iterable, names: Sequence[str] | None = None) -> list[Cell]:
    """One cell per value of ``field`` (named ``names`` or ``field=value``)."""
    values = list(values)
    names = list(names) if names is not None else [f"{field.rsplit('.', 1)[-1]}={v}" for v in values]
    return [Cell(n, {field: v}) for n, v in zip(names, values, strict=True)]


def product(*axes: Sequence[Cell]) -> list[Cell]:
    """Every combination of one cell per axis: names joined by ", ", overrides merged
    (an axis may not set a field another axis sets)."""
    cells = []
    for combo in itertools.product(*axes):
        overrides: dict = {}
        for cell in combo:
            clash = sorted(set(overrides) & set(cell.overrides))
            if clash:
                raise ValueError(f"sweep axes both set {', '.join(clash)}.")
            overrides.update(cell.overrides)
        cells.append(Cell(", ".join(c.name for c in combo), overrides))
    return cells


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict, where: str = "") -> ml_collections.ConfigDict:
    """A copy of ``config`` with each ``dotted.field`` set; a field the config does not
    have is an error (a typo would otherwise sweep nothing)."""
    out = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ConfigError(f"sweep{where}: the config has no section {dotted.rsplit('.', 1)[0]!r} "
                                  f"(override {dotted!r}).")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"sweep{where}: the config has no field {dotted!r}; fields of that section: "
                              f"{', '.join(sorted(node.keys()))}.")
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return out


def cell_workdirs(root: str, cell: Cell, seeds: Sequence[int]) -> list[str]:
    return [os.path.join(root, cell.slug, f"seed_{s}") for s in seeds]


def _move_aside_if_changed(workdir: str, config: ml_collections.ConfigDict) -> None:
    """A run whose stored config differs in a training field is not this cell's: move it
    aside (never deleted), so the cell trains again."""
    path = os.path.join(workdir, run_files.CONFIG)
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = json.load(f)
    changed = [k for k in run_files.config_changes(stored, run_files.config_to_dict(config))
               if not run_files.is_evaluation_field(k)]
    if changed:
        with run_files.locked(workdir):
            target = run_files.move_aside(workdir)
        logging.warning("sweep: %s was trained with another config (differs in %s); moved to %s",
                        workdir, ", ".join(changed), target)


def prepare_cells(config: ml_collections.ConfigDict, sweep: Sweep) -> list[tuple[Cell, ml_collections.ConfigDict]]:
    """Every cell's config, each validated, before anything trains."""
    cells = []
    for cell in sweep.cells:
        cell_config = apply_overrides(config, cell.overrides, f" cell {cell.name!r}")
        try:
            train.validate_config(cell_config)
        except ConfigError as e:
            raise ConfigError(f"sweep cell {cell.name!r}: {e}") from None
        cells.append((cell, cell_config))
    return cells


def run(config: ml_collections.ConfigDict, sweep: Sweep, root: str, *, command: str = "") -> list[dict]:
    """Runs (or reuses) every cell × seed of ``sweep`` over ``config`` under ``root``;
    writes sweep.json, table.md and curves.png there and returns the rows."""
    cells = prepare_cells(config, sweep)
    os.makedirs(root, exist_ok=True)
    rows: list[dict] = []
    start = time.time()
    for n, (cell, cell_config) in enumerate(cells, 1):
        workdirs = cell_workdirs(root, cell, sweep.seeds)
        for workdir, seed_config in zip(workdirs, train.seed_configs(cell_config, sweep.seeds)):
            _move_aside_if_changed(workdir, seed_config)
        logging.info("=== sweep cell %d/%d: %s, seeds %s (%.0f s so far) ===", n, len(cells), cell.name,
                     list(sweep.seeds), time.time() - start)
        results = train.train_seeds(cell_config, sweep.seeds, workdirs)
        for seed, workdir, result in zip(sweep.seeds, workdirs, results):
            rows.append({"cell": cell.name, "seed": int(seed), "workdir": workdir,
                         **{m: metric_value(result, m) for m in (*sweep.metrics, "steps", "wall_time_s")}})
        write_outputs(root, sweep, rows, command)  # the table so far, after every cell
    return rows


def metric_value(result: dict, key: str):
    """``result[key]``, or for ``"a/b"`` ``result["a"]["b"]``; None where it is absent."""
    value = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def aggregate(rows: list[dict], metric: str) -> dict[str, tuple[float, float, int]]:
    """cell → (mean, std with ddof=1 (0 for one seed), n) of ``metric`` over its seeds;
    runs without the metric are left out."""
    out = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        values = np.array([r[metric] for r in rows if r["cell"] == cell and r.get(metric) is not None], float)
        if len(values):
            out[cell] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values))
    return out


def format_mean_std(value: tuple[float, float, int] | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    mean, std, n = value
    return f"{mean:.{digits}g} ± {std:.2g} (n={n})"


def hardware() -> str:
    """The machine in words: CPU cores and JAX devices (the tables say where they ran)."""
    import platform

    import jax

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
            f"{', '.join(sorted({d.device_kind for d in jax.devices()}))} × {jax.device_count()}")


def table_markdown(sweep: Sweep, rows: list[dict], command: str = "") -> str:
    columns = (*sweep.metrics, "wall_time_s")
    aggregated = {m: aggregate(rows, m) for m in columns}
    lines = [
        "# Sweep results",
        "",
        *([f"Command: `{command}`  "] if command else []),
        f"Hardware: {hardware()}.  ",
        f"Written {datetime.datetime.now().isoformat(timespec='seconds')}; mean ± std over seeds "
        f"{list(sweep.seeds)} (std with ddof = 1). `wall_time_s` of runs trained together is the whole "
        "program's.",
        "",
        "| cell | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        lines.append(f"| {cell} | " + " | ".join(format_mean_std(aggregated[m].get(cell)) for m in columns) + " |")
    return "\n".join(lines) + "\n"


def read_curves(rows: list[dict]) -> dict[str, list[list[dict]]]:
    """cell → the curve.jsonl records of each of its runs (runs without one left out)."""
    out: dict[str, list[list[dict]]] = {}
    for r in rows:
        records = run_files.read_metrics(r["workdir"], run_files.CURVE)
        if records:
            out.setdefault(r["cell"], []).append(records)
    return out


def plot_curves(path: str, curves: dict[str, list[list[dict]]], metrics: Sequence[str]) -> bool:
    """One panel per metric: mean over seeds against step, a band of ± one std."""
    metrics = [m for m in metrics if any(rec.get(m) is not None for runs in curves.values() for r in runs for rec in r)]
    if not curves or not metrics:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (cell, runs) in enumerate(curves.items()):
            steps = sorted(set.intersection(*[{rec["step"] for rec in r} for r in runs]))
            values = np.array([[next(rec[metric] for rec in r if rec["step"] == s) for s in steps] for r in runs],
                              float)
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, color=f"C{i % 10}", ls="-" if i < 10 else "--", label=f"{cell} (n={len(runs)})")
            ax.fill_between(steps, mean - std, mean + std, color=f"C{i % 10}", alpha=0.15)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(root: str, sweep: Sweep, rows: list[dict], command: str = "") -> None:
    run_files.write_json(os.path.join(root, SWEEP_JSON), {"command": command, "rows": rows})
    with open(os.path.join(root, TABLE_MD), "w") as f:
        f.write(table_markdown(sweep, rows, command))
    if sweep.curve_metrics:
        plot_curves(os.path.join(root, CURVES_PNG), read_curves(rows), sweep.curve_metrics)


def get_sweep(config_spec: str, arg: str | None) -> Sweep:
    """The ``get_sweep(arg)`` of the config file of ``config_spec`` (``path.py[:ARG]``)."""
    from lipsort import config_loader

    module = config_loader.load_module(config_spec.partition(":")[0])
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{config_spec.partition(':')[0]} defines no get_sweep(arg): it offers no sweeps.")
    try:
        return module.get_sweep(arg)
    except ValueError as e:  # an unknown sweep name: a usage error like any other
        raise ConfigError(str(e)) from None


def with_seeds(sweep: Sweep, seeds: str | None) -> Sweep:
    """``sweep`` with the comma-separated ``seeds`` (None: its own)."""
    if not seeds:
        return sweep
    try:
        parsed = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {seeds!r}.") from None
    if not parsed or len(set(parsed)) != len(parsed) or min(parsed) < 0:
        raise ConfigError(f"--seeds must be distinct integers ≥ 0, got {seeds!r}.")
    return dataclasses.replace(sweep, seeds=parsed)


def main(argv: list[str], flag_values: dict) -> None:
    """``python -m lipsort.sweep``: the config (with overrides), its sweep, the run, the table."""
    from lipsort.cli import RUN_ERROR, USAGE_ERROR, fail, interrupted

    if len(argv) > 1:
        fail(ValueError(f"unexpected arguments: {argv[1:]}"), USAGE_ERROR, "command line: ")
    try:
        config = flag_values["config"].value
        config.get("experiment")  # a file that failed to load raises on first use
    except Exception as e:  # a missing or broken config file
        fail(e, USAGE_ERROR, "config: ")
    root = flag_values["workdir"].value
    try:
        sweep = with_seeds(get_sweep(flag_values["config_file"](), flag_values["sweep"].value),
                           flag_values["seeds"].value)
        logging.info("sweep %r: %d cells × %d seeds in %s", flag_values["sweep"].value, len(sweep.cells),
                     len(sweep.seeds), root)
        run(config, sweep, root, command="python -m lipsort.sweep " + " ".join(sys.argv[1:]))
    except ConfigError as e:
        fail(e, USAGE_ERROR, "config error: ")
    except KeyboardInterrupt:
        interrupted(f"interrupted; run the same command again to resume the sweep in {root}")
    except Exception as e:  # every failure of a run is reported the same way
        fail(e, RUN_ERROR, f"{type(e).__name__}: ")
    with open(os.path.join(root, TABLE_MD)) as f:
        print(f.read())


def _cli() -> None:
    from absl import app, flags
    from ml_collections import config_flags

    from lipsort.cli import parse_flags

    flag_values = {
        "config": config_flags.DEFINE_config_file("config", None, "Base config file (and overrides).",
                                                  lock_config=False),
        "sweep": flags.DEFINE_string("sweep", None, "The argument of the config file's get_sweep(arg)."),
        "seeds": flags.DEFINE_string("seeds", None, "Comma-separated seeds (default: the sweep's)."),
        "workdir": flags.DEFINE_string("workdir", None, "Root folder of the sweep's runs and tables."),
        "config_file": lambda: config_flags.get_config_filename(flags.FLAGS["config"]),
    }
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(lambda argv: main(argv, flag_values), flags_parser=parse_flags)


if __name__ == "__main__":
    _cli()
