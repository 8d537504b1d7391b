"""Image Wasserstein estimation: the critic against a (tiny) trained generator, the
generator found by config and reused, and the table script's summaries and checks."""
import json
import importlib.util
import os

import numpy as np
import pytest

from lipsort import train
from lipsort.tasks import gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(seed=0):
    from lipsort.config_loader import load_config

    config = load_config("wde_mnist:quick")
    config.seed = seed
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.data.num_eval = 40
    config.certify.search_steps = 1
    config.data.source = "bundled"  # pinned: a prepared tfds MNIST must not change the test
    g = config.generator
    g.data.source = "bundled"
    g.data.num_train = 128
    g.train.num_steps = 1
    g.train.critic_steps = 1
    g.train.log_every = 1
    g.train.checkpoint_every = 1
    g.eval.num_samples = 16
    g.certify.search_steps = 0
    return config


@pytest.fixture(scope="module")
def generator_base(tmp_path_factory):
    """A one-step generator, trained in-process where the wde runs will look for it."""
    base = str(tmp_path_factory.mktemp("generators"))
    config = _tiny()
    gan.train_gan(config.generator, gan.generator_dir(base, config.generator))
    return base


def test_image_wde_contract_and_generator_reuse(tmp_path, generator_base):
    # Björck only: spectral critics run in experiments/wde_table.py and tests/test_train.py.
    config = _tiny()
    config.generator_dir = generator_base
    gen_dir = gan.generator_dir(generator_base, config.generator)
    stamp = os.path.getmtime(os.path.join(gen_dir, "results.json"))
    results = train.train_and_evaluate(config, str(tmp_path / "wde"))
    assert os.path.getmtime(os.path.join(gen_dir, "results.json")) == stamp  # reused, not retrained
    for key in ("experiment", "steps", "wall_time_s", "data_source", "lipschitz_constant",
                "lipschitz_upper_bound", "lipschitz_lower_bound", "wasserstein_estimate",
                "exact_w1_samples", "true_w1"):
        assert key in results, key
    assert results["generator_dir"] == gen_dir and gen_dir in results["data_source"]
    assert results["lipschitz_upper_bound"] <= 1 + 1e-6
    assert results["wasserstein_estimate"] <= results["exact_w1_samples"]
    assert results["num_eval_samples"] == 40
    assert (tmp_path / "wde" / "critic.png").exists()


def test_image_wde_config_errors_come_before_any_work(tmp_path):
    config = _tiny()
    config.generator.data.pixel_range = (-1.0, 1.0)
    config.data.num_eval = 10**6
    config.generator_dir = str(tmp_path / "generators")
    with pytest.raises(train.ConfigError) as e:
        train.train_and_evaluate(config, str(tmp_path / "wde"))
    assert "pixel_range" in str(e.value)
    assert not os.path.exists(tmp_path / "generators") and not os.path.exists(tmp_path / "wde")


def _table_module():
    spec = importlib.util.spec_from_file_location("wde_table", os.path.join(REPO, "experiments", "wde_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_summaries_and_checks(tmp_path):
    table = _table_module()
    rows = []
    for i, (label, _, _) in enumerate(table.ACTIVATIONS):
        for b, (cname, _) in enumerate(table.CONSTRAINTS):
            for seed in range(3):
                # A seed effect shared by every cell (the seed's held-out samples) of 0.3 per
                # seed, and a small per-run wobble (±0.01) that differs between cells.
                wobble = 0.01 * ((i + seed + 2 * b) % 3 - 1)
                value = 1.0 + 0.1 * i + (0.5 if cname == "Björck" else 0.0) + 0.3 * seed + wobble
                rows.append({"activation": label, "constraint": cname, "seed": seed, "steps": 7,
                             "wasserstein_estimate": value, "exact_w1_samples": 9.0 + seed,
                             "lipschitz_upper_bound": 0.9999999, "wall_time_s": 3.0,
                             "data_source": "synthetic", "num_eval_samples": 40})
    cells = table.summarize(rows)
    assert cells[("ReLU", "Björck")]["mean"] == pytest.approx(np.mean([r["wasserstein_estimate"] for r in rows
                                                                        if r["activation"] == "ReLU"
                                                                        and r["constraint"] == "Björck"]))
    assert cells[("ReLU", "Björck")]["std"] == pytest.approx(0.3, abs=0.02)
    lines = table.checks(cells)
    assert not any(" NO" in line for line in lines if "≈" not in line), lines
    # Means 0.1 apart, a seed spread of 0.3 shared by both cells: the paired test (same samples
    # per seed) separates them, Welch's test on the same numbers cannot.
    line = next(line for line in lines if line.startswith("- GroupSort(4) ≥ MaxMin"))
    assert "paired t-test" in line and "separated by the seeds" in line, line
    assert any(line.startswith("- GroupSort(9) ≈ GroupSort(4) under Björck (the poster: 2.31 both): NO")
               for line in lines), lines
    # Each run scored on its own samples (different exact OT per cell): no pairing, Welch.
    index = {label: i for i, (label, _, _) in enumerate(table.ACTIVATIONS)}
    unpaired = table.summarize([dict(r, exact_w1_samples=r["exact_w1_samples"] + 0.001 * index[r["activation"]])
                                for r in rows])
    line = next(line for line in table.checks(unpaired) if line.startswith("- GroupSort(4) ≥ MaxMin"))
    assert "Welch" in line and "within seed noise" in line, line
    line = next(line for line in table.checks(unpaired) if line.startswith("- GroupSort(9) ≈ GroupSort(4)"))
    assert line.startswith("- GroupSort(9) ≈ GroupSort(4) under Björck (the poster: 2.31 both): yes"), line
    # Break one ordering and one certificate: the checks must say so.
    for r in rows:
        if r["activation"] == "MaxMin" and r["constraint"] == "Björck":
            r["wasserstein_estimate"] = 0.1
        if r["activation"] == "ReLU":
            r["lipschitz_upper_bound"] = 1.01
    lines = table.checks(table.summarize(rows))
    assert any(line.startswith("- Björck ≥ Spectral for MaxMin: NO") for line in lines)
    assert any(line.startswith("- Every lipschitz_upper_bound ≤ 1: NO") for line in lines)
    table.write_markdown(str(tmp_path / "t.md"), "mnist", rows, table.summarize(rows), ["cmd"],
                         table.base_config("mnist", steps=7, quick=True))
    text = (tmp_path / "t.md").read_text()
    assert "| ReLU | Spectral |" in text and "0.95 ± 0.01" in text and "Command: `cmd`" in text
    assert "Björck layers trained in retraction mode" in text and "critic training steps: 7" in text
    assert "## Learning curves" not in text  # no run recorded a curve.jsonl
    table.plot(str(tmp_path / "t.png"), "mnist", table.summarize(rows))
    assert (tmp_path / "t.png").exists()


def test_table_merges_only_earlier_runs_made_against_the_same_samples(tmp_path):
    table = _table_module()

    def run(activation, seed, exact=9.0, date="2026-12-03", curve=True):
        return {"activation": activation, "constraint": "Björck", "seed": seed, "steps": 7, "data_source": "d",
                "generator_dir": "runs/generators/g", "num_eval_samples": 40, "exact_w1_samples": exact,
                "wasserstein_estimate": 1.0 + seed, "lipschitz_upper_bound": 0.99, "wall_time_s": 3.0,
                "date": date, "curve": [{"step": 4, "wasserstein_estimate": 0.5 + seed,
                                         "wasserstein_estimate_train": 0.4}] if curve else []}

    now = [run("ReLU", 1), run("MaxMin", 1)]
    earlier = [run("ReLU", 0, date="2026-12-02"), run("ReLU", 1, date="2026-12-02"),  # seed 1 is run now
               run("MaxMin", 0, exact=9.5, date="2026-12-02"),  # another generator: refused
               {**run("MaxMin", 2, curve=False), "steps": 8, "date": None}]  # another budget: refused
    exact_now = {0: 9.0 * (1 + 1e-8), 2: 9.0}.__getitem__  # seed → the held-out OT cost recomputed now
    rows, refused = table.merge_rows(now, earlier, exact_now)
    assert [(r["activation"], r["seed"], r["date"]) for r in rows] == [
        ("ReLU", 1, "2026-12-03"), ("MaxMin", 1, "2026-12-03"), ("ReLU", 0, "2026-12-02")]
    assert len(refused) == 2 and "seed 0 stored 9.5, 9.00000009 now" in refused[0] and "steps 8 ≠ 7" in refused[1]
    assert table.run_dates(rows) == "2026-12-02: seeds [0]; 2026-12-03: seeds [1]"
    curves = table.run_curves(rows)
    assert [len(runs) for runs in curves.values()] == [2, 1]
    lines = table.curve_lines("c.png", rows)
    assert "| ReLU, Björck | 2 | 1.000 |" in lines and "| MaxMin, Björck | 1 | 1.500 |" in lines
    assert table.plot_run_curves(str(tmp_path / "c.png"), rows) and (tmp_path / "c.png").exists()
    assert table.command_lines(["a", "b"])[1:] == ["`a`  ", "`b`  "]


def test_paper_protocol_runs_and_reports_the_training_sample_estimate(tmp_path, generator_base):
    """wde_mnist:paper,quick: the paper's schedule, clipping, unrolled Björck ×27 and the
    training-sample estimate, run against the module's one-step generator."""
    from lipsort.config_loader import load_config

    paper = load_config("wde_mnist:paper,quick")
    assert (paper.train.schedule, paper.train.grad_clip_norm, tuple(paper.data.pixel_range)) == ("step", 0.1, (-1.0, 1.0))
    assert (paper.model.bjorck_training, paper.model.bjorck_iters, paper.eval.train_batches) == ("unrolled", 27, 2)
    assert load_config("wde_mnist:paper").train.num_steps == 16384
    config = _tiny()  # the fixture's generator and data ([0, 1] pixels), the paper's critic training
    config.train, config.model, config.eval = paper.train, paper.model, paper.eval
    config.generator_dir = generator_base
    config.train.num_steps = config.train.log_every = config.train.checkpoint_every = 2
    results = train.train_and_evaluate(config, str(tmp_path / "wde"))
    assert results["steps"] == 2 and isinstance(results["wasserstein_estimate_train"], float)
    assert results["lipschitz_upper_bound"] <= 1.0


def test_table_learning_curves_are_tabulated(tmp_path):
    """curve_lines: the mean held-out estimate of each cell at the steps every seed recorded."""
    table = _table_module()
    rows = []
    for seed in range(2):
        workdir = tmp_path / f"seed_{seed}"
        workdir.mkdir()
        with open(workdir / "curve.jsonl", "w") as f:
            for step in (4, 8):
                f.write(json.dumps({"step": step, "wasserstein_estimate": step / 4 + seed}) + "\n")
        rows.append({"activation": "MaxMin", "constraint": "Björck", "workdir": str(workdir)})
    lines = table.curve_lines("c.png", rows)
    assert "| step 4 | step 8 |" in lines[2] and "| MaxMin, Björck | 2 | 1.500 | 2.500 |" in lines
    assert "![learning curves](c.png)" in lines
