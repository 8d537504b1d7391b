"""Runs you can trust: locks, verified checkpoints, early validation, strict JSON, reruns,
certificates that never contradict themselves, and one-line errors."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import tiny_abs
from lipsort import certify, train
from lipsort import workdir as run_files
from lipsort.config_loader import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _strict_load(path):
    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant} in {path}")

    with open(path) as f:
        return [json.loads(line, parse_constant=reject) for line in f if line.strip()] if path.endswith(".jsonl") \
            else json.load(f, parse_constant=reject)


def _main(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "lipsort.main", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


# --- locks -----------------------------------------------------------------------------------


def test_a_second_run_on_a_busy_workdir_stops_at_once(tmp_path):
    workdir = str(tmp_path / "run")
    first = subprocess.Popen(
        [sys.executable, "-m", "lipsort.main", "--config=configs/toy_abs.py:quick", f"--workdir={workdir}",
         "--config.train.num_steps=300", "--config.train.log_every=100", "--config.train.checkpoint_every=300"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        lock = os.path.join(workdir, run_files.LOCK)
        deadline = time.time() + 120
        while time.time() < deadline and not (os.path.exists(lock) and open(lock).read().strip()):
            time.sleep(0.2)
        second = _main("--config=configs/toy_abs.py:quick", f"--workdir={workdir}")
        assert second.returncode == 2, second.stderr[-2000:]
        last = second.stderr.strip().splitlines()[-1]
        assert f"in use by another run (pid {first.pid})" in last and "Traceback" not in second.stderr
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    steps = [m["step"] for m in run_files.read_metrics(workdir)]
    assert steps == sorted(steps)  # one writer


# --- checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped after its checkpoints at steps 6 and 12 (of 18), and the straight run."""
    base = tmp_path_factory.mktemp("ckpt")
    straight = train.train_and_evaluate(tiny_abs(18), str(base / "straight"))
    workdir = str(base / "stopped")
    assert train.train_and_evaluate(tiny_abs(18), workdir, stop_after_step=12) is None
    return base, workdir, straight


def _copy(src, dst):
    subprocess.run(["cp", "-r", src, dst], check=True)
    return dst


def _largest_file(folder):
    files = [p for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "delete_metadata", "empty_step"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(interrupted, damage, caplog):
    base, stopped, straight = interrupted
    workdir = _copy(stopped, str(base / f"damaged_{damage}"))
    step_dir = os.path.join(workdir, "checkpoints", "12")
    if damage == "flip_bytes":
        path = _largest_file(step_dir)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            chunk = f.read(4)
            f.seek(os.path.getsize(path) // 2)
            f.write(bytes(b ^ 0xFF for b in chunk))
    elif damage == "truncate":
        path = _largest_file(step_dir)
        os.truncate(path, os.path.getsize(path) // 2)
    elif damage == "delete_metadata":
        for path in glob.glob(os.path.join(step_dir, "**", "_METADATA"), recursive=True):
            os.remove(path)
    else:
        subprocess.run(["rm", "-rf", step_dir], check=True)
        os.makedirs(step_dir)
    results = train.train_and_evaluate(tiny_abs(18), workdir)
    assert results["resumed_from_step"] == 6 and results["steps"] == 18
    # Same final function as the uninterrupted run: nothing trained on damaged state.
    assert results["max_abs_error"] == straight["max_abs_error"]
    # The damaged checkpoint was set aside, not deleted.
    assert glob.glob(os.path.join(workdir, "checkpoints", "unusable-12-*"))


def test_a_checkpoint_of_another_model_is_never_resumed(interrupted):
    base, stopped, _ = interrupted
    workdir = _copy(stopped, str(base / "no_config"))
    os.remove(os.path.join(workdir, "config.json"))
    other = tiny_abs(18)
    other.model.widths = (16, 16)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(run_files.CheckpointError, match="no usable checkpoint .*written by a run with another config"):
        train.train_and_evaluate(other, workdir)
    assert not os.path.exists(os.path.join(workdir, "export.json"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before  # nothing moved or lost


# --- reruns ----------------------------------------------------------------------------------


def test_reruns_of_a_finished_run(tmp_path):
    workdir = str(tmp_path / "run")
    first = train.train_and_evaluate(tiny_abs(6), workdir)
    mtime = os.path.getmtime(os.path.join(workdir, "results.json"))
    assert train.train_and_evaluate(tiny_abs(6), workdir) == first  # nothing redone
    assert os.path.getmtime(os.path.join(workdir, "results.json")) == mtime
    longer = tiny_abs(12)
    with pytest.raises(train.ConfigError, match=r"differs in: train.num_steps.*--restart"):
        train.train_and_evaluate(longer, workdir)
    evaluation = tiny_abs(6)
    evaluation.certify.search_steps = 3
    again = train.train_and_evaluate(evaluation, workdir)
    assert again["reevaluated"]["changed_fields"] == {"certify.search_steps": [2, 3]}
    assert again["max_abs_error"] == first["max_abs_error"] and again["resumed_from_step"] == 6
    assert os.path.exists(os.path.join(workdir, again["reevaluated"]["previous_results"]))
    restarted = train.train_and_evaluate(longer, workdir, restart=True)
    assert restarted["steps"] == 12 and restarted["resumed_from_step"] is None
    moved = glob.glob(workdir + ".previous-*")
    assert len(moved) == 1 and os.path.exists(os.path.join(moved[0], "results.json"))


# --- validation before training --------------------------------------------------------------


@pytest.mark.parametrize("config_name, field, value, message", [
    ("toy_abs", "data.grid_size", 0, "grid_size (the evaluation grid) must be an integer ≥ 2"),
    ("two_moons", "data.num_test", 0, "num_test must be an integer ≥ 1"),
    ("two_moons", "data.num_train", 0, "num_train must be an integer ≥ 2"),
    ("two_moons", "model.lipschitz_constant", 1e39, "so the exported float32 weights stay finite"),
    ("robust_mnist_l2", "data.num_train", 100000, "num_train=100000 but bundled"),
    ("robust_mnist_l2", "data.num_train", 1, "cannot train a 10-class classifier"),
    ("robust_mnist_l2", "data.data_dir", "/no/such/folder", "data_dir '/no/such/folder' does not exist"),
])
def test_fields_are_checked_before_training(tmp_path, config_name, field, value, message):
    config = load_config(f"{config_name}:quick")
    if config_name.startswith("robust") and field != "data.data_dir":
        config.data.source = "bundled"
    section, _, name = field.rpartition(".")
    config[section][name] = value
    with pytest.raises(train.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# --- divergence and strict JSON --------------------------------------------------------------


def test_divergence_is_flagged_and_every_file_is_strict_json(tmp_path):
    config = tiny_abs(12)
    config.model.bjorck_training = "retraction"
    config.train.learning_rate = 1e6
    config.train.divergence_patience = 10_000
    results = train.train_and_evaluate(config, str(tmp_path))
    assert any("off the orthonormal manifold" in w for w in results["warnings"])
    for name in ("results.json", "metrics.jsonl", "config.json", "export.json"):
        _strict_load(str(tmp_path / name))
    assert results["lipschitz_lower_bound"] <= results["lipschitz_upper_bound"]
    # The stop after `patience` steps, on the check itself (no second training run).
    from lipsort.models import MLPSpec

    spec = MLPSpec(in_features=1, widths=(8,), out_features=1, bjorck_training="retraction")
    warnings = []
    check = train.make_check("w", spec, 5, warnings)
    state = ({"kernel": np.zeros(2)},)
    check(0, 3, np.zeros(3), {"orthogonality_residual": np.array([1.0, np.inf, 1.0])}, state)
    assert len(warnings) == 1
    with pytest.raises(train.DivergenceError, match="stayed above retraction_tol"):
        check(3, 6, np.zeros(3), {"orthogonality_residual": np.array([1.0, 1.0, 1.0])}, state)


def test_a_retraction_drift_far_above_its_regime_is_warned_once():
    from lipsort.models import MLPSpec

    spec = MLPSpec(in_features=1, widths=(8,), out_features=1, bjorck_training="retraction")
    warnings = []
    check = train.make_check("w", spec, 10_000, warnings)
    state = ({"kernel": np.zeros(2)},)
    n = train.DRIFT_PATIENCE

    def chunk(start, drifts):
        aux = {"retraction_drift": np.asarray(drifts, float), "retraction_steps": np.full(len(drifts), 12.0),
               "orthogonality_residual": np.zeros(len(drifts))}
        check(start, start + len(drifts), np.zeros(len(drifts)), aux, state)

    chunk(0, [0.03] * n + [2.0] * (n - 1) + [0.05])  # the mode's regime, then a streak one step short
    assert warnings == []
    chunk(2 * n, [3.0] * n + [4.0] * n)
    assert len(warnings) == 1
    assert f"steps {2 * n + 1}–{3 * n}" in warnings[0] and "median 3" in warnings[0]
    assert "12.0 Björck steps per update" in warnings[0] and "riemannian_adam" in warnings[0]
    # A run already in riemannian mode is told what it can still change.
    riemannian = MLPSpec(in_features=1, widths=(8,), out_features=1, bjorck_training="riemannian")
    warnings.clear()
    check = train.make_check("w", riemannian, 10_000, warnings)
    chunk(0, [0.5] * n)
    assert len(warnings) == 1 and "riemannian_adam" not in warnings[0] and "learning_rate" in warnings[0]


def test_chance_accuracy_is_flagged():
    from lipsort.tasks.classify import chance_warnings

    labels = np.array([0] * 70 + [1] * 30)
    assert chance_warnings(0.705, labels)[0] and "at chance" in chance_warnings(0.705, labels)[1][0]
    assert chance_warnings(0.9, labels) == (False, [])


def test_strict_json_replaces_non_finite_values(tmp_path):
    path = str(tmp_path / "x.json")
    run_files.write_json(path, {"a": float("nan"), "b": {"c": [1.0, float("inf")]}, "d": 2})
    data = _strict_load(path)
    assert data == {"a": None, "b": {"c": [1.0, None]}, "d": 2, "non_finite": ["a", "b.c.1"]}


# --- certificates ----------------------------------------------------------------------------


def test_lower_bound_is_float64_and_a_contradiction_is_a_bug(monkeypatch):
    import jax
    from flax import nnx

    from lipsort import export
    from lipsort.models import LipschitzMLP, MLPSpec

    model = LipschitzMLP(MLPSpec(in_features=4, widths=(16, 16), out_features=3, constraint="bjorck",
                                 group_size=2), rngs=nnx.Rngs(0))
    exported = export.export_model(model)
    x0 = jax.random.normal(jax.random.key(0), (8, 4))
    lower = certify.export_lower_bound(exported, x0, jax.random.key(1), steps=10)
    assert 0.5 < lower <= certify.lipschitz_upper_bound(exported)
    monkeypatch.setattr(certify, "lipschitz_upper_bound", lambda e: 0.5)
    with pytest.raises(certify.CertificateContradiction, match="this is a bug"):
        certify.export_lower_bound(exported, x0, jax.random.key(1), steps=10)


# --- one-line errors -------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--config=configs/no_such.py"], "No such file or directory"),
    (["--config=configs/toy_abs.py:bogus"], "takes the argument [quick]; got 'bogus'"),
    (["--config=configs/toy_abs.py:quick", "--config.model.activaton=relu"], "no such config field 'activaton'"),
    (["--config=configs/toy_abs.py:quick", "--config.model.activation=softplus"], "Unknown activation 'softplus'"),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, fragment):
    proc = _main(*args, f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lipsort: ") and fragment in last, proc.stderr[-1500:]
    assert not (tmp_path / "run").exists()


def test_an_unwritable_workdir_is_one_line(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, 0o500)
    try:
        if os.access(parent, os.W_OK):  # root writes anywhere: a path under a file fails the same way
            parent = tmp_path / "a_file"
            parent.write_text("")
        proc = _main("--config=configs/toy_abs.py:quick", f"--workdir={parent / 'run'}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "cannot use workdir" in proc.stderr.strip().splitlines()[-1]
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def test_debug_shows_the_traceback(tmp_path):
    proc = _main("--config=configs/toy_abs.py:quick", "--config.train.num_steps=0",
                 f"--workdir={tmp_path / 'run'}", env={"LIPSORT_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_truncated_gzip_idx_file_is_a_clear_error(tmp_path):
    from lipsort import data

    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    data.write_idx(path, np.zeros((3, 28, 28), np.uint8))
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.read_idx(path)
    with open(path, "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.read_idx(path)


def test_a_failed_run_and_ctrl_c_are_one_line(tmp_path):
    import signal

    diverged = _main("--config=configs/toy_abs.py:quick", f"--workdir={tmp_path / 'nan'}",
                     "--config.model.constraint=none", "--config.model.activation=relu",
                     "--config.train.optimizer=sgd", "--config.train.schedule=constant",
                     "--config.train.learning_rate=1e30")
    assert diverged.returncode == 1 and "Traceback" not in diverged.stderr
    assert diverged.stderr.strip().splitlines()[-1].startswith("lipsort: FloatingPointError: non-finite")
    workdir = str(tmp_path / "interrupted")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lipsort.main", "--config=configs/toy_abs.py:quick", f"--workdir={workdir}",
         "--config.train.num_steps=100000", "--config.train.log_every=100"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Interrupt the training loop itself: wait for its first progress record.
        metrics = os.path.join(workdir, run_files.METRICS)
        deadline = time.time() + 120
        while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Ours is one line; orbax may still log its own interrupted background save after it.
    assert proc.returncode == 130
    ours = [line for line in stderr.splitlines() if line.startswith("lipsort: ")]
    assert ours and "interrupted; run the same command again to resume" in ours[-1]
