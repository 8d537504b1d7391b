r"""Does fast Björck training change the answer? Unrolled vs riemannian vs retraction.

    python experiments/wde_modes.py --dataset=mnist --steps=512 --width=252
    python experiments/wde_modes.py --dataset=mnist --quick        # a smoke run

Runs the ``modes`` sweep of configs/wde_<dataset>.py:paper (configs/common.py:wde_sweep:
MaxMin, GroupSort(4), GroupSort(9) under Björck × bjorck_training ∈ {unrolled (the
paper's: gradient through 27 iterations), riemannian (tangent gradients + Riemannian
Adam), retraction (Adam, then a retraction)}, 3 seeds vmapped per cell) with
:mod:`lipsort.sweep`, the paper's protocol otherwise (batch 64, Adam 1e-3, clipping 0.1,
pixels in [−1, 1]), cut to ``--steps`` updates and a critic of ``--width`` units per hidden
layer so that unrolled Björck is affordable on 2 CPU cores (at 720 units it costs ~2.8 s
per update). Learning curves every ``--curve-every`` steps.

Writes experiments/results/wde_modes_<dataset>.md (per activation: each mode's held-out
and training-sample estimates, mean ± std over seeds, the difference to unrolled in units
of its standard error, time per update) and wde_modes_<dataset>.png (the learning curves).
A mode "gives unrolled's answer" when its mean is within two standard errors of the
difference (Welch) of unrolled's at the end of training.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import logging  # noqa: E402

from configs import common  # noqa: E402
from lipsort import sweep as sweeps  # noqa: E402
from lipsort import workdir as run_files  # noqa: E402
from lipsort.config_loader import load_config  # noqa: E402

MODES = [name for name, _ in common.WDE_MODES]
METRICS = ("wasserstein_estimate", "wasserstein_estimate_train")


def base_config(dataset: str, steps: int, width: int, curve_every: int, quick: bool):
    config = load_config(f"wde_{dataset}:paper" + (",quick" if quick else ""))
    if dataset == "mnist":
        config.data.source = config.generator.data.source = "bundled"  # the offline data, pinned
    if not quick:
        config.model.widths = (width, width)
        config.train.num_steps = steps
        config.train.log_every = curve_every
        config.train.checkpoint_every = max(curve_every, steps // 4)
        config.eval.curve_every = curve_every
    return config


def update_seconds(workdir: str) -> float | None:
    """Seconds per update of the program that trained ``workdir`` (all its seeds together):
    the time between the first and last logged steps, less the curve evaluations."""
    metrics = run_files.read_metrics(workdir)
    curve = run_files.read_metrics(workdir, run_files.CURVE)
    if len(metrics) < 2:
        return None
    first, last = metrics[0], metrics[-1]
    evals = sum(r.get("curve_eval_s", 0.0) for r in curve if first["step"] < r["step"] <= last["step"])
    return (last["elapsed_s"] - first["elapsed_s"] - evals) / (last["step"] - first["step"])


def welch_z(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a − mean b) / its standard error (Welch), 0/0 as 0."""
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else 0.0
    diff = a.mean() - b.mean()
    return float(diff / se) if se > 0 else (0.0 if diff == 0 else float("inf") * np.sign(diff))


def normal_share(workdir: str, batches: int = 8) -> list[float]:
    """Per Björck layer, ‖G − P_T G‖ / ‖G‖ for the Euclidean gradient G of the critic's loss
    at the run's last checkpoint (mean over ``batches`` fresh batches): the share of the
    gradient that leaves the tangent space of the Stiefel manifold at W, P_T G = G − W
    sym(WᵀG) (columns orthonormal; rows for a wide W). What a retraction throws away."""
    import jax
    from flax import nnx

    from lipsort import train
    from lipsort.validation import validate_config

    config = run_files.read_config(workdir)
    task, spec = validate_config(config)
    task.prepare(workdir)
    ts = train.create_train_state(config, spec)
    checkpointer = run_files.Checkpointer(os.path.join(workdir, run_files.CHECKPOINTS))
    _, (params, rest, _) = checkpointer.restore(ts.state)
    checkpointer.close()

    def loss(p, batch):
        return task.loss(nnx.merge(ts.graphdef, p, rest, copy=True), batch)[0]

    shares = []
    for i in range(batches):
        grads = jax.grad(loss)(params, task.sample_batch(jax.random.PRNGKey(10_000 + i)))
        row = []
        for w, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads)):
            w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
            if w.ndim != 2:
                continue
            if w.shape[0] >= w.shape[1]:
                a = w.T @ g
                tangent = g - w @ (0.5 * (a + a.T))
            else:
                a = g @ w.T
                tangent = g - 0.5 * (a + a.T) @ w
            row.append(float(np.linalg.norm(g - tangent) / np.linalg.norm(g)))
        shares.append(row)
    return [float(v) for v in np.mean(shares, axis=0)]


def mean_curve(runs: list[dict]) -> list[tuple[int, float]]:
    """(step, mean held-out estimate over the runs) at the curve steps all runs have."""
    curves = [{r["step"]: r["wasserstein_estimate"] for r in run_files.read_metrics(run["workdir"], run_files.CURVE)}
              for run in runs]
    steps = sorted(set.intersection(*[set(c) for c in curves])) if curves else []
    return [(s, float(np.mean([c[s] for c in curves]))) for s in steps]


def first_step_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((s for s, v in curve if v >= target), None)


def analyse(rows: list[dict]) -> list[dict]:
    """One line per (activation, mode): estimates, z against unrolled, time per update, and
    the first curve step whose mean reaches unrolled's final mean."""
    out = []
    for activation in dict.fromkeys(r["cell"].split(", ")[0] for r in rows):
        by_mode = {m: [r for r in rows if r["cell"] == f"{activation}, {m}"] for m in MODES}
        target = float(np.mean([r["wasserstein_estimate"] for r in by_mode["unrolled"]]))
        for mode, runs in by_mode.items():
            line = {"activation": activation, "mode": mode, "n": len(runs),
                    "seconds_per_update": update_seconds(runs[0]["workdir"]) if runs else None,
                    "reaches_unrolled_final_at": first_step_reaching(mean_curve(runs), target)}
            for metric in METRICS:
                values = np.array([r[metric] for r in runs if r.get(metric) is not None], float)
                ref = np.array([r[metric] for r in by_mode["unrolled"] if r.get(metric) is not None], float)
                line[metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
                line[metric + "_z"] = welch_z(values, ref) if mode != "unrolled" else 0.0
            if mode == "retraction" and runs:
                line["normal_share"] = normal_share(runs[0]["workdir"])
            out.append(line)
    return out


def write_markdown(path: str, dataset: str, config, lines: list[dict], rows: list[dict], command: str) -> None:
    seeds = sorted({r["seed"] for r in rows})
    md = [
        f"# Does fast Björck training change the answer? ({dataset})",
        "",
        f"Command: `{command}`  ",
        f"Hardware: {sweeps.hardware()}, shared with other jobs ({datetime.date.today().isoformat()}); seeds "
        f"{seeds}, trained together per cell (one vmapped program); wall time of all cells "
        f"{sum({r['workdir'].rsplit('/', 1)[0]: r['wall_time_s'] for r in rows}.values()) / 60:.0f} min "
        "(each cell's program counted once).  ",
        f"Protocol: configs/wde_{dataset}.py:paper (batch 64 per side, Adam / Riemannian Adam 1e-3, gradient "
        f"clipping 0.1, pixels in [−1, 1]) cut to {config.train.num_steps} updates; critic 784 → "
        f"{' → '.join(map(str, config.model.widths))} → 1, Björck, K = 1; unrolled = 27 Björck iterations in "
        "every forward pass (the paper's method). Data: "
        f"{rows[0].get('data_source') or config.data.source}.",
        "",
        "Estimates are E f(held-out test images) − E f(generator samples) of the exported critic "
        "(`wasserstein_estimate`) and the paper's training-sample estimate (`wasserstein_estimate_train`), "
        "mean ± std over seeds; z = (mode − unrolled) / standard error of the difference (Welch): |z| < 2 "
        "is within seed noise. Time per update is for the whole program (all seeds).",
        "",
        "| activation | mode | held-out estimate | z vs unrolled | training-sample estimate | z | s per update "
        "| first curve step at unrolled's final estimate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ln in lines:
        h, t = ln["wasserstein_estimate"], ln["wasserstein_estimate_train"]
        sec = ln["seconds_per_update"]
        md.append(f"| {ln['activation']} | {ln['mode']} | {h[0]:.4f} ± {h[1]:.4f} | {ln['wasserstein_estimate_z']:+.1f} | "
                  f"{t[0]:.4f} ± {t[1]:.4f} | {ln['wasserstein_estimate_train_z']:+.1f} | "
                  + (f"{sec:.3f}" if sec is not None else "—") + " | "
                  + (str(ln["reaches_unrolled_final_at"]) if ln["reaches_unrolled_final_at"] else "not reached")
                  + " |")
    md += ["", "Share of the Euclidean gradient normal to the manifold (what a retraction throws away), per "
           "Björck layer, at the end of the retraction-mode run of seed 0:", ""]
    md += [f"- {ln['activation']}: " + ", ".join(f"{v:.2f}" for v in ln["normal_share"])
           for ln in lines if "normal_share" in ln]
    md += ["", "## Verdict", ""]
    for mode in MODES[1:]:
        zs = [ln["wasserstein_estimate_z"] for ln in lines if ln["mode"] == mode]
        within = all(abs(z) < 2 for z in zs)
        acts = [ln["activation"] for ln in lines if ln["mode"] == mode]
        md.append(f"- {mode} gives unrolled's held-out estimate within seed noise (|z| < 2) for every activation: "
                  f"{'yes' if within else 'NO'} (" + ", ".join(f"{a} z = {z:+.1f}" for a, z in zip(acts, zs)) + ").")
    md += ["", f"Learning curves: wde_modes_{dataset}.png (mean ± std over seeds, every "
           f"{config.eval.curve_every} updates).", ""]
    with open(path, "w") as f:
        f.write("\n".join(md))


DIAGNOSTIC_FIELDS = ("model.bjorck_training", "train.optimizer", "train.learning_rate", "train.grad_clip_norm")


def diagnostics_markdown(folder: str) -> list[str]:
    """A table of the finished runs under ``folder`` (single runs of other settings, e.g.
    learning rates): their training fields of :data:`DIAGNOSTIC_FIELDS` and estimates, read
    from each run's config.json and results.json."""
    runs = sorted(d for d in os.listdir(folder) if os.path.exists(os.path.join(folder, d, run_files.RESULTS)))
    if not runs:
        return []
    md = ["## Diagnostics: other step sizes, clipping and optimizers", "",
          f"Single runs in {folder} (each `python -m lipsort.main --config=configs/wde_<dataset>.py:paper` with the "
          "overrides of the sweep above and those listed), seed 0:", "",
          "| run | " + " | ".join(f.split(".")[-1] for f in DIAGNOSTIC_FIELDS) + " | activation | held-out | training-sample | steps |",
          "|---" * (len(DIAGNOSTIC_FIELDS) + 5) + "|"]
    for name in runs:
        config = run_files.flatten(run_files.config_to_dict(run_files.read_config(os.path.join(folder, name))))
        results = run_files.read_results(os.path.join(folder, name))
        md.append(f"| {name} | " + " | ".join(str(config.get(f)) for f in DIAGNOSTIC_FIELDS)
                  + f" | {config.get('model.activation')} | {results['wasserstein_estimate']:.4f} | "
                  f"{results['wasserstein_estimate_train']:.4f} | {results['steps']} |")
    return md + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist", "cifar10"))
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--width", type=int, default=252, help="hidden width (2, 4 and 9 must divide it)")
    parser.add_argument("--curve-every", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--diagnostics", default="", help="a folder of single runs to tabulate beside the sweep")
    parser.add_argument("--runs", default=os.path.join(REPO, "runs", "sweeps"))
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "results"))
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    os.chdir(REPO)  # generator_dir (runs/generators) is relative to the repository
    config = base_config(args.dataset, args.steps, args.width, args.curve_every, args.quick)
    modes = sweeps.with_seeds(common.wde_sweep("modes"), args.seeds)
    suffix = "_quick" if args.quick else ""
    root = os.path.join(args.runs, f"wde_{args.dataset}_modes{suffix}")
    command = "python experiments/wde_modes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = sweeps.run(config, modes, root, command=command.strip())
    lines = analyse(rows)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"wde_modes_{args.dataset}{suffix}")
    write_markdown(stem + ".md", args.dataset, config, lines, rows, command.strip())
    if args.diagnostics:
        with open(stem + ".md", "a") as f:
            f.write("\n".join(diagnostics_markdown(args.diagnostics)))
    if os.path.exists(os.path.join(root, sweeps.CURVES_PNG)):
        shutil.copy(os.path.join(root, sweeps.CURVES_PNG), stem + ".png")
    with open(stem + ".md") as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
