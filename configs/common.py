"""What the configs in configs/ share: the parser of ``--config=configs/NAME.py:ARG``'s
ARG, and the config builders that several files use (the WGAN-GP generator, the image
Wasserstein critic, the provable-robustness classifiers)."""
from __future__ import annotations

import dataclasses
import os

import ml_collections

def model_section() -> ml_collections.ConfigDict:
    """A ``config.model`` with the optional fields every model takes, typed so that the
    command line can set them (``--config.model.first_constraint=two_inf``): a plain
    None field could not be overridden."""
    model = ml_collections.ConfigDict()
    # None: the first layer follows from constraint and norm (lipsort.models).
    model.first_constraint = ml_collections.config_dict.placeholder(str)
    return model


def image_data_section(dataset: str, num_train: int = 0, num_test: int = 0) -> ml_collections.ConfigDict:
    """``config.data`` of an image experiment (lipsort.data.images): source ``auto`` (the
    first of a prepared tfds copy, local IDX files, the bundled digits), pixels in [0, 1],
    ``num_train``/``num_test`` images (0 = all)."""
    data = ml_collections.ConfigDict()
    data.dataset = dataset
    data.source = "auto"
    data.data_dir = ""
    data.pixel_range = (0.0, 1.0)
    data.num_train = num_train
    data.num_test = num_test
    return data


# The paper's WDE protocol (../shared/PAPER_SETTINGS.md, dualnets estimate_wde_gan.json).
PAPER_UPDATES_PER_EPOCH = 32
PAPER_EPOCHS = 512
PAPER_DECAY_EPOCHS = (64, 96, 128, 256, 392)


def apply_wde_paper_protocol(config: ml_collections.ConfigDict, quick: bool) -> ml_collections.ConfigDict:
    """The paper's critic training: batch 64 per side, 512 epochs × 32 = 16,384 updates,
    Adam 1e-3 (β = 0.9, 0.999) ×0.9 at epochs 64, 96, 128, 256, 392, gradient-norm
    clipping 0.1, pixels in [−1, 1] (data and generator), 27 unrolled Björck iterations
    (order 1, β = 0.5), 2 power iterations for spectral normalization, and the estimate
    also on training samples (32 batches of 64, fresh generator samples), as the paper
    reports it; both every 1,024 updates as a learning curve (``curve.jsonl``). ``quick``: the same protocol for 8 updates of the quick critic."""
    train = config.train
    train.batch_size = 64
    train.num_steps = 8 if quick else PAPER_EPOCHS * PAPER_UPDATES_PER_EPOCH
    train.learning_rate = 1e-3
    train.optimizer = "adam"
    train.schedule = "step"
    train.decay_steps = tuple(e * PAPER_UPDATES_PER_EPOCH for e in PAPER_DECAY_EPOCHS)
    train.decay_factor = 0.9
    train.grad_clip_norm = 0.1
    train.log_every = 4 if quick else 256
    train.checkpoint_every = 8 if quick else 1024
    config.model.bjorck_training = "unrolled"
    config.model.bjorck_iters = 27
    config.model.power_iters = 2
    config.data.pixel_range = (-1.0, 1.0)
    config.generator.data.pixel_range = (-1.0, 1.0)
    config.eval = ml_collections.ConfigDict()
    config.eval.train_batches = 2 if quick else 32  # the paper's estimate: on training samples
    config.eval.curve_every = 4 if quick else 1024  # learning curve of the exported critic (curve.jsonl)
    return config


WDE_KINDS = ("paper",)  # the paper's protocol
# lwgan: against the Lipschitz WGAN's generator (gan_*.py:lipschitz); dcgan: its convolutional one;
# conv: a convolutional critic (wde_conv_critic).
WDE_FLAGS = ("quick", "lwgan", "dcgan", "conv")


def wde_conv_critic(config: ml_collections.ConfigDict, quick: bool) -> ml_collections.ConfigDict:
    """A 1-Lipschitz conv critic (lipsort.conv_models) instead of the MLP: 3×3 BCOP convs
    (32, 64, 128 channels; quick: 8, 16) with GroupSort(2) on channels and space_to_depth(2)
    after the first two, then the Björck head (256; quick: 16) → 1. Certified in ℓ2 like
    the MLP critic, so its estimate is a lower bound of W1 all the same."""
    model = config.model
    model.kind = "conv"
    model.conv_channels = (8, 16) if quick else (32, 64, 128)
    model.downsample = (True, True) if quick else (True, True, False)
    model.kernel_size = 3
    model.padding = "zeros"
    model.conv_constraint = "bcop"
    model.widths = (16,) if quick else (256,)
    model.group_size = 2
    return config


def wde_get_config(dataset: str, arg: str | None, config_file: str) -> ml_collections.ConfigDict:
    """``get_config`` of configs/wde_<dataset>.py: ARG is [paper][,quick][,lwgan][,dcgan][,conv]."""
    args = parse_arg(arg, config_file, flags=WDE_FLAGS, kinds=WDE_KINDS)
    config = wde_image_config(dataset, quick=args.quick)
    config.generator = _gan_variant(config.generator, Arg(args.flags - {"conv"}))
    if "conv" in args.flags:
        wde_conv_critic(config, args.quick)
    return apply_wde_paper_protocol(config, args.quick) if args.kind == "paper" else config


# The paper's Wasserstein table rows: (name, activation, group size). Maxout takes the max
# of pairs, so its next layer sees half the width (1-Lipschitz, not norm preserving).
WDE_ACTIVATIONS = (
    ("ReLU", "relu", 2),
    ("Maxout", "maxout", 2),
    ("MaxMin", "max_min", 2),
    ("GroupSort(4)", "group_sort", 4),
    ("GroupSort(9)", "group_sort", 9),
)
WDE_CONSTRAINTS = (("Spectral", "spectral"), ("Björck", "bjorck"))
# How Björck layers train (config.model.bjorck_training), with the optimizer each needs:
# unrolled (the paper's: gradient through 27 iterations), riemannian (tangent gradients,
# Riemannian Adam, retraction after each update), retraction (Adam, then retraction).
WDE_MODES = (
    ("unrolled", {"model.bjorck_training": "unrolled"}),
    ("riemannian", {"model.bjorck_training": "riemannian", "train.optimizer": "riemannian_adam"}),
    ("retraction", {"model.bjorck_training": "retraction"}),
)
WDE_SWEEPS = ("table", "table_riemannian", "modes", "riemannian", "flip")
# What the short default run (configs/wde_*.py, no argument) does differently from the paper's
# protocol, one difference per cell (the ``flip`` sweep): which one reorders MaxMin and GroupSort(9)?
WDE_PROTOCOL_DIFFERENCES = (
    ("as configured", {}),
    ("pixels [-1, 1]", {"data.pixel_range": (-1.0, 1.0), "generator.data.pixel_range": (-1.0, 1.0)}),
    ("lr 1e-3", {"train.learning_rate": 1e-3}),
    ("batch 64", {"train.batch_size": 64}),
    ("clip 0.1", {"train.grad_clip_norm": 0.1}),
    ("riemannian", dict(WDE_MODES)["riemannian"]),
)


def wde_sweep(arg: str | None):
    """The image Wasserstein sweeps (``python -m lipsort.sweep --sweep=ARG``):

    - ``table``: the paper's table, 5 activations × {Spectral, Björck}, 3 seeds;
    - ``table_riemannian``: the same table with the Björck critics in riemannian mode
      (Riemannian Adam), the mode a 2-core CPU affords at the paper's 16,384 updates;
    - ``modes``: does the fast training change the answer? MaxMin, GroupSort(4), (9)
      under Björck × {unrolled, riemannian, retraction}, 3 seeds;
    - ``riemannian``: the same activations in riemannian mode only (e.g. for many more
      updates than ``modes`` can afford unrolled: the comparison at equal time);
    - ``flip``: MaxMin and GroupSort(9) under Björck × one difference between the config
      and the paper's protocol at a time (:data:`WDE_PROTOCOL_DIFFERENCES`): run on the
      default config, it says which difference reorders the two activations.
    """
    from lipsort import sweep

    def activations(names=None):
        return [sweep.Cell(name, {"model.activation": act, "model.group_size": g})
                for name, act, g in WDE_ACTIVATIONS if names is None or name in names]

    if arg in ("table", "table_riemannian"):
        bjorck_mode = dict(WDE_MODES)["riemannian"] if arg == "table_riemannian" else {}
        cells = sweep.product(activations(), [
            sweep.Cell(n, {"model.constraint": c, **(bjorck_mode if c == "bjorck" else {})})
            for n, c in WDE_CONSTRAINTS])
    elif arg in ("modes", "riemannian"):
        modes = [(n, o) for n, o in WDE_MODES if arg == "modes" or n == arg]
        cells = sweep.product(activations(("MaxMin", "GroupSort(4)", "GroupSort(9)")),
                              [sweep.Cell(n, {"model.constraint": "bjorck", **o}) for n, o in modes])
    elif arg == "flip":
        cells = sweep.product(activations(("MaxMin", "GroupSort(9)")),
                              [sweep.Cell(n, o) for n, o in WDE_PROTOCOL_DIFFERENCES])
    else:
        raise ValueError(f"Unknown sweep {arg!r}; valid sweeps are: {', '.join(WDE_SWEEPS)}.")
    return sweep.Sweep(
        tuple(cells), seeds=(0, 1) if arg == "flip" else (0, 1, 2),
        metrics=("wasserstein_estimate", "wasserstein_estimate_train", "exact_w1_samples", "lipschitz_upper_bound"),
        curve_metrics=("wasserstein_estimate", "wasserstein_estimate_train"),
    )


# --- the toy sweeps (experiments/toy_figures.py) ---------------------------------------------

# The activations the toy figures compare, with the group size each sets (None: keep the
# config's), × the two 2-norm constraints.
TOY_ACTIVATIONS = (("relu", None), ("maxout", 2), ("max_min", None), ("group_sort", 4), ("full_sort", None))
TOY_CONSTRAINTS = ("bjorck", "spectral")
TOY_SWEEPS = ("activations",)


def toy_activation_label(activation: str, group_size: int | None) -> str:
    return f"{activation}({group_size})" if activation in ("group_sort", "maxout") else activation


def toy_sweep(arg: str | None, metrics: tuple[str, ...]):
    """``activations``: every constraint of :data:`TOY_CONSTRAINTS` × activation of
    :data:`TOY_ACTIVATIONS`, one seed (cells named ``"<constraint>, <activation>"``)."""
    from lipsort import sweep

    if arg not in TOY_SWEEPS:
        raise ValueError(f"Unknown sweep {arg!r}; valid sweeps are: {', '.join(TOY_SWEEPS)}.")
    constraints = [sweep.Cell(c, {"model.constraint": c}) for c in TOY_CONSTRAINTS]
    activations = [sweep.Cell(toy_activation_label(a, g), {"model.activation": a, **({"model.group_size": g} if g else {})})
                   for a, g in TOY_ACTIVATIONS]
    return sweep.Sweep(tuple(sweep.product(constraints, activations)), seeds=(0,), metrics=metrics)


# --- the argument -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arg:
    """A parsed config argument: the flags given and the one KIND (or the default)."""

    flags: frozenset[str]
    kind: str | None = None

    @property
    def quick(self) -> bool:
        return "quick" in self.flags


def parse_arg(arg: str | None, config_file: str, *, flags: tuple[str, ...] = ("quick",),
              kinds: tuple[str, ...] = (), default_kind: str | None = None) -> Arg:
    """Parses ARG of ``configs/NAME.py:ARG``: None, "" or comma-separated tokens.

    Each token is one of ``flags`` (each at most once) or one of ``kinds`` (at most one
    in all: kinds exclude each other; ``default_kind`` when none is given). Anything else
    (an unknown, repeated or empty token, two kinds) raises a one-line ValueError naming
    ``config_file`` (a path or file name, e.g. ``__file__``) and what it takes.

    >>> parse_arg("translate,quick", "toy_wde.py", kinds=("cones", "translate"), default_kind="cones")
    Arg(flags=frozenset({'quick'}), kind='translate')
    """
    tokens = arg.split(",") if arg else []
    given_flags, given_kinds, problems = set(), [], []
    for token in tokens:
        if token in flags:
            if token in given_flags:
                problems.append(f"{token!r} given twice")
            given_flags.add(token)
        elif token in kinds:
            given_kinds.append(token)
        else:
            problems.append(f"unknown {token!r}" if token else "an empty argument")
    if len(given_kinds) > 1:
        problems.append(f"{' and '.join(map(repr, given_kinds))} exclude each other")
    if problems:
        usage = "".join(["[KIND]" if kinds else ""] + [f"[,{f}]" if kinds or i else f"[{f}]"
                                                        for i, f in enumerate(flags)])
        if kinds:
            default = f", default {default_kind}" if default_kind else ", default none"
            usage += f" with KIND one of {', '.join(kinds)}{default}"
        raise ValueError(f"configs/{os.path.basename(config_file)} takes the argument {usage}; "
                         f"got {arg!r}: {'; '.join(problems)}.")
    return Arg(frozenset(given_flags), given_kinds[0] if given_kinds else default_kind)


# --- the WGAN-GP generator (configs/gan_*.py and the generator section of configs/wde_*.py) -----


def gan_config(dataset: str = "mnist", quick: bool = False) -> ml_collections.ConfigDict:
    """The WGAN-GP config for ``dataset``; ``quick``: same experiment, a few steps.

    Defaults follow WGAN-GP (λ = 10, 5 critic steps, Adam(1e-4, β = (0.5, 0.9))), with
    MLPs small enough for 2 CPU cores; see configs/gan_mnist.py for the measured time.
    """
    from lipsort import data

    if dataset not in data.DATASETS:
        raise ValueError(f"dataset must be one of {data.DATASETS}, got {dataset!r}.")
    config = ml_collections.ConfigDict()
    config.experiment = "gan"
    config.seed = 0

    config.data = image_data_section(dataset)

    config.generator = ml_collections.ConfigDict()
    config.generator.latent_dim = 16 if quick else 64
    config.generator.widths = (32,) if quick else (256, 512)

    config.model = model_section()  # the critic
    config.model.widths = (32,) if quick else (512, 256)
    config.model.activation = "relu"
    config.model.group_size = 2
    config.model.constraint = "none"  # WGAN-GP: the gradient penalty, not a constraint
    config.model.lipschitz_constant = 1.0
    config.model.norm = "l2"

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 20 if quick else 3000  # generator updates
    config.train.critic_steps = 5
    config.train.batch_size = 32 if quick else 64
    config.train.learning_rate = 1e-4
    config.train.b1 = 0.5
    config.train.b2 = 0.9
    config.train.gp_weight = 10.0
    config.train.log_every = 10 if quick else 100
    config.train.checkpoint_every = 20 if quick else 1000

    config.eval = ml_collections.ConfigDict()
    config.eval.num_samples = 500 if quick else 1000  # held-out samples for the critic's gap

    config.certify = ml_collections.ConfigDict()
    config.certify.search_steps = 5 if quick else 20
    return config


GAN_KINDS = ("lipschitz",)
GAN_FLAGS = ("quick", "dcgan")  # dcgan: the convolutional generator instead of the MLP
# Chosen from a one-off timing under load (2026-12-02: a Lipschitz-critic generator step took
# 2.26× a WGAN-GP one, so 3,000 / 2.26 ≈ 1,300); the run then took 319 s against WGAN-GP's 322 s.
# On idle cores `python scripts/benchmark.py --parts=g` measures 1.64× (2026-12-02), which
# would make ~1,830 steps equal time there.
LWGAN_EQUAL_TIME_STEPS = 1300


def gan_lipschitz_critic(config: ml_collections.ConfigDict, quick: bool = False) -> ml_collections.ConfigDict:
    """The paper's Lipschitz WGAN (``configs/gan_*.py:lipschitz``): the critic is a certified
    1-Lipschitz network (Björck layers, GroupSort(4), K = 1) instead of the gradient
    penalty (``gp_weight`` 0), trained in riemannian mode with Riemannian Adam at the same
    rate and betas; its held-out gap is then a certified lower bound of W1(test, G).
    ``num_steps`` is set so that a run takes about the WGAN-GP run's wall time on 2 CPU
    cores (each critic update is dearer): the comparison is at equal time."""
    config.model.activation = "group_sort"
    config.model.group_size = 4
    config.model.constraint = "bjorck"
    config.model.bjorck_training = "riemannian"
    config.train.optimizer = "riemannian_adam"
    config.train.gp_weight = 0.0
    config.train.num_steps = 20 if quick else LWGAN_EQUAL_TIME_STEPS
    config.train.checkpoint_every = 20 if quick else 500
    return config


def gan_dcgan_generator(config: ml_collections.ConfigDict, quick: bool = False) -> ml_collections.ConfigDict:
    """A DCGAN-style convolutional generator (``:dcgan``; lipsort.tasks.gan.dcgan_apply):
    z → dense → a feature map at 1/4 (28×28) or 1/8 (32×32) of the image side → stride-2
    transposed 4×4 convolutions with ReLU → tanh to the pixel range, like the paper's
    infoGAN-style generator (its code: weight clipping; here WGAN-GP unless
    ``train.weight_clip`` > 0 and ``gp_weight`` 0)."""
    config.generator.architecture = "dcgan"
    side = config.data.dataset == "cifar10"
    config.generator.channels = (16, 8) if quick else ((256, 128, 64) if side else (128, 64))
    config.generator.widths = ()  # the MLP's field, unused by dcgan
    return config


def gan_get_config(dataset: str, arg: str | None, config_file: str) -> ml_collections.ConfigDict:
    """``get_config`` of configs/gan_<dataset>.py: ARG is [lipschitz][,quick][,dcgan]."""
    args = parse_arg(arg, config_file, flags=GAN_FLAGS, kinds=GAN_KINDS)
    return _gan_variant(gan_config(dataset, quick=args.quick), args)


def _gan_variant(config: ml_collections.ConfigDict, args: "Arg") -> ml_collections.ConfigDict:
    if "dcgan" in args.flags:
        gan_dcgan_generator(config, args.quick)
    return gan_lipschitz_critic(config, args.quick) if args.kind == "lipschitz" or "lwgan" in args.flags else config


# --- image Wasserstein estimation (configs/wde_<dataset>.py) ----------------------------------


def wde_image_config(dataset: str, quick: bool = False) -> ml_collections.ConfigDict:
    """The image Wasserstein config (configs/wde_<dataset>.py): the paper's critic, MLP
    784 → 720 → 720 → 1 with GroupSort(9) and Björck layers, against the generator of
    :func:`gan_config` (``dataset``). ``quick``: a tiny critic and generator, a few steps.
    """
    config = ml_collections.ConfigDict()
    config.experiment = "wde"
    config.seed = 0

    config.model = model_section()
    config.model.widths = (36, 36) if quick else (720, 720)  # quick: every sweep group size (2, 4, 9) divides 36
    config.model.activation = "group_sort"
    config.model.group_size = 9
    config.model.constraint = "bjorck"
    config.model.lipschitz_constant = 1.0
    config.model.norm = "l2"
    # Retraction: the kernel stays orthonormal by stop-gradient Björck steps after each
    # update (lipsort.retraction), instead of 15 unrolled iterations per forward pass on
    # 784×720 kernels, which cost seconds per step on 2 CPU cores. The export finishes
    # Björck exactly, so the certificate does not depend on this choice.
    config.model.bjorck_training = "retraction"
    config.model.bjorck_iters = 15
    config.model.power_iters = 1

    config.train = ml_collections.ConfigDict()
    # 300 steps at lr 3e-3: ~2.5 min on 2 shared CPU cores (measured, see configs/wde_mnist.py);
    # at lr 1e-3 the estimate after 200 steps was 0.72 against 1.07 here.
    config.train.num_steps = 5 if quick else 300
    config.train.batch_size = 32 if quick else 128
    config.train.learning_rate = 3e-3
    config.train.optimizer = "adam"
    config.train.schedule = "cosine"
    config.train.loss = "kr_dual"
    config.train.grad_clip_norm = 0.0  # off (the paper's protocol clips at 0.1)
    config.train.log_every = 5 if quick else 50
    config.train.checkpoint_every = 5 if quick else 300

    config.data = image_data_section(dataset)
    config.data.num_eval = 100 if quick else 1000  # held-out samples of each side

    config.generator = gan_config(dataset, quick=quick)
    config.generator_dir = "runs/generators"

    config.certify = ml_collections.ConfigDict()
    config.certify.search_steps = 5  # the W1 runs need the certificate, not a tight search
    return config


# --- provable robustness (configs/robust_*.py) ------------------------------------------------

# The baselines each robustness config takes as its KIND (none: the Lipschitz model).
ROBUST_KINDS = ("relu", "unconstrained")


def robust_base_config(quick: bool) -> ml_collections.ConfigDict:
    """What the ℓ2 and ℓ∞ robustness configs share: data, training, evaluation, and the
    model's architecture (its constraint, activation, norm and margin are each file's)."""
    config = ml_collections.ConfigDict()
    config.experiment = "classify"
    config.seed = 0

    config.model = model_section()
    config.model.widths = (128, 128, 128) if quick else (1024, 1024, 1024)
    config.model.group_size = 2
    config.model.lipschitz_constant = 1.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 150 if quick else 400
    config.train.batch_size = 256
    config.train.learning_rate = 1e-3
    config.train.optimizer = "adam"
    config.train.schedule = "cosine"
    config.train.loss = "multiclass_hinge"
    config.train.log_every = 25 if quick else 50
    config.train.checkpoint_every = 150 if quick else 200

    config.data = image_data_section("mnist", num_train=2000 if quick else 0, num_test=500 if quick else 0)
    config.data.num_val = 0  # training examples held out for model selection (0: none)

    config.eval = ml_collections.ConfigDict()
    config.eval.attack_steps = 10 if quick else 20
    config.eval.batch_size = 1000
    config.eval.curve_every = 0  # validation accuracy every so many steps (needs num_val)
    config.eval.select_best = ""  # "val_accuracy": evaluate the best model on the curve, not the last
    # A far stronger attack than the table's PGD on this many test points (0 = off; it
    # costs ~19 × 200 gradient steps per point: ≈ 1.8 points/s at width 1024 on 2 cores).
    config.eval.strong_attack = ml_collections.ConfigDict({"points": 0, "steps": 200, "restarts": 10})

    config.certify = ml_collections.ConfigDict()
    config.certify.search_steps = 5 if quick else 10
    return config


ROBUST_LINF_SWEEPS = ("screen",)
# One change to the ℓ∞ protocol per cell: what the "screen" sweep tries against it.
ROBUST_LINF_SCREEN = (
    ("protocol", {}),
    ("AggMo lr 0.01", {"train.learning_rate": 0.01}),
    ("AggMo lr 3.3e-4", {"train.learning_rate": 0.00033}),  # the rate after the first decay
    ("Adam 1e-3", {"train.optimizer": "adam", "train.learning_rate": 1e-3}),
    ("Adam 1e-4", {"train.optimizer": "adam", "train.learning_rate": 1e-4}),
    ("ball projection", {"model.linf_projection": "ball"}),
    ("GroupSort(4)", {"model.activation": "group_sort", "model.group_size": 4}),
)


def robust_linf_sweep(arg: str | None):
    """The ℓ∞ configs' sweeps (``python -m lipsort.sweep --sweep=ARG``):

    - ``screen``: the protocol against one change at a time (:data:`ROBUST_LINF_SCREEN`:
      learning rate (×3 and ×0.1), optimizer, projection, group size), one seed, tabulating clean and
      certified accuracy at ε = 0.05, 0.1 and plotting the validation curves. Meant for a
      short budget (e.g. ``--config.train.num_steps`` of 20 epochs) on ``:paper``, to pick
      what deserves a full-length run.
    """
    from lipsort import sweep

    if arg != "screen":
        raise ValueError(f"Unknown sweep {arg!r}; valid sweeps are: {', '.join(ROBUST_LINF_SWEEPS)}.")
    return sweep.Sweep(
        tuple(sweep.Cell(name, overrides) for name, overrides in ROBUST_LINF_SCREEN), seeds=(0,),
        metrics=("clean_accuracy", "certified_accuracy/0.05", "certified_accuracy/0.1", "train_accuracy"),
        curve_metrics=("val_accuracy", "val_certified_0.1"),
    )


def robust_apply_kind(config: ml_collections.ConfigDict, kind: str | None) -> ml_collections.ConfigDict:
    """The baselines: ``relu`` (same constraint) or ``unconstrained`` (the usual network)."""
    if kind == "relu":
        config.model.activation = "relu"
    if kind == "unconstrained":
        # No constraint, ReLU, cross-entropy, Adam at the usual rate, K = 1. Its certificate
        # is the product of the raw layers' operator norms, far too loose to certify anything.
        config.model.activation = "relu"
        config.model.constraint = "none"
        config.model.first_constraint = None
        config.model.lipschitz_constant = 1.0
        config.train.loss = "cross_entropy"
        config.train.optimizer = "adam"
        config.train.learning_rate = 1e-3
    return config


# The flags every robustness config takes: ``paper`` (the paper's protocol, below) and,
# for MNIST, ``full`` (full MNIST from a prepared tfds copy instead of the bundled digits).
ROBUST_FLAGS = ("quick", "paper")
# The ℓ2 configs also take ``riemannian`` (:func:`robust_apply_riemannian`).
ROBUST_L2_FLAGS = (*ROBUST_FLAGS, "riemannian")
PAPER_ROBUST_EPOCHS = 200
PAPER_ROBUST_BATCH = 128
PAPER_LINF_DECAY_EPOCHS = (60, 100, 150)  # lr × 0.1 at each
PAPER_L2_DECAY_PER_EPOCH = 0.96235


def robust_apply_riemannian(config: ml_collections.ConfigDict, args: Arg,
                            config_file: str) -> ml_collections.ConfigDict:
    """The ``riemannian`` argument of an ℓ2 robustness config: its Björck layers train in
    riemannian mode (tangent gradients, lazy low-rank retraction) with Riemannian Adam at
    the protocol's own learning rate and schedule, in place of retraction mode with Adam.

    The CPU-sized choice for long runs: on the bundled-MNIST ``paper`` protocol (5,800
    updates of 128, 2 CPU cores, 2026-12-03) the GroupSort model took 310 s against 544 s
    in retraction mode, and certified more (docstring of configs/robust_mnist_l2.py)."""
    if "riemannian" not in args.flags:
        return config
    if config.model.constraint != "bjorck":
        raise ValueError(f"configs/{os.path.basename(config_file)}: 'riemannian' trains Björck layers; the "
                         f"{args.kind or 'default'} model has constraint {config.model.constraint!r}.")
    config.model.bjorck_training = "riemannian"
    config.train.optimizer = "riemannian_adam"
    return config


def robust_apply_paper(config: ml_collections.ConfigDict, args: Arg, num_images: int | None, *, linf: bool,
                       config_file: str) -> ml_collections.ConfigDict:
    """The ``paper`` (and ``full``) arguments of a robustness config: ``num_images`` is the
    size of the training split the epochs count on; None for MNIST, whose :paper run reads
    the 4,000 bundled training digits, or with ``full`` the 60,000 of a prepared tfds copy."""
    if "full" in args.flags and "paper" not in args.flags:
        raise ValueError(f"configs/{os.path.basename(config_file)}: 'full' selects the paper protocol's data; "
                         "use paper,full.")
    if "paper" not in args.flags:
        return config
    if num_images is None:
        config.data.source = "tfds" if "full" in args.flags else "bundled"
        num_images = 60000 if "full" in args.flags else 4000
    if args.quick:
        num_images = config.data.num_train
    return robust_paper_protocol(config, num_images=num_images, linf=linf, quick=args.quick)


def robust_paper_protocol(config: ml_collections.ConfigDict, *, num_images: int, linf: bool,
                          quick: bool) -> ml_collections.ConfigDict:
    """The paper's classifier training (../shared/PAPER_SETTINGS.md) on a training set of
    ``num_images``: 10 % held out for validation (MNIST's 54k/6k), batch 128, 200 epochs,
    the validation accuracy after every epoch, and the best model by it evaluated.

    ``linf``: AggMo lr 0.0033, betas (0, 0.9, 0.99), × 0.1 at epochs 60, 100, 150 (LNets'
    ``fc_classification_l_inf_margin``; K = 1000 and margin 0.3·K are the model's own,
    set by the ℓ∞ config). Otherwise Li et al.'s ℓ2 protocol: Adam 1e-3 × 0.96235 per
    epoch. ``quick``: 2 epochs of the quick data.
    """
    num_val = num_images // 10
    steps_per_epoch = -(-(num_images - num_val) // PAPER_ROBUST_BATCH)  # ceil: the last partial batch
    epochs = 2 if quick else PAPER_ROBUST_EPOCHS
    config.data.num_val = num_val
    train = config.train
    train.batch_size = PAPER_ROBUST_BATCH
    train.num_steps = epochs * steps_per_epoch
    train.log_every = steps_per_epoch
    train.checkpoint_every = steps_per_epoch * (1 if quick else 10)
    if linf:
        train.optimizer = "aggmo"
        train.learning_rate = 0.0033
        train.schedule = "step"
        train.decay_steps = tuple(e * steps_per_epoch for e in PAPER_LINF_DECAY_EPOCHS)
        train.decay_factor = 0.1
    else:
        train.optimizer = "adam"
        train.learning_rate = 1e-3
        train.schedule = "exponential"
        train.decay_every = steps_per_epoch
        train.decay_factor = PAPER_L2_DECAY_PER_EPOCH
    config.eval.curve_every = steps_per_epoch
    config.eval.select_best = "val_accuracy"
    return config


# --- convolutional robustness configs (configs/robust_*_conv_l2.py) ---------------------------

ROBUST_CONV_KINDS = ("aol", "relu", "unconstrained")  # default: BCOP convs + GroupSort
ROBUST_CONV_FLAGS = ("quick", "paper", "circular")


def robust_conv_config(args: Arg, dataset: str, *, num_images: int | None, config_file: str,
                       channels: tuple[int, ...] = (16, 32, 64),
                       downsample: tuple[bool, ...] = (True, True, False)) -> ml_collections.ConfigDict:
    """A certified ℓ2 conv classifier (lipsort.conv_models): conv layers of ``channels``
    (3×3, BCOP-orthogonal, zero padding; ``circular``: circular padding), GroupSort(2) on
    channels, space_to_depth(2) after the layers ``downsample`` marks, then a Björck
    (retraction) head 256 → 10; multiclass hinge with margin 1.5 as the ℓ2 MLPs. Kinds:
    ``aol`` (AOL convs), ``relu``, ``unconstrained`` (no constraint anywhere, ReLU,
    cross-entropy). ``quick``: channels (8, 16), head 64, 2,000 training images."""
    config = robust_base_config(args.quick)
    config.data.dataset = dataset
    model = config.model
    model.kind = "conv"
    model.conv_channels = (8, 16) if args.quick else channels
    model.downsample = (True, True) if args.quick else downsample
    model.kernel_size = 3
    model.padding = "circular" if "circular" in args.flags else "zeros"
    model.conv_constraint = "aol" if args.kind == "aol" else "bcop"
    model.widths = (64,) if args.quick else (256,)
    model.activation = "group_sort"
    model.constraint = "bjorck"
    model.norm = "l2"
    model.bjorck_iters = 15  # the BCOP factors' unrolled Björck steps (small matrices)
    model.bjorck_training = "retraction"  # the dense head, as the ℓ2 MLPs
    config.train.margin = 1.5
    config.eval.epsilons = (0.3, 0.5, 1.0, 1.58)
    robust_apply_paper(config, args, num_images, linf=False, config_file=config_file)
    if args.kind == "unconstrained":
        model.conv_constraint = "none"
    return robust_apply_kind(config, args.kind if args.kind != "aol" else None)
