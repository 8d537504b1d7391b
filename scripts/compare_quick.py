r"""Runs every config's ``:quick`` variants and compares their results.json across commits.

    python scripts/compare_quick.py run  --out=/tmp/quick_before   # on the old commit
    python scripts/compare_quick.py run  --out=/tmp/quick_after    # on the new commit
    python scripts/compare_quick.py compare /tmp/quick_before /tmp/quick_after

A refactor must not change what a run computes: ``compare`` prints, per variant, every
numeric field of results.json that differs (relative tolerance ``--rtol``, default 1e-6;
``--rtol 0`` for bit for bit) and every field present on one side only, and whether the
exported arrays, config.json, metrics.jsonl (without timings) and the export.json keys
of the old side are identical. Fields that measure the machine, not the
model (wall time, paths) are ignored. Each variant runs as its own process
(``python -m lipsort.main``), so the comparison sees exactly what a user sees.
"""
from __future__ import annotations

import argparse
import glob
import json
import math

import numpy as np
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config file → the arguments to run besides "quick".
EXTRA_VARIANTS = {
    "toy_wde": ["point_pm1,quick", "sphere128,quick", "translate,quick", "gaussians_1d,quick"],
    "robust_mnist_l2": ["relu,quick", "unconstrained,quick"],
    "robust_mnist_linf": ["relu,quick"],
}
# Fields that depend on the machine or the workdir, not on the trained function.
IGNORED = ("wall_time_s", "generator_dir", "distributions", "data_source", "resumed_from_step")


def variants() -> list[tuple[str, str]]:
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
    names = [n for n in names if "def get_config" in open(os.path.join(REPO, "configs", f"{n}.py")).read()]
    return [(n, a) for n in names for a in ["quick", *EXTRA_VARIANTS.get(n, [])]]


def run(out: str, only: list[str] | None = None) -> None:
    if os.path.isdir(out) and os.listdir(out):
        # Finished runs in it would be reused, not rerun: the comparison would see old code.
        sys.exit(f"compare_quick: {out} is not empty; use a new --out.")
    os.makedirs(out, exist_ok=True)
    summary = {}
    for name, arg in variants():
        key = f"{name}:{arg}"
        if only and key not in only:
            continue
        workdir = os.path.join(out, f"{name}_{arg.replace(',', '_')}")
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "lipsort.main", f"--config=configs/{name}.py:{arg}", f"--workdir={workdir}"],
            cwd=REPO, capture_output=True, text=True,
        )
        summary[key] = {"rc": proc.returncode, "seconds": round(time.time() - start, 1),
                        "stderr_tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else []}
        print(f"{key:40s} rc {proc.returncode}  {time.time() - start:6.1f} s", flush=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def _same(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def _files_differ(old_dir: str, new_dir: str) -> list[str]:
    """Lines naming the run files (besides results.json) that are not identical."""
    lines = []
    with np.load(os.path.join(old_dir, "export.npz")) as a, np.load(os.path.join(new_dir, "export.npz")) as b:
        if set(a.files) != set(b.files) or not all(np.array_equal(a[k], b[k]) for k in a.files):
            lines.append("  export.npz: arrays differ")
    read = lambda d, f: json.load(open(os.path.join(d, f)))
    if read(old_dir, "config.json") != read(new_dir, "config.json"):
        lines.append("  config.json differs")
    old_meta, new_meta = read(old_dir, "export.json"), read(new_dir, "export.json")
    changed = [k for k, v in old_meta.items() if new_meta.get(k) != v]
    if changed:
        lines.append(f"  export.json: keys of the old export changed: {changed}")
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in open(os.path.join(d, "metrics.jsonl"))]
               for d in (old_dir, new_dir)]
    if metrics[0] != metrics[1]:
        lines.append("  metrics.jsonl differs (timings aside)")
    return lines


def compare(before: str, after: str, rtol: float) -> int:
    differences = 0
    for name, arg in variants():
        sub = f"{name}_{arg.replace(',', '_')}"
        paths = [os.path.join(d, sub, "results.json") for d in (before, after)]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            print(f"{name}:{arg}: no results.json in {', '.join(missing)}")
            differences += len(missing) < 2
            continue
        old, new = (_flatten(json.load(open(p))) for p in paths)
        lines = []
        for k in sorted(set(old) | set(new)):
            if k.split(".")[0] in IGNORED:
                continue
            if k not in old or k not in new:
                lines.append(f"  {k}: only in {'after' if k in new else 'before'} ({new.get(k, old.get(k))!r})")
            elif not _same(old[k], new[k], rtol):
                lines.append(f"  {k}: {old[k]!r} → {new[k]!r}")
        lines += _files_differ(*(os.path.join(d, sub) for d in (before, after)))
        status = "identical" if not lines else f"{len(lines)} differences"
        print(f"{name}:{arg}: {status} ({len(old)} results fields; arrays, config, metrics, export keys)")
        print("\n".join(lines)) if lines else None
        differences += bool(lines)
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--out", required=True, help="a new (empty) folder")
    p_run.add_argument("--only", default="", help="semicolon-separated NAME:ARG variants (default: all)")
    p_cmp = sub.add_parser("compare")
    p_cmp.add_argument("before")
    p_cmp.add_argument("after")
    p_cmp.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, [v for v in args.only.split(";") if v] or None)
    else:
        sys.exit(1 if compare(args.before, args.after, args.rtol) else 0)


if __name__ == "__main__":
    main()
