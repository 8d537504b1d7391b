r"""Provable ℓ2 robustness on full Fashion-MNIST with a Lipschitz conv net (BCOP convolutions).

    python -m lipsort.main --config=configs/robust_fashion_mnist_conv_l2.py --workdir=/tmp/fm_conv
    python -m lipsort.main --config=configs/robust_fashion_mnist_conv_l2.py:quick
    python -m lipsort.main --config=configs/robust_fashion_mnist_conv_l2.py:aol     # AOL convolutions
    python -m lipsort.main --config=configs/robust_fashion_mnist_conv_l2.py:paper   # Li et al.'s protocol

The network of configs/robust_mnist_conv_l2.py (conv 16, 32, 64 with space_to_depth, BCOP,
GroupSort(2), Björck head 256; certified in ℓ2), on the 60,000 / 10,000 images of
Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``; read from
/usr/share/datasets/fashion-mnist, offline) or a prepared tfds copy. Without ``paper``
it trains 1,000 steps of 256 (≈ 4.3 epochs), as the short MLP table of
configs/robust_fashion_mnist_l2.py; ``paper``: 200 epochs of batch 128 on 54k / 6k.

Time and results (2 CPU cores, no GPU, 2026-12-02; `python experiments/conv_table.py
--budget_s=600 --num_test=2000 --strong_points=50`, 600 s of training each, 1,276 steps, on
the first 2,000 test images): clean 85.35 %, certified / PGD at ε = 0.5: 68.9 % / 73.2 %, at
ε = 1.58: 21.25 % / 38.7 % (``:aol``, 2,094 steps: 83.65 %, 67.55 % / 72.7 %, 19.1 % / 37.85 %;
the Björck MLP in the same time: 86.3 %, 72.1 % / 74.2 %, 24.95 % / 36.3 %). All of it:
experiments/results/robustness_conv_fashion_mnist.md.
"""
from configs import common

KINDS = common.ROBUST_CONV_KINDS
FLAGS = common.ROBUST_CONV_FLAGS
NUM_IMAGES = 60000


def get_config(arg=None):
    args = common.parse_arg(arg, __file__, kinds=KINDS, flags=FLAGS)
    config = common.robust_conv_config(args, "fashion_mnist", num_images=NUM_IMAGES, config_file=__file__)
    if not args.quick and "paper" not in args.flags:
        config.train.num_steps = 1000
    return config
