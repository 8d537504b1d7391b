r"""Provable ℓ2 robustness on MNIST with a Lipschitz conv net (BCOP convolutions).

    python -m lipsort.main --config=configs/robust_mnist_conv_l2.py:quick --workdir=/tmp/conv_quick
    python -m lipsort.main --config=configs/robust_mnist_conv_l2.py --workdir=/tmp/conv
    python -m lipsort.main --config=configs/robust_mnist_conv_l2.py:aol          # AOL convolutions
    python -m lipsort.main --config=configs/robust_mnist_conv_l2.py:paper        # Li et al.'s protocol

28×28×1 → conv 16 → GroupSort(2) → space_to_depth(2) → conv 32 → GroupSort(2) →
space_to_depth(2) → conv 64 → GroupSort(2) → flatten (3,136) → Björck dense 256 →
GroupSort(2) → 10. Every conv is 3×3, BCOP-orthogonal (lipsort.conv_constraints), zero
padding (``circular``: circular); space_to_depth is a permutation; so f is 1-Lipschitz in
ℓ2 and certified from the export by the per-layer bounds of lipsort.convolution (a proven
upper bound for zero padding). Loss, margin (1.5), ε and data as configs/robust_mnist_l2.py
(bundled digits offline). Kinds: ``aol``, ``relu``, ``unconstrained``; flags ``quick``,
``paper`` (:func:`configs.common.robust_paper_protocol`), ``circular``.

Time and results (2 CPU cores, no GPU, 2026-12-02, a niced training job sharing the
cores): ``:quick`` (channels 8, 16, head 64, 150 steps of 256 on 2,000 bundled digits, 500
test digits; the first command above) took 106 s; clean 90.2 %, certified / PGD at ε = 0.3:
79.0 % / 84.4 %, 0.5: 69.8 % / 80.8 %, 1.0: 33.8 % / 62.8 %, 1.58: 4.2 % / 36.2 %; certified
bound 0.999999, lower-bound search 0.79. The full-size network on full Fashion-MNIST:
experiments/results/robustness_conv_fashion_mnist.md.
"""
from configs import common

KINDS = common.ROBUST_CONV_KINDS
FLAGS = common.ROBUST_CONV_FLAGS


def get_config(arg=None):
    args = common.parse_arg(arg, __file__, kinds=KINDS, flags=FLAGS)
    return common.robust_conv_config(args, "mnist", num_images=None, config_file=__file__)
