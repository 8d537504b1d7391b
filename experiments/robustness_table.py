r"""Provable adversarial robustness table: clean / certified / PGD accuracy per ε per model.

    python experiments/robustness_table.py --dataset=fashion_mnist   # full 60k/10k split, offline (IDX)
    python experiments/robustness_table.py --dataset=mnist           # tfds if prepared, else bundled 5k
    python experiments/robustness_table.py --dataset=mnist --quick   # smoke test, numbers meaningless
    python experiments/robustness_table.py --dataset=fashion_mnist --paper   # the paper's protocols

Runs seven models (each a normal lipsort run in runs/robustness/<dataset>/<name>/; a finished
run is reused, so an interrupted sweep continues where it stopped):

- ℓ∞ (configs/robust_<dataset>_linf.py): MaxMin + ∞-norm constraint + hinge; ReLU under
  the same constraint (``:relu``); unconstrained ReLU + cross-entropy (``:unconstrained``);
- ℓ2 (configs/robust_<dataset>_l2.py): GroupSort + Björck + hinge; ReLU + Björck;
  unconstrained ReLU + cross-entropy; and the blog's universal construction
  (configs/robust_<dataset>_linf.py:two_inf: a (2,∞) first layer then ∞-norm layers,
  certified ℓ2 → ℓ∞), in the ℓ2 section since its inputs are measured in ℓ2.

``--paper`` trains every model at its config's ``:paper`` protocol (200 epochs, 10 % held
out, the best epoch by validation accuracy); ``--strong_points`` (default 200) adds the
strong attack of :func:`lipsort.tasks.classify.strong_attack` on that many test points.
``--riemannian`` trains the Björck models (``groupsort_bjorck``, ``relu_bjorck``) with the
ℓ2 configs' ``riemannian`` argument (riemannian mode, Riemannian Adam; ~1.8× faster per
update here) and adds ``_riemannian`` to the output names, e.g.
``--dataset=fashion_mnist --paper --riemannian``.

``--set=MODEL:FIELD=VALUE`` (repeatable; MODEL a model name or ``all``) changes one config
field of one model, e.g. ``--set=maxmin_linf:train.margin=200`` for a margin that asks
for ℓ∞ radius 0.1 instead of the config's 0.15; it needs ``--suffix`` (a table with
changed models is another table; its runs go to their own folder), and the table lists
every change.

``--merge`` also counts the models stored in the table's JSON by earlier sessions (a
machine whose runs/ folder is gone) that are not run now, each only if its stored config
equals the config it would run with now and its data source is the one found now; the
others are listed and left out. So a long table (the ``--paper`` ones: hours per model on
2 CPU cores) can be built one model at a time, e.g. ``--paper --only=groupsort_bjorck
--merge``; the table stays ``_partial`` until every model is in it.

Writes experiments/results/robustness_<dataset>.md (tables, command, hardware, data
source, published reference points for full MNIST), robustness_<dataset>.png (accuracy
vs ε) and robustness_<dataset>.json (every model's results, config, validation curve,
command and date, which ``--merge`` reads; earlier models this table does not hold are
kept there under ``left_out``). Refuses to write a table where certified ≤ PGD ≤ clean fails: that
would be a bug in the certificate or the attack, not a result.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import logging  # noqa: E402

from lipsort import plots, sweep, train  # noqa: E402
from lipsort import workdir as run_files  # noqa: E402
from lipsort.config_loader import load_config  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results")
DATASETS = ("mnist", "fashion_mnist")
# (name, config norm suffix, config argument, label in the table, section: the input norm)
MODELS = (
    ("maxmin_linf", "linf", None, "MaxMin, ∞-norm constraint, hinge", "linf"),
    ("relu_linf", "linf", "relu", "ReLU, ∞-norm constraint, hinge", "linf"),
    ("unconstrained_linf", "linf", "unconstrained", "ReLU, unconstrained, cross-entropy", "linf"),
    ("groupsort_bjorck", "l2", None, "GroupSort(2), Björck, hinge", "l2"),
    ("relu_bjorck", "l2", "relu", "ReLU, Björck, hinge", "l2"),
    ("maxmin_two_inf", "linf", "two_inf", "MaxMin, (2,∞) first layer then ∞-norm (the blog's ℓ2 → ℓ∞), hinge",
     "l2"),
    ("unconstrained_l2", "l2", "unconstrained", "ReLU, unconstrained, cross-entropy", "l2"),
)
# Published full-MNIST reference points (not reproduced here; quoted from the papers).
REFERENCES = (
    ("ℓ∞", "0.1", "Wong & Kolter 2018 (convex outer polytope)", "—", "94.18"),
    ("ℓ2", "1.58", "Björck GroupSort MLP 784-1024×3 (Li et al. 2019)", "98.71", "54.46"),
    ("ℓ2", "1.58", "BCOP-Large (Li et al. 2019)", "98.77", "56.66"),
    ("ℓ2", "1.58", "GloRo (Leino et al. 2021)", "—", "62.8"),
)
# below 1/n for any test split under 10⁶ points (one broken point still shows), above the float32
# rounding of accuracies stored by runs before 2026-12-03 (certify.accuracy is exact since)
TOL = 1e-7


def config_spec(name: str, kind: str | None, quick: bool, paper: bool = False, riemannian: bool = False) -> str:
    """``NAME[:ARG]`` for lipsort.config_loader.load_config."""
    parts = [p for p in (kind, "paper" if paper else None, "quick" if quick else None,
                         "riemannian" if riemannian else None) if p]
    return f"{name}:{','.join(parts)}" if parts else name


def parse_sets(sets: list[str], names: list[str]) -> dict[str, dict]:
    """``--set`` values ``MODEL:FIELD=VALUE`` → {model: {field: value}}; VALUE is read as a
    Python literal (200, 0.1, (1024, 1024), 'val_certified_0.1') or else kept as a string."""
    out: dict[str, dict] = {}
    for item in sets:
        model, sep, assignment = item.partition(":")
        field, eq, text = assignment.partition("=")
        if not sep or not eq or not field:
            raise ValueError(f"--set={item!r}: expected MODEL:FIELD=VALUE, e.g. maxmin_linf:train.margin=200.")
        if model != "all" and model not in names:
            raise ValueError(f"--set={item!r}: unknown model {model!r}; valid: all, {', '.join(names)}.")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        for name in names if model == "all" else [model]:
            out.setdefault(name, {})[field] = value
    return out


def model_config(dataset: str, norm: str, kind: str | None, args):
    """One model's config; with ``--riemannian`` its Björck layers (if any) train in
    riemannian mode (the ℓ2 configs' ``riemannian`` argument)."""
    name = f"robust_{dataset}_{norm}"
    config = load_config(config_spec(name, kind, args.quick, args.paper))
    if args.riemannian and config.model.constraint == "bjorck":
        config = load_config(config_spec(name, kind, args.quick, args.paper, riemannian=True))
    return config


def run(workdir: str, config) -> dict:
    """Trains and evaluates in ``workdir``, or reuses the finished run of the same config."""
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        with open(os.path.join(workdir, "config.json")) as f:
            if json.load(f) != run_files.config_to_dict(config):
                raise ValueError(
                    f"{workdir} holds a finished run of another config; delete it or pass another --runs_dir."
                )
        with open(path) as f:
            return json.load(f)
    t = time.time()
    results = train.train_and_evaluate(config, workdir)
    print(f"{workdir}: {time.time() - t:.1f}s", flush=True)
    return results


def check_ordering(name: str, r: dict) -> None:
    """certified ≤ PGD ≤ clean at every ε, and no certified point broken by PGD."""
    clean = r["clean_accuracy"]
    for eps, cert in r["certified_accuracy"].items():
        att = r["attack_accuracy"][eps]
        broken = r.get("certified_but_broken", {}).get(eps, 0)
        if not (cert <= att + TOL and att <= clean + TOL) or broken:
            raise AssertionError(
                f"{name} at ε={eps}: certified {cert}, PGD {att}, clean {clean}, "
                f"{broken} certified points broken by PGD. The certificate or the attack is wrong."
            )


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def norm_section(norm: str, rows: list[tuple[str, str, dict]]) -> list[str]:
    eps_list = list(rows[0][2]["certified_accuracy"])
    sym = "ℓ∞" if norm == "linf" else "ℓ2"
    head = "| model | clean | " + " | ".join(f"ε={e} cert / PGD" for e in eps_list) + " | train acc | Lip ≤ | steps | time |"
    lines = [f"### {sym} (accuracy in %, full test split)", "", head, "|" + "---|" * (head.count("|") - 1)]
    for name, label, r in rows:
        cells = [f"{pct(r['certified_accuracy'][e])} / {pct(r['attack_accuracy'][e])}" for e in eps_list]
        lines.append(
            f"| {label} (`{name}`) | {pct(r['clean_accuracy'])} | " + " | ".join(cells)
            + f" | {pct(r['train_accuracy'])} | {r['lipschitz_upper_bound']:.4g} | {r['steps']} | {r['wall_time_s']:.0f} s |"
        )
    attack = rows[0][2]["attack"]
    lines += ["", f"Certified: margin > {rows[0][2]['margin_factor']:.4g}·L·ε with L the certified bound of "
              f"the export. PGD: {attack['steps']} steps in {sym} on the margin, step 2.5·ε/steps, "
              f"one random start, worst point kept, pixels clipped to [{attack['clip'][0]:g}, {attack['clip'][1]:g}].", ""]
    return lines


def training_phrase(config, r: dict) -> str:
    """How one model was trained, in words: steps, batch, epochs, optimizer, schedule, K,
    margin, the Björck or ∞-norm training mode and the model selection."""
    t, m = config.train, config.model
    epochs = r["steps"] * t.batch_size / r["num_train"]
    words = [f"{r['steps']} steps of {t.batch_size} (≈ {epochs:.1f} epochs)", f"{t.optimizer} {t.learning_rate:g}",
             f"{t.schedule} schedule", f"K = {m.lipschitz_constant:g}"]
    if t.loss != "cross_entropy":
        words.append(f"margin {t.margin:g}")
    if m.constraint == "bjorck":
        words.append(f"Björck layers in {m.bjorck_training} mode")
    if m.constraint == "linf":
        words.append(f"ℓ∞ {m.linf_training}" + (f" onto the {m.linf_projection}" if m.linf_training == "projected" else ""))
    if r.get("selected"):
        words.append(f"best of the validation curve ({r['num_val']} held out): step {r['selected']['step']}")
    return ", ".join(words)


def strong_section(sections: dict) -> list[str]:
    """The strong attack's table: per model and ε, on the same random test points, the
    certified accuracy, the strong attack's accuracy, and the certified points it broke."""
    rows = [(name, r["strong_attack"]) for section in sections.values() for name, _, r in section
            if r.get("strong_attack")]
    if not rows:
        return []
    first = rows[0][1]
    lines = ["### Stronger evidence: a far stronger attack on the certified points", "",
             f"{first['points']} test points drawn at random (a fixed permutation), attacked at every ε by "
             f"{first['restarts']} PGD runs of {first['steps']} steps on the margin (the table's attack, then "
             "random starts with a cosine-decaying step) plus one targeted run per wrong class "
             "(`lipsort.certify.strong_attack_margins`). Each cell: certified / strong-attack accuracy on those "
             "points, and the certified points it broke (must be 0).", "",
             "| model | ε | certified | strong attack | gap | certified points | broken |", "|---|---|---|---|---|---|---|"]
    for name, strong in rows:
        for eps, rep in strong["per_eps"].items():
            lines.append(f"| `{name}` | {eps} | {pct(rep['certified_accuracy'])} | {pct(rep['attack_accuracy'])} | "
                         f"{100 * rep['gap']:.1f} | {rep['certified']} | {rep['broken_certified']} |")
    broken = sum(rep["broken_certified"] for _, strong in rows for rep in strong["per_eps"].values())
    lines += ["", f"Certified points broken in all: **{broken}**.", ""]
    return lines


def at_chance_lines(sections: dict) -> list[str]:
    """One line per model whose clean accuracy is at chance (``results.json["at_chance"]``):
    its row measures a failed training run, not its activation or constraint."""
    lines = []
    for norm in sections:
        for name, _, r in sections[norm]:
            if r.get("at_chance"):
                selected = r.get("selected") or {}
                where = f" (best validation accuracy {pct(selected['value'])} % at step {selected['step']})" \
                    if "value" in selected else ""
                lines.append(f"- `{name}` did not learn: clean accuracy {pct(r['clean_accuracy'])} % is at chance"
                             f"{where}; its row says nothing about its activation or constraint.")
    return lines


def checks(sections: dict) -> list[str]:
    """The expected orderings (certified ≤ attacked ≤ clean; GroupSort vs ReLU), evaluated on the numbers above (never asserted blindly)."""
    lines = ["### Checks (computed from the tables above)", ""]
    pairs = (("linf", "maxmin_linf", "relu_linf"), ("l2", "groupsort_bjorck", "relu_bjorck"))
    for norm, sort_name, relu_name in pairs:
        by_name = {name: r for name, _, r in sections.get(norm, [])}
        if sort_name not in by_name or relu_name not in by_name:
            continue
        a, b = by_name[sort_name]["certified_accuracy"], by_name[relu_name]["certified_accuracy"]
        worse = [e for e in a if not a[e] > b[e]]
        lines.append(
            f"- `{sort_name}` certifies more than `{relu_name}` (same constraint) at every ε: "
            + ("yes" if not worse else f"no, not at ε = {', '.join(worse)}")
            + (f" (but `{relu_name}` did not learn: below)." if by_name[relu_name].get("at_chance") else ".")
        )
    lines += at_chance_lines(sections)
    for norm in sections:
        for name, _, r in sections[norm]:
            if name.startswith("unconstrained"):
                eps = list(r["certified_accuracy"])
                lines.append(
                    f"- `{name}`: certified at most {pct(max(r['certified_accuracy'].values()))} % at any ε "
                    f"(its certified Lipschitz bound is {r['lipschitz_upper_bound']:.4g}); PGD leaves "
                    f"{pct(r['attack_accuracy'][eps[-1]])} % at ε = {eps[-1]} (clean {pct(r['clean_accuracy'])} %)."
                )
    return lines + [""]


def plot(dataset: str, sections: dict, path: str) -> None:
    fig, axes = plots.grid_figure(1, len(sections), size=4.0)
    axes = list(getattr(axes, "flat", [axes]))
    for ax, (norm, rows) in zip(axes, sections.items()):
        for i, (name, label, r) in enumerate(rows):
            eps = [0.0] + [float(e) for e in r["certified_accuracy"]]
            color = f"C{i}"
            ax.plot(eps, [r["clean_accuracy"]] + list(r["certified_accuracy"].values()), "-o", color=color,
                    label=f"{label}: certified", ms=3)
            ax.plot(eps, [r["clean_accuracy"]] + list(r["attack_accuracy"].values()), "--x", color=color,
                    label=f"{label}: PGD", ms=3)
        ax.set_xlabel(f"ε ({'ℓ∞' if norm == 'linf' else 'ℓ2'})")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}: {'ℓ∞' if norm == 'linf' else 'ℓ2'} robustness")
        ax.legend(fontsize=6)
    plots.save(fig, path)


def read_curve(workdir: str) -> list[dict]:
    """The run's validation curve (``curve.jsonl``, one record per evaluation), or []."""
    path = os.path.join(workdir, "curve.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(dataset: str, curves: dict, configs: dict, results: dict, path: str) -> bool:
    """One panel per model with a validation curve: validation accuracy and certified
    accuracy at each ε against the epoch, the selected (best) epoch marked. False if no
    model has a curve."""
    curves = {name: c for name, c in curves.items() if c}
    if not curves:
        return False
    fig, axes = plots.grid_figure(1, len(curves), size=4.0)
    axes = list(getattr(axes, "flat", [axes]))
    for ax, (name, curve) in zip(axes, curves.items()):
        r = results[name]
        per_epoch = r["num_train"] / configs[name].train.batch_size
        epochs = [c["step"] / per_epoch for c in curve]
        ax.plot(epochs, [c["val_accuracy"] for c in curve], "k-", label="validation accuracy")
        keys = [k for k in curve[-1] if k.startswith("val_certified_")]
        for i, key in enumerate(keys):
            ax.plot(epochs, [c.get(key, float("nan")) for c in curve], "--", color=f"C{i}",
                    label=f"certified, ε = {key[len('val_certified_'):]}")
        if r.get("selected"):
            ax.axvline(r["selected"]["step"] / per_epoch, color="gray", lw=0.8, label="selected epoch")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}: {name}", fontsize=8)
        ax.legend(fontsize=6)
    plots.save(fig, path)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--quick", action="store_true", help="quick configs (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated model names to run (no table unless --table)")
    parser.add_argument("--table", action="store_true",
                        help="with --only: write the table of those models alone (named ..._partial; it says "
                             "which models it lacks)")
    parser.add_argument("--runs_dir", default=os.path.join(REPO, "runs", "robustness"))
    parser.add_argument("--results_dir", default=RESULTS)
    parser.add_argument("--widths", default="", help="override the hidden widths, e.g. 512,512,512")
    parser.add_argument("--num_steps", type=int, default=0, help="override config.train.num_steps")
    parser.add_argument("--suffix", default="", help="appended to the output names, e.g. _w512")
    parser.add_argument("--paper", action="store_true",
                        help="the paper's protocols (each config's :paper: 200 epochs, validation split, best epoch)")
    parser.add_argument("--riemannian", action="store_true",
                        help="Björck models train in riemannian mode with Riemannian Adam (the ℓ2 configs' "
                             "'riemannian' argument: ~1.8× faster per update on 2 CPU cores)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:FIELD=VALUE",
                        help="change one config field of one model (or 'all'), e.g. maxmin_linf:train.margin=200; "
                             "repeatable; needs --suffix")
    parser.add_argument("--merge", action="store_true",
                        help="also count the models of the table's JSON (earlier sessions) not run now whose stored "
                             "config is the one they would run with now; writes the table (partial until complete)")
    parser.add_argument("--strong_points", type=int, default=200,
                        help="test points the strong attack (200-step PGD, 10 restarts, a targeted run per wrong "
                             "class) attacks per ε (0 = off)")
    args = parser.parse_args()
    logging.set_verbosity(logging.INFO)
    names = [m[0] for m in MODELS]
    only = [n for n in args.only.split(",") if n]
    if set(only) - set(names):
        parser.error(f"unknown model(s) {sorted(set(only) - set(names))}; valid: {names}")
    if args.set and not args.suffix:
        parser.error("--set changes the protocol of the table: name it with --suffix, e.g. --suffix=_margin02")
    try:
        sets = parse_sets(args.set, names)
    except ValueError as e:
        parser.error(str(e))
    # Build every config first: a bad config or missing data fails before hours of work.
    configs = {
        name: model_config(args.dataset, norm, kind, args) for name, norm, kind, _, _ in MODELS
    }
    for config in configs.values():
        if args.widths:
            config.model.widths = tuple(int(w) for w in args.widths.split(","))
        if args.num_steps:
            config.train.num_steps = args.num_steps
        config.eval.strong_attack.points = args.strong_points
    for name, overrides in sets.items():
        try:
            configs[name] = sweep.apply_overrides(configs[name], overrides, where=f" (--set for {name})")
        except ValueError as e:
            parser.error(str(e))
    for name in only or names:
        train.validate_config(configs[name])
    # Changed models run in their own folder: the protocol's runs of the same name stay reusable.
    runs_dir = os.path.join(args.runs_dir, args.dataset + output_suffix(args, with_name_suffix=bool(sets)),
                            "w" + "-".join(map(str, configs[names[0]].model.widths)))
    entries: dict[str, dict] = {}  # name → results, config, curve, command, date
    for name in names:
        if only and name not in only:
            continue
        r = run(os.path.join(runs_dir, name), configs[name])
        check_ordering(name, r)
        entries[name] = {"results": r, "config": run_files.config_to_dict(configs[name]),
                         "curve": read_curve(os.path.join(runs_dir, name)), "command": command(args),
                         "date": time.strftime("%Y-%m-%d")}
    if only and not (args.table or args.merge):
        return
    json_path = os.path.join(args.results_dir, f"robustness_{args.dataset}{output_suffix(args)}.json")
    left_out: dict[str, dict] = {}  # earlier entries not in this table, kept in the JSON (nothing is lost)
    if os.path.exists(json_path):
        with open(json_path) as f:
            stored = json.load(f)
        left_out = {name: e for name, e in stored.get("left_out", {}).items() if name not in entries}
        earlier = {name: e for name, e in stored["models"].items() if name not in entries}
        if args.merge:
            merged, refused = merge_entries(entries, earlier, configs)
            print(f"robustness_table: {len(merged)} model(s) from earlier sessions, {len(refused)} left out"
                  + "".join(f"\n  {line}" for line in refused))
            entries.update(merged)
        left_out.update({name: e for name, e in earlier.items() if name not in entries})
    for name, entry in entries.items():
        check_ordering(name, entry["results"])  # earlier ones too: a table never holds a broken certificate
    os.makedirs(args.results_dir, exist_ok=True)
    with open(json_path, "w") as f:
        json.dump({"models": {name: entries[name] for name in names if name in entries}, "left_out": left_out},
                  f, indent=1)
    sections: dict[str, list] = {"linf": [], "l2": []}
    for name, _, _, label, section in MODELS:
        if name in entries:
            sections[section].append((name, label, entries[name]["results"]))
    curves = {name: entry["curve"] for name, entry in entries.items()}
    earlier_lines = [f"`{name}` ({entry['date']}: `{entry['command']}`)" for name, entry in entries.items()
                     if entry["command"] != command(args)]
    write_table(args, sections, configs, curves, missing=[name for name in names if name not in entries],
                earlier=earlier_lines)


def merge_entries(entries: dict, earlier: dict, configs: dict) -> tuple[dict, list[str]]:
    """The ``earlier`` models (a table JSON's) not in ``entries`` whose stored config is
    the one they would run with now (``configs``) and whose data source is this session's
    (an earlier entry's own when none ran now); and one line per model left out, saying why."""
    sources = {e["results"]["data_source"] for e in entries.values()}
    merged, refused = {}, []
    for name, entry in earlier.items():
        if name in entries or name not in configs:
            continue
        now = run_files.config_to_dict(configs[name])
        if entry["config"] != now:
            differ = sorted(k for k in set(now) | set(entry["config"]) if now.get(k) != entry["config"].get(k))
            refused.append(f"{name}: its config differs from the one it would run with now (in {', '.join(differ)})")
        elif sources and entry["results"]["data_source"] not in sources:
            refused.append(f"{name}: data source {entry['results']['data_source']!r} is not this session's "
                           f"{sorted(sources)}")
        else:
            merged[name] = entry
    return merged, refused


def command(args) -> str:
    flags = [f"--dataset={args.dataset}"] + (["--quick"] if args.quick else [])
    flags += [f"--widths={args.widths}"] if args.widths else []
    flags += [f"--num_steps={args.num_steps}"] if args.num_steps else []
    flags += [f"--suffix={args.suffix}"] if args.suffix else []
    flags += ["--paper"] if args.paper else []
    flags += ["--riemannian"] if args.riemannian else []
    flags += [f"--only={args.only}"] if args.only else []
    flags += ["--table"] if args.table and args.only else []
    flags += [f"--set={item}" for item in args.set]
    flags += ["--merge"] if args.merge else []
    flags += [f"--strong_points={args.strong_points}"]
    return "python experiments/robustness_table.py " + " ".join(flags)


def output_suffix(args, with_name_suffix: bool = True) -> str:
    return (("_paper" if args.paper else "") + ("_riemannian" if args.riemannian else "")
            + ("_quick" if args.quick else "") + (args.suffix if with_name_suffix else ""))


def write_table(args, sections, configs, curves, missing=(), earlier=()) -> None:
    suffix = output_suffix(args) + ("_partial" if missing else "")
    sections = {norm: rows for norm, rows in sections.items() if rows}
    os.makedirs(args.results_dir, exist_ok=True)
    png = f"robustness_{args.dataset}{suffix}.png"
    plot(args.dataset, sections, os.path.join(args.results_dir, png))
    curves_png = f"robustness_{args.dataset}{suffix}_curves.png"
    results = {name: r for rows in sections.values() for name, _, r in rows}
    has_curves = plot_curves(args.dataset, curves, configs, results, os.path.join(args.results_dir, curves_png))
    first = next(iter(sections.values()))[0][2]
    sources = sorted({r["data_source"] for rows in sections.values() for _, _, r in rows})
    total = sum(r["wall_time_s"] for rows in sections.values() for _, _, r in rows)
    cmd = command(args)
    lines = [
        f"# Provable adversarial robustness: {args.dataset}", "",
        f"Command: `{cmd}` (total {total / 60:.1f} min of runs).", "",
        f"Hardware: {platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, no GPU; "
        f"Python {platform.python_version()}, jax {__import__('jax').__version__}; {time.strftime('%Y-%m-%d')}.", "",
        f"Data: {'; '.join(sources)}; {first['num_train']} train / {first['num_test']} test examples.", "",
        "Training (per model, from its config): " + "; ".join(
            f"`{name}` {training_phrase(configs[name], r)}" for rows in sections.values() for name, _, r in rows) + ".",
        "",
        "Every model is 784-" + "-".join(str(w) for w in configs["maxmin_linf"].model.widths) + "-10 "
        "(see the config docstrings for the choice of K and margin). Each cell: certified / PGD "
        "accuracy; certified ≤ PGD ≤ clean is checked for every ε (and no certified point is "
        "broken by PGD).", "",
    ]
    if args.set:
        lines += ["Changed from the configs (`--set`): " + "; ".join(f"`{item}`" for item in args.set) + ".", ""]
    if earlier:
        lines += ["Models merged from earlier sessions (`--merge`; their config is this command's): "
                  + "; ".join(earlier) + ".", ""]
    if missing:
        lines += [f"**Partial table**: these models were not run for it: {', '.join(f'`{m}`' for m in missing)}.", ""]
    for norm, rows in sections.items():
        lines += norm_section(norm, rows)
    lines += strong_section(sections)
    lines += checks(sections)
    lines += [
        "### Published reference points (full MNIST, 60k/10k; quoted, not reproduced here)", "",
        "| norm | ε | model | clean % | certified % |", "|---|---|---|---|---|",
        *[f"| {n} | {e} | {m} | {c} | {v} |" for n, e, m, c, v in REFERENCES],
        "", f"![accuracy vs ε]({png})", "",
    ]
    if has_curves:
        lines += ["Validation curves (the held-out split, every epoch; the selected epoch marked):", "",
                  f"![validation curves]({curves_png})", ""]
    path = os.path.join(args.results_dir, f"robustness_{args.dataset}{suffix}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
