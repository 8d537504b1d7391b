"""Björck residual ‖WᵀW − I‖₂ after k iterations from the certified start.

    python scripts/bjorck_residuals.py [--dtype float32|float64] [--seed 0]

Starts: a Gaussian matrix (the worst case for a fresh layer) and a near-orthogonal one
(polar factor + 1e-2 noise, the situation of a layer during training). Prints one
table per start: rows = (shape, order), columns = iterations.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from lipsort.orthogonal import bjorck, orthogonality_residual, polar

SHAPES = [(256, 256), (784, 1024), (1024, 1024), (1024, 10)]
ITERS = [1, 2, 3, 5, 10, 15, 20, 30]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with jax.enable_x64(args.dtype == "float64"):
        dtype = jnp.dtype(args.dtype)
        rng = np.random.default_rng(args.seed)
        for start in ("gaussian", "near-orthogonal"):
            print(f"\nstart = {start}, dtype = {args.dtype}; residual ‖WᵀW − I‖₂ after k iterations")
            print("shape        order " + " ".join(f"{k:>9d}" for k in ITERS))
            for shape in SHAPES:
                w = jnp.asarray(rng.normal(size=shape), dtype)
                if start == "near-orthogonal":
                    w = polar(w) + 1e-2 * jnp.asarray(rng.normal(size=shape), dtype) / np.sqrt(max(shape))
                for order in (1, 2, 3, 4):
                    run = jax.jit(lambda w, k: orthogonality_residual(bjorck(w, k, order=order)), static_argnums=1)
                    res = [float(run(w, k)) for k in ITERS]
                    print(f"{str(shape):12s} {order:5d} " + " ".join(f"{r:9.1e}" for r in res))


if __name__ == "__main__":
    main()
