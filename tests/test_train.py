"""The experiment runner: validation before training, resume, determinism, fail-fast."""
import json
import os

import numpy as np
import pytest

from conftest import tiny_abs
from lipsort import train
from lipsort import workdir as run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONTRACT_KEYS = {
    "experiment", "steps", "wall_time_s", "data_source", "lipschitz_constant",
    "lipschitz_upper_bound", "lipschitz_lower_bound",
}


def load_config(name, arg="quick"):
    from lipsort import config_loader

    return config_loader.load_config(name if arg is None else f"{name}:{arg}")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.activation", "softplus", "Unknown activation 'softplus'"),
        ("model.constraint", "frobenius", "Unknown constraint 'frobenius'"),
        ("model.group_size", 3, "group_size=3 does not divide"),
        ("model.lipschitz_constant", 0.0, "lipschitz_constant (K) must be a finite number > 0"),
        ("model.lipschitz_constant", -1.0, "lipschitz_constant (K) must be a finite number > 0"),
        ("experiment", "regress", "Unknown experiment 'regress'"),
        ("train.learning_rate", -1.0, "learning_rate must be a finite number > 0"),
        ("train.num_steps", 0, "num_steps must be an integer ≥ 1"),
        ("train.momentum", 1.5, "momentum must be a number in [0, 1)"),
        ("train.momentum", 0.9, "applies to optimizer 'sgd' only"),
        ("train.loss", "hinge", "Unknown fit loss 'hinge'"),
        ("data.source", "sin", "Unknown fit target 'sin'"),
    ],
)
def test_config_errors_are_reported_before_training(tmp_path, field, value, message):
    config = tiny_abs()
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    workdir = tmp_path / "run"
    with pytest.raises(train.ConfigError) as info:
        train.train_and_evaluate(config, str(workdir))
    assert message in str(info.value)
    assert not workdir.exists()  # nothing was written, let alone trained


def test_all_config_errors_are_reported_at_once(tmp_path):
    config = tiny_abs()
    config.model.activation = "softplus"
    config.train.batch_size = 0
    config.experiment = "nope"
    with pytest.raises(train.ConfigError) as info:
        train.validate_config(config)
    text = str(info.value)
    assert "Unknown activation" in text and "batch_size" in text and "Unknown experiment" in text


def _load_export(workdir):
    with np.load(os.path.join(workdir, "export.npz")) as data:
        return {k: data[k] for k in data.files}


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    config = tiny_abs()
    straight = train.train_and_evaluate(config, str(tmp_path / "a"))
    workdir = str(tmp_path / "b")
    assert train.train_and_evaluate(config, workdir, stop_after_step=6) is None
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = train.train_and_evaluate(config, workdir)
    assert resumed["resumed_from_step"] == 6
    # Bit-identical: same batches (a function of seed and step) and the same state.
    a, b = _load_export(tmp_path / "a"), _load_export(workdir)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for key in ("max_abs_error", "mse", "final_loss", "lipschitz_upper_bound", "steps"):
        assert straight[key] == resumed[key], key
    strip = lambda ms: [{k: v for k, v in m.items() if k != "elapsed_s"} for m in ms]
    assert strip(run_files.read_metrics(tmp_path / "a")) == strip(run_files.read_metrics(workdir))


def test_results_contract_and_files(tmp_path):
    results = train.train_and_evaluate(tiny_abs(6), str(tmp_path))
    assert CONTRACT_KEYS <= set(results)
    assert {"max_abs_error", "mse", "grad_norms"} <= set(results)
    assert results["lipschitz_upper_bound"] <= results["lipschitz_constant"]
    assert results["lipschitz_lower_bound"] <= results["lipschitz_upper_bound"]
    for name in ("config.json", "metrics.jsonl", "results.json", "export.npz", "export.json",
                 "fit.png", "grad_norms.png", "loss.png"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "config.json").read_text())["experiment"] == "fit"
    assert os.listdir(tmp_path / "checkpoints")
    meta = json.loads((tmp_path / "export.json").read_text())
    assert {"activation", "group_size", "norm", "lipschitz_constant", "layer_sizes"} <= set(meta)


def test_non_finite_loss_fails_fast_naming_the_step(tmp_path):
    config = tiny_abs()
    config.model.constraint = "none"
    config.model.activation = "relu"
    config.train.learning_rate = 1e30
    config.train.schedule = "constant"
    config.train.optimizer = "sgd"
    with pytest.raises(FloatingPointError, match=r"non-finite (loss|weights) .*step \d+"):
        train.train_and_evaluate(config, str(tmp_path))


def test_workdir_with_another_config_is_refused(tmp_path):
    train.train_and_evaluate(tiny_abs(3), str(tmp_path))
    other = tiny_abs(3)
    other.seed = 1
    with pytest.raises(train.ConfigError, match="different config"):
        train.train_and_evaluate(other, str(tmp_path))


def test_riemannian_adam_needs_riemannian_kernels():
    config = tiny_abs(3)
    config.train.optimizer = "riemannian_adam"
    with pytest.raises(train.ConfigError, match="needs config.model.constraint='bjorck' with "
                       "config.model.bjorck_training='riemannian'"):
        train.validate_config(config)
    config.model.bjorck_training = "riemannian"
    train.validate_config(config)


@pytest.mark.parametrize("optimizer, momentum, learning_rate", [("sgd", 0.9, 0.01), ("riemannian_adam", 0.0, 3e-3)])
def test_riemannian_training_through_the_runner(tmp_path, optimizer, momentum, learning_rate):
    config = tiny_abs(12)
    config.model.bjorck_training = "riemannian"
    config.train.optimizer = optimizer
    config.train.momentum = momentum
    config.train.learning_rate = learning_rate
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["lipschitz_upper_bound"] <= results["lipschitz_constant"]
    assert results["lipschitz_lower_bound"] <= results["lipschitz_upper_bound"]
    metrics = run_files.read_metrics(tmp_path)
    assert all(m["orthogonality_residual"] <= 5e-4 for m in metrics)
    assert "retraction_matmuls" in metrics[-1] and "retraction_low_rank" in metrics[-1]
    # The optimizer state (Riemannian Adam's scalar second moments too) survives a resume.
    workdir = str(tmp_path / "resumed")
    assert train.train_and_evaluate(config, workdir, stop_after_step=6) is None
    assert train.train_and_evaluate(config, workdir)["resumed_from_step"] == 6
    a, b = _load_export(tmp_path), _load_export(workdir)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_spectral_normalization_trains_and_updates_its_power_vector(tmp_path):
    # The power-iteration vector is state mutated in the forward pass inside the jitted
    # step; the certificate must hold whatever the estimate did.
    config = tiny_abs(4)
    config.model.constraint = "spectral"
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["lipschitz_upper_bound"] <= 1.0
    assert results["lipschitz_lower_bound"] <= results["lipschitz_upper_bound"]
