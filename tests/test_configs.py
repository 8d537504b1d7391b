"""Every config in configs/ builds, validates, and runs one training step end to end."""
import os

import pytest

from lipsort import data, tasks, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_files():
    """configs/NAME.py for every config (not configs/__init__.py or configs/common.py)."""
    from lipsort import config_loader

    return [os.path.join(config_loader.CONFIG_DIR, f"{name}.py") for name in config_loader.config_names()]


CONFIG_FILES = config_files()


def load(path):
    from lipsort import config_loader

    return config_loader.load_module(path)


def variants():
    for path in CONFIG_FILES:
        module = load(path)
        args = [None, "quick"]
        # Configs with kinds (toy_wde.py:KIND) list them in KINDS: each kind must work.
        args += [f"{kind},quick" for kind in getattr(module, "KINDS", ())]
        # toy_wde.py:KIND,paper: the paper's settings of its toys.
        args += [f"{kind},paper,quick" for kind in getattr(module, "PAPER_TOYS", ())]
        for arg in args:
            yield pytest.param(path, arg, id=f"{os.path.basename(path)}:{arg}")


def shrink(config):
    """One step of the same experiment, with every evaluation budget at its minimum."""
    config.train.num_steps = 1
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    if "certify" in config:
        # Conv exports: the search (11 s of compilation here) runs in tests/test_conv.py.
        config.certify.search_steps = 0 if config.get("model", {}).get("kind") == "conv" else 1
    if "num_eval" in config.data:
        config.data.num_eval = 30
    if config.data.get("dataset") is not None:  # images: a few hundred are enough for one step
        config.data.num_train = min(int(config.data.num_train) or 300, 300)
        config.data.num_test = min(int(config.data.num_test) or 100, 100)
    if "grid_size" in config.data:
        config.data.grid_size = 21
    if "generator" in config and "train" in config.generator:  # image wde: its GAN, one step too
        shrink(config.generator)
    if "eval" in config and "attack_steps" in config.eval:
        config.eval.attack_steps = 1
        config.eval.epsilons = (0.1,)
    return config


def skip_without_data(config):
    """Image configs whose data set this machine lacks (CIFAR10 without internet) are skipped;
    MNIST is pinned to the bundled digits, so a prepared tfds MNIST changes nothing."""
    sections = [config] + ([config.generator] if "generator" in config else [])
    for section in sections:
        if "data" in section and section.data.get("dataset") == "mnist" and section.data.get("source") == "auto":
            section.data.source = "bundled"
    if "data" in config and config.data.get("dataset") in data.DATASETS and not data.is_available(config.data):
        pytest.skip(f"{config.data.dataset} is not available on this machine (see lipsort/data/images.py)")


@pytest.mark.parametrize("path, arg", list(variants()))
def test_config_builds(path, arg):
    config = load(path).get_config(arg)
    skip_without_data(config)
    module = load(path)
    doc = module.__doc__.strip()
    assert doc.splitlines()[0] and "python -m lipsort.main --config=configs/" in doc
    train.validate_config(config)  # raises on any invalid field


# One run per config file (its quick variant): the kinds of toy_wde share all the code
# but the samplers, which tests/test_distributions.py checks directly.
# robust_fashion_mnist_linf.py runs in test_robust.py (its :paper,quick on the IDX files);
# robust_fashion_mnist_conv_l2.py is robust_mnist_conv_l2.py's code on the IDX data, and
# robust_cifar10_conv_l2.py runs on synthetic batches in test_conv.py.
NOT_RUN_HERE = ("robust_fashion_mnist_linf.py", "robust_fashion_mnist_conv_l2.py", "robust_cifar10_conv_l2.py")


@pytest.mark.parametrize("path, arg", [p for p in variants() if p.values[1] == "quick"
                                       and not p.values[0].endswith(NOT_RUN_HERE)])
def test_config_runs_one_step(tmp_path, path, arg):
    config = shrink(load(path).get_config(arg))
    skip_without_data(config)
    if "generator_dir" in config:
        config.generator_dir = str(tmp_path / "generators")
    if config.experiment not in tasks.TASKS:
        pytest.skip(f"experiment {config.experiment!r} is not handled by lipsort.train")
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 1
    if config.model.constraint != "none":  # e.g. the WGAN-GP critic of gan_*.py has no certificate
        assert results["lipschitz_upper_bound"] <= results["lipschitz_constant"] * (1 + 1e-6)
    assert (tmp_path / "export.npz").exists()


def test_config_rejects_unknown_argument():
    for path in CONFIG_FILES:
        with pytest.raises(ValueError):
            load(path).get_config("no-such-variant")


def test_wde_lwgan_flag_selects_the_lipschitz_wgan_generator():
    from lipsort import config_loader

    config = config_loader.load_config("wde_mnist:lwgan,quick")
    plain = config_loader.load_config("wde_mnist:quick")
    assert config.generator.train.gp_weight == 0 and config.generator.model.constraint == "bjorck"
    assert plain.generator.train.gp_weight > 0 and plain.generator.model.constraint == "none"
    skip_without_data(config)
    train.validate_config(config)
    assert config_loader.load_config("wde_mnist:paper,lwgan").generator.data.pixel_range == (-1.0, 1.0)


def test_robust_riemannian_flag_changes_only_the_bjorck_training():
    from lipsort import config_loader

    for kind in ("", "relu,"):
        plain = config_loader.load_config(f"robust_mnist_l2:{kind}paper")
        fast = config_loader.load_config(f"robust_mnist_l2:{kind}paper,riemannian")
        assert (plain.model.bjorck_training, plain.train.optimizer) == ("retraction", "adam")
        assert (fast.model.bjorck_training, fast.train.optimizer) == ("riemannian", "riemannian_adam")
        fast.model.bjorck_training, fast.train.optimizer = plain.model.bjorck_training, plain.train.optimizer
        assert fast.to_dict() == plain.to_dict()  # the protocol's rate, schedule and length are kept
        train.validate_config(config_loader.load_config(f"robust_fashion_mnist_l2:{kind}paper,riemannian"))
    with pytest.raises(ValueError, match="'riemannian' trains Björck layers"):
        config_loader.load_config("robust_mnist_l2:unconstrained,riemannian")


def test_toy_paper_settings_run(tmp_path):
    """toy_wde.py:cones,paper: the paper's collinear cones with MaxMin, AggMo and its step
    decay, Björck in riemannian mode; one run of its quick variant certifies ≤ 1."""
    config = load(os.path.join(REPO, "configs", "toy_wde.py")).get_config("cones,paper,quick")
    assert (config.data.source, config.model.activation, config.train.optimizer) == ("cones_line", "max_min", "aggmo")
    full = load(os.path.join(REPO, "configs", "toy_wde.py")).get_config("cones,paper")
    assert full.model.widths == (312, 312, 312) and full.train.num_steps == 9600
    assert full.train.decay_steps == (512, 1024) and full.train.batch_size == 32
    results = train.train_and_evaluate(shrink(config), str(tmp_path))
    assert results["lipschitz_upper_bound"] <= 1 + 1e-6
    assert results["wasserstein_estimate"] <= results["exact_w1_samples"] + 1e-6
    with pytest.raises(ValueError, match="'paper' applies to"):
        load(os.path.join(REPO, "configs", "toy_wde.py")).get_config("translate,paper")
