r"""Wasserstein-1 between CIFAR10 and a WGAN-GP generator: the paper's CIFAR10 column.

    python -m lipsort.main --config=configs/wde_cifar10.py --workdir=/tmp/wde_cifar10
    python -m lipsort.main --config=configs/wde_cifar10.py:quick --workdir=/tmp/wde_quick
    python -m lipsort.main --config=configs/wde_cifar10.py:paper   # the paper's protocol (below)
    python -m lipsort.main --config=configs/wde_cifar10.py:conv    # a conv critic (BCOP, below)

Needs CIFAR10 prepared for tensorflow-datasets (`tfds build cifar10
--file_format=array_record` where there is internet) or CIFAR-10's python batches
(``cifar-10-batches-py``, see configs/robust_cifar10_conv_l2.py); without them the run
stops at once with DataUnavailableError saying how to get them. ``conv``: the critic is a
conv net (configs/common.py:wde_conv_critic: BCOP convs 32, 64, 128 with GroupSort(2) and
space_to_depth, Björck head 256 → 1), certified in ℓ2 as the MLP. Critic MLP
3072 → 720 → 720 → 1, GroupSort(9), Björck (retraction); generator lipsort.tasks.gan's MLP
with a 3072-pixel output (sigmoid to [0, 1]), trained first if missing.

Not run here: this machine has no CIFAR10 (no internet), so there is no measured time or
result for this config yet.
"""
from configs import common

KINDS = common.WDE_KINDS  # ARG is [paper][,quick][,lwgan]


def get_config(arg=None):
    return common.wde_get_config("cifar10", arg, __file__)


def get_sweep(arg=None):
    """The sweeps of this config (configs/common.py:wde_sweep): ``table`` or ``modes``."""
    return common.wde_sweep(arg)
