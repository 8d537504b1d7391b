"""Sweeps as data (lipsort.sweep) and seeds trained together in one vmapped program."""
import dataclasses
import glob
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from lipsort import sweep, train
from lipsort import workdir as run_files
from lipsort.config_loader import load_config
from lipsort.validation import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_critic(num_steps=12):
    """A toy W1 critic cut to seconds, with a learning curve every 4 steps."""
    config = load_config("toy_wde:translate,quick")
    config.model.widths = (8, 8)
    config.train.num_steps = num_steps
    config.train.log_every = 4
    config.train.checkpoint_every = 4
    config.data.num_eval = 64
    config.certify.search_steps = 1
    config.eval = ml_collections.ConfigDict({"curve_every": 4})
    return config


def test_vmapped_seeds_match_runs_one_by_one_and_resume_bit_for_bit(tmp_path):
    config, seeds = tiny_critic(), (0, 1)
    alone = train.train_and_evaluate(train.seed_configs(config, [1])[0], str(tmp_path / "alone1"))
    together = train.train_seeds(config, seeds, [str(tmp_path / f"together{s}") for s in seeds])
    assert train.can_vmap_seeds(config) is None
    assert together[1]["trained_with_seeds"] == [0, 1] and "trained_with_seeds" not in alone
    # Batched matmuls may round differently from single ones: equal up to float32 noise.
    for key in ("wasserstein_estimate", "final_loss", "lipschitz_upper_bound"):
        assert together[1][key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
    assert together[0]["wasserstein_estimate"] != together[1]["wasserstein_estimate"]  # really two seeds

    # The learning curve: every curve_every steps, its last point the final estimate.
    curve = run_files.read_metrics(str(tmp_path / "together1"), run_files.CURVE)
    assert [r["step"] for r in curve] == [4, 8, 12]
    assert curve[-1]["wasserstein_estimate"] == together[1]["wasserstein_estimate"]

    # Killed after the checkpoint at step 8, resumed: the same numbers as the straight run.
    dirs = [str(tmp_path / f"stopped{s}") for s in seeds]
    assert train.train_seeds(config, seeds, dirs, stop_after_step=8) == [None, None]
    assert [r["step"] for r in run_files.read_metrics(dirs[0], run_files.CURVE)] == [4, 8]
    resumed = train.train_seeds(config, seeds, dirs)
    for r, t in zip(resumed, together):
        assert r["resumed_from_step"] == 8
        assert r["wasserstein_estimate"] == t["wasserstein_estimate"] and r["final_loss"] == t["final_loss"]
    assert [r["step"] for r in run_files.read_metrics(dirs[0], run_files.CURVE)] == [4, 8, 12]


def test_seeds_train_one_by_one_where_vmap_does_not_fit():
    moons = load_config("two_moons:quick")
    assert "depends on config.seed" in train.can_vmap_seeds(moons)
    gan = load_config("gan_mnist:quick")
    assert "own trainer" in train.can_vmap_seeds(gan)
    retracting = tiny_critic()
    retracting.model.bjorck_training = "riemannian"
    assert "slower under vmap" in train.can_vmap_seeds(retracting)


def test_sweep_runs_reuses_finished_runs_and_retrains_changed_ones(tmp_path):
    config = tiny_critic()
    grid = sweep.Sweep(tuple(sweep.options("model.activation", ["group_sort", "full_sort"], ["GroupSort(2)", "FullSort"])),
                       seeds=(0, 1), metrics=("wasserstein_estimate", "lipschitz_upper_bound"),
                       curve_metrics=("wasserstein_estimate",))
    root = str(tmp_path / "sweep")
    rows = sweep.run(config, grid, root, command="test")
    assert [(r["cell"], r["seed"]) for r in rows] == [("GroupSort(2)", 0), ("GroupSort(2)", 1), ("FullSort", 0),
                                                      ("FullSort", 1)]
    assert all(r["lipschitz_upper_bound"] <= 1 + 1e-6 for r in rows)
    table = open(os.path.join(root, sweep.TABLE_MD)).read()
    mean = np.mean([r["wasserstein_estimate"] for r in rows if r["cell"] == "FullSort"])
    assert f"| FullSort | {mean:.4g} ± " in table
    assert os.path.exists(os.path.join(root, sweep.CURVES_PNG))
    stored = json.load(open(os.path.join(root, sweep.SWEEP_JSON)))
    assert stored["rows"] == rows

    results = os.path.join(root, "fullsort", "seed_1", run_files.RESULTS)
    before = os.path.getmtime(results)
    assert sweep.run(config, grid, root) == rows  # finished and unchanged: reused, nothing trained
    assert os.path.getmtime(results) == before

    config.train.learning_rate *= 2  # a training field: the stored runs are not this sweep's
    again = sweep.run(config, dataclasses.replace(grid, cells=grid.cells[1:]), root)
    assert glob.glob(os.path.join(root, "fullsort", "seed_1.previous-*", run_files.RESULTS))
    assert again[1]["wasserstein_estimate"] != rows[3]["wasserstein_estimate"]


def test_sweep_definitions_are_checked_before_anything_trains(tmp_path):
    config = tiny_critic()
    with pytest.raises(ConfigError, match="no field 'model.activaton'"):
        sweep.run(config, sweep.Sweep((sweep.Cell("typo", {"model.activaton": "relu"}),)), str(tmp_path))
    bad_group = sweep.Sweep((sweep.Cell("fine", {}), sweep.Cell("GroupSort(3)", {"model.group_size": 3})))
    with pytest.raises(ConfigError, match="(?s)cell 'GroupSort\\(3\\)'.*divide"):
        sweep.run(config, bad_group, str(tmp_path))
    assert not os.path.exists(tmp_path / "fine")  # the valid cell did not train first
    with pytest.raises(ValueError, match="both set model.activation"):
        sweep.product(sweep.options("model.activation", ["relu"]), sweep.options("model.activation", ["abs"]))
    with pytest.raises(ValueError, match="distinct names"):
        sweep.Sweep((sweep.Cell("A b", {}), sweep.Cell("a-B", {})))
    with pytest.raises(ConfigError, match="distinct integers"):
        sweep.with_seeds(sweep.Sweep((sweep.Cell("a", {}),)), "1,1")
    assert sweep.with_seeds(sweep.Sweep((sweep.Cell("a", {}),)), "3,4").seeds == (3, 4)


def test_wde_configs_offer_the_table_and_the_modes_sweeps():
    from lipsort.config_loader import load_module

    module = load_module("wde_mnist")
    table = module.get_sweep("table")
    assert len(table.cells) == 10 and table.seeds == (0, 1, 2)
    assert table.cells[-1].name == "GroupSort(9), Björck"
    modes = module.get_sweep("modes")
    assert {c.overrides["model.bjorck_training"] for c in modes.cells} == {"unrolled", "riemannian", "retraction"}
    config = load_config("wde_mnist:paper,quick")
    config.data.source = config.generator.data.source = "bundled"
    riemannian = [c for c in modes.cells if c.overrides["model.bjorck_training"] == "riemannian"][:1]
    # Riemannian Adam is valid with riemannian-mode Björck layers only: the cell sets both.
    [(_, cell_config)] = sweep.prepare_cells(config, dataclasses.replace(modes, cells=tuple(riemannian)))
    assert cell_config.train.optimizer == "riemannian_adam"
    assert [c.name for c in module.get_sweep("riemannian").cells][0] == "MaxMin, riemannian"
    # table_riemannian: the Björck cells (only) train in riemannian mode; every cell validates.
    cpu_table = module.get_sweep("table_riemannian")
    assert [c.name for c in cpu_table.cells] == [c.name for c in table.cells]
    # Each validation loads the data and the generator: two cells stand for the ten (CI time).
    maxmin = dataclasses.replace(cpu_table, cells=tuple(c for c in cpu_table.cells if c.name.startswith("MaxMin")))
    prepared = dict((c.name, cfg) for c, cfg in sweep.prepare_cells(config, maxmin))
    # flip: one difference from the paper's protocol per cell, on the default config; all valid.
    flip_sweep = module.get_sweep("flip")
    assert len(flip_sweep.cells) == 12
    pixel_cells = dataclasses.replace(flip_sweep, cells=tuple(c for c in flip_sweep.cells if "pixels" in c.name))
    flip = dict((c.name, cfg) for c, cfg in sweep.prepare_cells(load_config("wde_mnist:quick"), pixel_cells))
    assert len(flip) == 2 and flip["MaxMin, pixels [-1, 1]"].generator.data.pixel_range == (-1.0, 1.0)
    assert prepared["MaxMin, Björck"].train.optimizer == "riemannian_adam"
    assert prepared["MaxMin, Spectral"].train.optimizer == "adam"
    with pytest.raises(ValueError, match="valid sweeps are: table, table_riemannian, modes, riemannian, flip"):
        module.get_sweep("nope")


def test_sweep_command_line_errors_are_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "lipsort.sweep", "--config=configs/gan_mnist.py", "--sweep=x",
                           f"--workdir={tmp_path}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "defines no get_sweep" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with pytest.raises(ConfigError, match="Unknown sweep 'nope'"):
        sweep.get_sweep("configs/wde_mnist.py", "nope")


def test_toy_configs_offer_the_sweeps_of_the_toy_figures():
    """experiments/toy_figures.py's parts are sweeps of the configs: every cell validates."""
    from lipsort.config_loader import load_module

    for name, arg, count in (("toy_abs", "activations", 10), ("toy_wde", "activations", 10), ("two_moons", "losses", 2)):
        the_sweep = load_module(name).get_sweep(arg)
        assert len(the_sweep.cells) == count and the_sweep.seeds == (0,)
        assert len(sweep.prepare_cells(load_config(f"{name}:quick"), the_sweep)) == count
    names = [c.name for c in load_module("toy_abs").get_sweep("activations").cells]
    assert names[0] == "bjorck, relu" and "spectral, group_sort(4)" in names
    with pytest.raises(ValueError, match="valid sweeps are: activations"):
        load_module("toy_wde").get_sweep("table")


def test_linf_configs_offer_the_screen_sweep_and_tables_read_nested_results():
    """The ℓ∞ screen: one change to the protocol per cell, every cell valid on both data sets;
    its table reads the certified accuracy at ε out of results.json's nested record."""
    from lipsort.config_loader import load_module

    for name in ("robust_mnist_linf", "robust_fashion_mnist_linf"):
        screen = load_module(name).get_sweep("screen")
        assert screen.cells[0].name == "protocol" and screen.cells[0].overrides == {}
        assert "certified_accuracy/0.1" in screen.metrics
    config = load_config("robust_mnist_linf:paper,quick")
    prepared = dict((c.name, cfg) for c, cfg in sweep.prepare_cells(config, screen))
    assert prepared["protocol"].train.optimizer == "aggmo"
    assert prepared["Adam 1e-4"].train.optimizer == "adam" and prepared["Adam 1e-4"].train.learning_rate == 1e-4
    assert prepared["GroupSort(4)"].model.group_size == 4
    assert prepared["ball projection"].model.linf_projection == "ball"
    result = {"certified_accuracy": {"0.1": 0.58, "0.05": 0.71}, "clean_accuracy": 0.82}
    assert sweep.metric_value(result, "certified_accuracy/0.1") == 0.58
    assert sweep.metric_value(result, "clean_accuracy") == 0.82
    assert sweep.metric_value(result, "certified_accuracy/0.3") is None
    assert sweep.metric_value(result, "clean_accuracy/0.1") is None
    with pytest.raises(ValueError, match="valid sweeps are: screen"):
        load_module("robust_mnist_linf").get_sweep("table")
