"""The command line end to end (a subprocess, as a user runs it)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, "-m", "lipsort.main", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )


def test_cli_quick_config_default_workdir(tmp_path):
    config = os.path.join(REPO, "configs", "toy_abs.py")
    proc = run_cli([f"--config={config}:quick", "--config.train.num_steps=20",
                    "--config.certify.search_steps=2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "toy_abs_quick").iterdir()  # runs/<config>/<timestamp>
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 20 and results["experiment"] == "fit"
    assert results["lipschitz_upper_bound"] <= 1.0
    config_json = json.loads((run_dir / "config.json").read_text())
    assert config_json["train"]["num_steps"] == 20  # the override is in the resolved config
    assert "ETA" in proc.stderr and "step 20/20" in proc.stderr  # the progress line


def test_cli_reports_config_error_before_training(tmp_path):
    config = os.path.join(REPO, "configs", "toy_abs.py")
    proc = run_cli([f"--config={config}:quick", f"--workdir={tmp_path / 'run'}",
                    "--config.model.group_size=3", "--config.model.widths=(8,8)"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "config error" in proc.stderr and "group_size=3 does not divide" in proc.stderr
    assert not (tmp_path / "run").exists()
