r"""WGAN-GP generator on Fashion-MNIST: the generator of configs/wde_fashion_mnist.py.

    python -m lipsort.main --config=configs/gan_fashion_mnist.py --workdir=/tmp/gan_fashion
    python -m lipsort.main --config=configs/gan_fashion_mnist.py:quick --workdir=/tmp/gan_quick
    python -m lipsort.main --config=configs/gan_fashion_mnist.py:lipschitz   # certified critic, no penalty
    python -m lipsort.main --config=configs/gan_fashion_mnist.py:dcgan       # convolutional generator

Same networks and optimizer as configs/gan_mnist.py. Data: config.data.source 'auto'
(offline: Debian's dataset-fashion-mnist IDX files, 60,000 train / 10,000 test).

Time on 2 CPU cores (shared with other jobs), measured 2026-11-22 with the first command:
wall_time_s 263.4 (4.4 min; ~12 generator steps/s). Result (seed 0): recognisable, noisy
garments (experiments/results/gan_fashion_mnist_samples.png); the WGAN-GP critic's gap on
1,000 held-out images is 1.95 (uncertified: its lipschitz_upper_bound is 16.1).
"""
from configs import common


KINDS = common.GAN_KINDS  # lipschitz: a certified critic instead of the gradient penalty


def get_config(arg=None):
    return common.gan_get_config("fashion_mnist", arg, __file__)
