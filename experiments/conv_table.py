r"""Conv vs MLP at equal training time: certified ℓ2 robustness on full Fashion-MNIST.

    python experiments/conv_table.py                        # 720 s of training per model
    python experiments/conv_table.py --budget_s=60 --num_test=200 --strong_points=10   # smoke test

Trains, for the same wall-clock training budget each (``--budget_s``), the ℓ2 MLP of
configs/robust_fashion_mnist_l2.py (Björck GroupSort 784-1024×3-10) and the conv nets of
configs/robust_fashion_mnist_conv_l2.py (BCOP, and ``:aol``). Equal time: each model's
training rate is measured first (compiled train step, two timed chunks of 10 steps on this
machine), and its ``num_steps`` is set to budget × rate, so every learning-rate schedule
runs to its end. Each model is then an ordinary lipsort run in
runs/conv_table/<dataset>/<name>/ (a finished run of the same config is reused).

Evaluation on the first ``--num_test`` test images (the attacks on conv nets are the CPU
cost), with the strong attack of :func:`lipsort.tasks.classify.strong_attack` on
``--strong_points`` of them. Writes experiments/results/robustness_conv_<dataset>.md and
.png (accuracy vs ε). Refuses to write a table where certified ≤ PGD ≤ clean fails or a
certified point is broken.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

import robustness_table as rt  # noqa: E402

from lipsort import train  # noqa: E402
from lipsort.config_loader import load_config  # noqa: E402

# (name, config, label)
MODELS = (
    ("mlp_bjorck", "robust_{dataset}_l2", "MLP 784-1024×3, Björck, GroupSort"),
    ("conv_bcop", "robust_{dataset}_conv_l2", "Conv 16-32-64 + 256, BCOP, GroupSort"),
    ("conv_aol", "robust_{dataset}_conv_l2:aol", "Conv 16-32-64 + 256, AOL, GroupSort"),
)
CALIBRATION_CHUNK = 10


def training_rate(config) -> float:
    """Steps per second of ``config``'s compiled training step on this machine (the best of
    two timed chunks after a compiling one)."""
    task, spec = train.validate_config(config)
    ts = train.create_train_state(config, spec)
    run = jax.jit(train.make_chunk_runner(ts.graphdef, task.loss, task.sample_batch, ts.tx, jax.random.key(0),
                                          retracts=ts.model.retracts))
    state = ts.state
    steps = jax.numpy.arange(CALIBRATION_CHUNK)
    state, out = run(state, steps)
    jax.block_until_ready(out)
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        state, out = run(state, steps)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t)
    return CALIBRATION_CHUNK / best


def equal_time_config(spec: str, args, workdir: str):
    """``spec``'s config with ``num_steps`` = budget × its measured rate; a finished run in
    ``workdir`` keeps the step count it was calibrated to (its rate: steps / budget)."""
    config = load_config(spec)
    config.data.num_test = args.num_test
    config.eval.strong_attack.points = args.strong_points
    finished = os.path.join(workdir, "config.json")
    if os.path.exists(os.path.join(workdir, "results.json")):
        with open(finished) as f:
            steps = json.load(f)["train"]["num_steps"]
        rate = steps / args.budget_s
    else:
        rate = training_rate(config)
        steps = max(10, int(args.budget_s * rate))
    config.train.num_steps = steps
    config.train.log_every = max(1, steps // 20)
    config.train.checkpoint_every = max(1, steps // 4)
    return config, rate


def training_seconds(workdir: str) -> float:
    """The training loop's own time: the last ``elapsed_s`` of metrics.jsonl (from the run's
    start, so it includes data loading and compilation, not the final evaluation)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return float([json.loads(line) for line in f if line.strip()][-1]["elapsed_s"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    parser.add_argument("--budget_s", type=float, default=720.0, help="training seconds per model")
    parser.add_argument("--num_test", type=int, default=2000)
    parser.add_argument("--strong_points", type=int, default=50)
    parser.add_argument("--runs_dir", default=os.path.join(REPO, "runs", "conv_table"))
    parser.add_argument("--results_dir", default=os.path.join(REPO, "experiments", "results"))
    args = parser.parse_args()
    start = time.time()
    rows, rates = [], {}
    for name, config_name, label in MODELS:
        spec = config_name.format(dataset=args.dataset)
        workdir = os.path.join(args.runs_dir, args.dataset, name)
        config, rates[name] = equal_time_config(spec, args, workdir)
        print(f"{name}: {rates[name]:.2f} steps/s → {config.train.num_steps} steps in {args.budget_s:.0f} s",
              flush=True)
        result = rt.run(workdir, config)
        result["training_s"] = training_seconds(workdir)
        rt.check_ordering(name, result)
        rows.append((name, label, result, spec))
    write_table(args, rows, rates, time.time() - start)


def command(args) -> str:
    return (f"python experiments/conv_table.py --dataset={args.dataset} --budget_s={args.budget_s:g} "
            f"--num_test={args.num_test} --strong_points={args.strong_points}")


def write_table(args, rows, rates, wall_s: float) -> None:
    os.makedirs(args.results_dir, exist_ok=True)
    stem = f"robustness_conv_{args.dataset}"
    section = [(name, label, r) for name, label, r, _ in rows]
    rt.plot(args.dataset, {"l2": section}, os.path.join(args.results_dir, f"{stem}.png"))
    r0 = rows[0][2]
    lines = [
        f"# Conv vs MLP at equal training time: certified ℓ2 robustness on {args.dataset}", "",
        f"Command: `{command(args)}`", "",
        f"Hardware: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; "
        f"JAX {jax.__version__}; {time.strftime('%Y-%m-%d')}. Whole script: {wall_s / 60:.0f} min.", "",
        f"Data: {r0['data_source']}; {r0['num_train']} training images, the first {r0['num_test']} test images.", "",
        "Protocol: not the paper's (../shared/PAPER_SETTINGS.md: Li et al.'s ℓ2 protocol is 200 epochs of batch "
        "128 with Adam 1e-3 × 0.96235 per epoch, 10 % held out, the best epoch evaluated); here each model runs its "
        "config's short default (batch 256, Adam 1e-3 with a cosine schedule, margin 1.5, no validation split) cut "
        f"to an equal training time, and is scored on {args.num_test} test images.", "",
        f"Each model trained for {args.budget_s:.0f} s of measured step time (steps = budget × the rate of its "
        "compiled step on this machine, measured just before; the `time` column is the whole run, evaluation "
        "included):", "",
        "| model | config | calibrated steps/s | steps | training time (loop, incl. compilation) |",
        "|---|---|---|---|---|",
    ]
    for name, label, r, spec in rows:
        lines.append(f"| {label} | `{spec}` | {rates[name]:.2f} | {r['steps']} | {r['training_s']:.0f} s |")
    lines += [""] + [line.replace("full test split", f"the first {r0['num_test']} test images")
                     for line in rt.norm_section("l2", section)]
    lines += rt.strong_section({"l2": section})
    lines += ["Fashion-MNIST has no published Lipschitz-network reference we could verify "
              "(../shared/PAPER_SETTINGS.md); the variants are compared side by side here.", "",
              f"![accuracy vs ε]({stem}.png)", ""]
    with open(os.path.join(args.results_dir, f"{stem}.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
