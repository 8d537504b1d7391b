r"""Two moons with a 1-Lipschitz network: hinge vs BCE (the blog post's experiment).

    python -m lipsort.main --config=configs/two_moons.py
    python -m lipsort.main --config=configs/two_moons.py --config.train.loss=bce

Time on 2 CPU cores: ~15 s in-process, ~25 s for the whole command (quick: ~20 s; the
PGD attacks dominate the evaluation).
Expected (seed 0, measured): hinge test accuracy 1.000, certified accuracy at ε = 0.05 /
0.1 / 0.2: 0.998 / 0.990 / 0.899; BCE test accuracy 0.848 (the boundary cuts through
the moons: BCE keeps pushing margins that a 1-Lipschitz network cannot give).
"""
import ml_collections

from configs import common


def get_config(arg=None):
    quick = common.parse_arg(arg, __file__).quick
    config = ml_collections.ConfigDict()
    config.experiment = "classify"
    config.seed = 0

    config.model = common.model_section()
    config.model.widths = (16, 16) if quick else (64, 64, 64)
    config.model.activation = "group_sort"
    config.model.group_size = 2
    config.model.constraint = "bjorck"
    config.model.lipschitz_constant = 1.0
    config.model.norm = "l2"
    # Small square kernels: 8 Björck steps from the certified start keep them within
    # ~1e-3 of orthogonal while training; the export finishes orthonormalization exactly.
    config.model.bjorck_iters = 8
    config.model.power_iters = 1

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 40 if quick else 2000
    config.train.batch_size = 128
    config.train.learning_rate = 5e-3
    config.train.optimizer = "adam"
    config.train.schedule = "cosine"
    config.train.loss = "hinge"
    # Hinge margin in logit units; with K = 1 it is also a distance to the boundary, and
    # the moons are ~0.3–0.5 apart, so the margin must be small enough to be reachable.
    config.train.margin = 0.1
    config.train.log_every = 10 if quick else 200
    config.train.checkpoint_every = 20 if quick else 1000

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "two_moons"
    config.data.source = "synthetic"
    config.data.noise = 0.1
    config.data.num_train = 1000
    config.data.num_test = 1000

    config.eval = ml_collections.ConfigDict()
    config.eval.epsilons = (0.05, 0.1, 0.2)
    config.eval.attack_steps = 20 if quick else 50

    config.certify = ml_collections.ConfigDict()
    config.certify.search_steps = 5 if quick else 20
    return config


def get_sweep(arg=None):
    """``losses``: hinge vs BCE, one seed (experiments/toy_figures.py)."""
    from lipsort import sweep

    if arg != "losses":
        raise ValueError(f"Unknown sweep {arg!r}; valid sweeps are: losses.")
    return sweep.Sweep(tuple(sweep.options("train.loss", ("hinge", "bce"), names=("hinge", "bce"))), seeds=(0,),
                       metrics=("clean_accuracy", "train_accuracy"))
