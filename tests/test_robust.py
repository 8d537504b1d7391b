"""Provable robustness: certification arithmetic, the batched PGD, and the ordering
certified ≤ PGD ≤ clean on short runs of the robustness configs."""
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lipsort import certify, train
from lipsort.tasks import classify

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name, arg="quick"):
    from lipsort import config_loader

    return config_loader.load_config(name if arg is None else f"{name}:{arg}")


def test_robustness_counts_by_hand():
    clean = np.array([0.5, 0.25, -0.1, 0.05, 0.2])
    # ℓ∞ logits (factor 2), L = 1, ε = 0.1: certified iff m > 0.2 → examples 0, 1 (0.2 is a tie).
    worst = np.array([0.3, -0.01, -0.2, 0.01, -0.3])
    r = classify.robustness(clean, worst, 0.1, 1.0, 2.0)
    assert r["certified"] == pytest.approx(2 / 5)
    assert r["attack"] == pytest.approx(2 / 5)  # examples 0 and 3 survive
    assert r["certified_but_broken"] == 1  # example 1: certified, yet "broken": a bug signal
    # ℓ2 logits (factor √2), L = 0.5, ε = 0.3: threshold √2·0.15 = 0.2121 → examples 0, 1.
    assert classify.robustness(clean, clean, 0.3, 0.5, math.sqrt(2))["certified"] == pytest.approx(2 / 5)
    # ε = 0 certifies exactly the correctly classified points.
    assert classify.robustness(clean, clean, 0.0, 1.0, 2.0)["certified"] == pytest.approx(4 / 5)


@pytest.mark.parametrize("p", [2, math.inf])
def test_batched_pgd_reaches_the_known_worst_margin_of_a_linear_model(p):
    a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    apply = lambda params, x: x @ params
    x = np.array([[0.6, 0.4], [0.9, 0.1], [0.3, 0.7], [0.55, 0.45], [0.8, 0.2]], np.float32)
    labels = np.array([0, 0, 1, 0, 0])
    clean = np.array([0.2, 0.8, 0.4, 0.1, 0.6])
    eps = 0.1
    # f_0 − f_1 = x0 − x1 moves by at most 2ε in ℓ∞ (δ = ±ε per coordinate), √2·ε in ℓ2.
    worst_possible = clean - (2 * eps if p == math.inf else math.sqrt(2) * eps)
    # batch_size 2 pads the last batch: results must not depend on the padding.
    found = certify.pgd_worst_margins(apply, a, x, labels, eps, p, jax.random.key(0), steps=30, batch_size=2)
    assert found.shape == (5,)
    np.testing.assert_allclose(found, worst_possible, atol=0.02)
    assert np.all(found >= worst_possible - 1e-5)  # cannot beat the analytic optimum: ‖δ‖ ≤ ε holds
    # Example 3 (m = 0.1) is broken in both norms: the known adversarial example is found.
    assert found[3] < 0


@pytest.mark.parametrize("p", [2, math.inf])
def test_batched_pgd_never_increases_accuracy(p):
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    params = (jax.random.normal(k1, (6, 32)), jax.random.normal(k2, (32, 4)))
    apply = lambda ps, x: jax.nn.relu(x @ ps[0]) @ ps[1]
    x = np.asarray(jax.random.normal(k3, (300, 6)))
    labels = np.asarray(jnp.argmax(apply(params, x), -1)).copy()
    labels[:30] = (labels[:30] + 1) % 4  # some wrong to begin with
    clean = np.asarray(certify.margins(apply(params, x), labels))
    previous = float(np.mean(clean > 0))
    for eps in (0.05, 0.2, 0.5):
        worst = certify.pgd_worst_margins(apply, params, x, labels, eps, p, jax.random.key(1), steps=10,
                                          batch_size=128)
        assert np.all(worst <= clean + 1e-5)  # the clean point is the starting "worst"
        acc = float(np.mean(worst > 0))
        assert acc <= previous + 0.02
        previous = acc
    assert previous < 0.5  # the attack does break this (unconstrained) model


def test_batched_pgd_rejects_bad_arguments():
    apply = lambda params, x: x @ params
    with pytest.raises(ValueError, match="eps must be ≥ 0"):
        certify.pgd_worst_margins(apply, jnp.eye(2), np.ones((2, 2)), np.zeros(2, int), -0.1, 2, jax.random.key(0))


def short(config):
    """A quick robustness config cut to seconds: smaller network, data and attack."""
    config.model.widths = (64, 64)
    config.train.num_steps = 40
    config.train.log_every = 20
    config.train.checkpoint_every = 40
    config.data.num_train = 1000
    config.data.num_test = 300
    config.eval.attack_steps = 5
    config.eval.batch_size = 128  # 300 test points: padding of the last batch is exercised
    config.certify.search_steps = 0  # the lower-bound search is tested elsewhere
    config.eval.strong_attack.update(points=30 if config.model.norm == "l2" else 0, steps=5, restarts=2)
    return config


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_certified_le_attack_le_clean_on_a_quick_run(tmp_path, norm):
    # The bundled MNIST, pinned: the same data on every machine (a prepared tfds MNIST or
    # the Debian Fashion-MNIST files must not change what this test measures).
    config = short(load_config(f"robust_mnist_{norm}"))
    config.data.source = "bundled"
    r = train.train_and_evaluate(config, str(tmp_path))
    assert r["data_source"].startswith("bundled:")
    assert r["num_test"] == 300
    assert r["lipschitz_upper_bound"] <= config.model.lipschitz_constant * (1 + 1e-6)
    assert r["clean_accuracy"] > 0.3  # chance is 0.1: it learned, so the ordering is not vacuous
    assert list(r["certified_accuracy"]) == [str(e) for e in config.eval.epsilons]
    for eps, cert in r["certified_accuracy"].items():
        assert cert <= r["attack_accuracy"][eps] <= r["clean_accuracy"]
        assert r["certified_but_broken"][eps] == 0
    assert r["certified_accuracy"][str(config.eval.epsilons[0])] > 0  # the certificate is not empty
    assert r["attack"]["norm"] == ("inf" if norm == "linf" else "2")
    if norm == "linf":  # the strong attack is wired the same for both norms: one run checks it (CI time)
        return
    strong = r["strong_attack"]
    assert strong["points"] == 30 and set(strong["per_eps"]) == {str(e) for e in config.eval.epsilons if e > 0}
    for report in strong["per_eps"].values():
        assert report["points"] == 30 and report["broken_certified"] == 0
        assert report["certified_accuracy"] <= report["attack_accuracy"] <= report["clean_accuracy"]


def test_classify_config_errors_name_the_field():
    config = load_config("two_moons")
    config.data.dataset = "svhn"
    with pytest.raises(train.ConfigError, match="Unknown config.data.dataset 'svhn'"):
        train.validate_config(config)
    config = load_config("two_moons")
    config.data.source = "idx"
    with pytest.raises(train.ConfigError, match="source must be 'synthetic'"):
        train.validate_config(config)
    config = load_config("robust_mnist_linf")  # the bundled MNIST is on every machine (CI has no IDX)
    config.train.loss = "hinge"  # binary loss, 10 classes
    with pytest.raises(train.ConfigError, match="does not fit 10 classes"):
        train.validate_config(config)


def test_robust_config_arguments():
    base = load_config("robust_mnist_l2", None)
    assert base.model.widths == (1024, 1024, 1024) and base.model.constraint == "bjorck"
    relu = load_config("robust_fashion_mnist_l2", "relu,quick")
    assert relu.model.activation == "relu" and relu.model.constraint == "bjorck"
    assert relu.data.dataset == "fashion_mnist"
    free = load_config("robust_mnist_linf", "unconstrained")
    assert (free.model.constraint, free.train.loss) == ("none", "cross_entropy")
    with pytest.raises(ValueError, match="exclude each other"):
        load_config("robust_mnist_linf", "relu,unconstrained")


def test_mnist_configs_read_full_mnist_through_tfds(tmp_path):
    # Full MNIST goes through tfds.data_source when prepared; mock_data stands in for it.
    tfds = pytest.importorskip("tensorflow_datasets")
    config = short(load_config("robust_mnist_l2"))
    config.data.source = "tfds"
    config.model.widths = (32, 32)
    config.train.num_steps = 2
    config.train.log_every = config.train.checkpoint_every = 2
    config.data.num_train = config.data.num_test = 0
    config.eval.epsilons = (0.5,)
    config.eval.strong_attack.points = 0
    with tfds.testing.mock_data(num_examples=40):
        r = train.train_and_evaluate(config, str(tmp_path))
    assert r["data_source"] == "tfds:mnist" and r["num_test"] == 40
    assert r["certified_accuracy"]["0.5"] <= r["attack_accuracy"]["0.5"] <= r["clean_accuracy"]


DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def test_fashion_mnist_paper_config_runs_on_the_debian_idx_files(tmp_path):
    """The real offline Fashion-MNIST path (.ci/run installs Debian's dataset-fashion-mnist):
    the :paper protocol's validation split and best-epoch selection, cut to seconds."""
    if not os.path.isdir(DEBIAN_FASHION_MNIST):
        if os.environ.get("CI"):
            pytest.fail(f"{DEBIAN_FASHION_MNIST} is missing: .ci/run must apt-get install dataset-fashion-mnist")
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    config = short(load_config("robust_fashion_mnist_linf", "paper,quick"))
    config.data.source = "idx"
    config.model.widths = (32, 32)
    config.data.num_val = 100
    config.train.num_steps = config.eval.curve_every = 8
    config.train.log_every = config.train.checkpoint_every = 8
    config.eval.strong_attack.points = 0
    r = train.train_and_evaluate(config, str(tmp_path))
    assert r["data_source"] == f"idx:{DEBIAN_FASHION_MNIST}"
    assert (r["num_train"], r["num_val"], r["num_test"]) == (900, 100, 300)
    assert r["selected"]["by"] == "val_accuracy" and r["selected"]["step"] == 8
    for eps, cert in r["certified_accuracy"].items():
        assert cert <= r["attack_accuracy"][eps] <= r["clean_accuracy"]

def _robustness_table():
    spec = importlib.util.spec_from_file_location(
        "robustness_table", os.path.join(REPO, "experiments", "robustness_table.py"))
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    return table


def test_robustness_table_merges_only_models_of_the_same_config():
    from lipsort import workdir as run_files

    table = _robustness_table()
    configs = {"maxmin_linf": load_config("robust_mnist_linf", "quick"),
               "relu_linf": load_config("robust_mnist_linf", "relu,quick"),
               "unconstrained_linf": load_config("robust_mnist_linf", "unconstrained,quick")}

    def entry(name, source="bundled"):
        return {"results": {"data_source": source}, "config": run_files.config_to_dict(configs[name]),
                "curve": [], "command": "earlier", "date": "2026-12-02"}

    now = {"maxmin_linf": entry("maxmin_linf")}
    changed = entry("relu_linf")
    changed["config"]["train"]["learning_rate"] = 1.0
    earlier = {"maxmin_linf": entry("maxmin_linf", "other"), "relu_linf": changed,
               "unconstrained_linf": entry("unconstrained_linf")}
    merged, refused = table.merge_entries(now, earlier, configs)
    assert list(merged) == ["unconstrained_linf"]  # maxmin_linf ran now: its earlier entry is not merged
    assert refused == ["relu_linf: its config differs from the one it would run with now (in train)"]
    merged, refused = table.merge_entries(now, {"unconstrained_linf": entry("unconstrained_linf", "idx")}, configs)
    assert not merged and "data source 'idx' is not this session's ['bundled']" in refused[0]


def test_robustness_table_checks_flag_a_model_at_chance():
    table = _robustness_table()

    def row(clean, cert, at_chance=False):
        return {"clean_accuracy": clean, "certified_accuracy": {"0.1": cert}, "attack_accuracy": {"0.1": clean},
                "lipschitz_upper_bound": 1.0, "at_chance": at_chance, "selected": {"step": 29, "value": 0.1275}}

    learned = {"linf": [("maxmin_linf", "", row(0.9, 0.7)), ("relu_linf", "", row(0.8, 0.4))]}
    lines = table.checks(learned)
    assert any("`maxmin_linf` certifies more than `relu_linf`" in line and line.endswith("yes.") for line in lines)
    assert not any("did not learn" in line for line in lines)
    collapsed = {"linf": [("maxmin_linf", "", row(0.9, 0.7)), ("relu_linf", "", row(0.1, 0.0, at_chance=True))]}
    lines = table.checks(collapsed)
    assert any("yes (but `relu_linf` did not learn: below)." in line for line in lines), lines
    assert any(line.startswith("- `relu_linf` did not learn: clean accuracy 10.00 % is at chance (best validation "
                               "accuracy 12.75 % at step 29)") for line in lines), lines


def test_robustness_table_set_overrides_one_model_with_typed_values():
    table = _robustness_table()
    names = ["maxmin_linf", "relu_linf"]
    sets = table.parse_sets(["maxmin_linf:train.margin=200", "all:eval.select_best=val_certified_0.1",
                             "relu_linf:model.widths=(64, 64)"], names)
    assert sets == {"maxmin_linf": {"train.margin": 200, "eval.select_best": "val_certified_0.1"},
                    "relu_linf": {"eval.select_best": "val_certified_0.1", "model.widths": (64, 64)}}
    for bad, says in (("maxmin_linf:train.margin", "expected MODEL:FIELD=VALUE"),
                      ("resnet:train.margin=1", "unknown model 'resnet'")):
        with pytest.raises(ValueError, match=says):
            table.parse_sets([bad], names)


def test_robustness_counts_are_exact_fractions_for_jax_margins():
    """Equal counts give equal accuracies: a jax margin array must not be averaged in float32."""
    from lipsort.tasks.classify import robustness

    n, hits = 300, 77
    clean = jnp.where(jnp.arange(n) < hits, 10.0, -1.0)
    r = robustness(clean, clean, eps=0.1, lipschitz=1.0, factor=2.0)
    assert r["certified"] == r["attack"] == hits / n and r["certified_but_broken"] == 0
    logits = jnp.stack([clean, jnp.zeros(n)], axis=1)
    assert certify.accuracy(logits, jnp.zeros(n, jnp.int32)) == hits / n
    assert certify.certified_accuracy(logits, jnp.zeros(n, jnp.int32), 0.1, 1.0) == hits / n
