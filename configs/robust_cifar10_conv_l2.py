r"""Provable ℓ2 robustness on CIFAR-10 with a Lipschitz conv net (BCOP convolutions).

    python -m lipsort.main --config=configs/robust_cifar10_conv_l2.py --workdir=/tmp/cifar_conv
    python -m lipsort.main --config=configs/robust_cifar10_conv_l2.py:quick
    python -m lipsort.main --config=configs/robust_cifar10_conv_l2.py:aol      # AOL convolutions

32×32×3 → conv 32 → GroupSort(2) → space_to_depth(2) → conv 64 → GroupSort(2) →
space_to_depth(2) → conv 128 → GroupSort(2) → flatten (8,192) → Björck dense 256 →
GroupSort(2) → 10; 3×3 BCOP convs, zero padding (``circular``: circular), multiclass
hinge with margin 1.5, pixels in [0, 1]. Certified and attacked at ℓ2 ε = 36/255 (the
standard CIFAR-10 radius), 0.5, 1.0.

Data: the official python batches (``cifar-10-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html, unpacked to ``cifar-10-batches-py`` in
``~/.keras/datasets``, ``~/data`` or ``./data``, or ``--config.data.data_dir=…``), or a
prepared tfds copy. Without them the run stops at once saying how to get them. The
tests run this config on synthetic batches.

Published reference points (../shared/PAPER_SETTINGS.md, clean / certified at ε = 36/255):
BCOP-Large 72.4 % / 58.7 % (LConvNet result files); SOC / CPL / Cayley / AOL on ConvNetM
(24 h of GPU training) 76.9 / 76.7 / 74.4 / 73.4 % clean, 66.3 / 65.1 / 61.0 / 61.0 %
certified (1LipschitzLayersCompared). Their networks are far larger than this one.

Not run here on real data: this machine has no CIFAR-10 (no internet), so there is no
measured time or result for this config yet.
"""
from configs import common

KINDS = common.ROBUST_CONV_KINDS
FLAGS = ("quick", "circular")
EPS_36_255 = 36 / 255


def get_config(arg=None):
    args = common.parse_arg(arg, __file__, kinds=KINDS, flags=FLAGS)
    config = common.robust_conv_config(args, "cifar10", num_images=None, config_file=__file__,
                                       channels=(32, 64, 128), downsample=(True, True, False))
    config.data.source = "auto"
    config.eval.epsilons = (EPS_36_255, 0.5, 1.0)
    if not args.quick:
        config.train.num_steps = 2000
    return config
