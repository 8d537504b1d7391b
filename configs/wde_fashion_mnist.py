r"""Wasserstein-1 between Fashion-MNIST and a WGAN-GP generator (the paper's table, on
a data set the paper did not use).

    python -m lipsort.main --config=configs/wde_fashion_mnist.py --workdir=/tmp/wde_fashion
    python -m lipsort.main --config=configs/wde_fashion_mnist.py:quick --workdir=/tmp/wde_quick
    python -m lipsort.main --config=configs/wde_fashion_mnist.py:paper   # the paper's protocol (below)

Same critic and training as configs/wde_mnist.py (MLP 784 → 720 → 720 → 1, GroupSort(9),
Björck, retraction). Generator: configs/gan_fashion_mnist.py's, trained first into
runs/generators/fashion_mnist-<hash> if missing, then reused. Data: config.data.source
'auto' (offline: Debian's dataset-fashion-mnist IDX files, 60,000 train / 10,000 test);
estimate and exact_w1_samples on 1,000 held-out test images vs 1,000 new generator samples.

Measured 2026-11-22 on 2 CPU cores, shared with other jobs, with the first command
(seed 0, generator already trained): wall_time_s 103 (1 min 51 s in all),
wasserstein_estimate 1.206, exact_w1_samples 5.875, lipschitz_upper_bound ≤ 1. Plus
4.4 min the first time, to train the generator (configs/gan_fashion_mnist.py).

The table at the paper's budget (``:paper``, 16,384 updates, Björck critics in riemannian
mode, seed 0; `python experiments/wde_table.py --dataset=fashion_mnist --paper --riemannian
--seeds=0`, 2 CPU cores, 2026-12-03): 173–261 s per spectral critic, 414–546 s per Björck
critic, 58.8 min for the 10; GroupSort(9) + Björck 4.285, MaxMin + Björck 4.000, ReLU +
Spectral 1.860, every ordering of the poster held
(experiments/results/wde_fashion_mnist_paper_riemannian.md). Seed 1 (``--seeds=1 --merge``,
idle cores, 2026-12-03, 42.8 min): every cell 0.01–0.22 lower (its held-out samples) and
every ordering kept. Seed 2 (``--seeds=2 --merge``, idle cores, 2026-12-03, 46.7 min):
3-seed means Björck ReLU 2.357, Maxout 3.508, MaxMin 3.931, GroupSort(4) 4.168,
GroupSort(9) 4.264; every ordering separated by a paired t-test over the seeds
(GroupSort(4) > MaxMin p = 0.0011, GroupSort(9) > MaxMin p = 0.0066, MaxMin > Maxout
p = 0.017; GroupSort(9) ≈ GroupSort(4) p = 0.098).
"""
from configs import common

KINDS = common.WDE_KINDS  # ARG is [paper][,quick][,lwgan]


def get_config(arg=None):
    return common.wde_get_config("fashion_mnist", arg, __file__)


def get_sweep(arg=None):
    """The sweeps of this config (configs/common.py:wde_sweep): ``table`` or ``modes``."""
    return common.wde_sweep(arg)
