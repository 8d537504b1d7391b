"""Train-step time of deel-torchlip and of plain PyTorch (run by benchmark.py part d).

Runs in its own virtual environment (PyTorch, no JAX):

    python -m venv /opt/venv-torchlip
    /opt/venv-torchlip/bin/pip install torch deel-torchlip
    /opt/venv-torchlip/bin/python scripts/torchlip_step.py --batch-sizes 256,1024

Models (784-1024-1024-1024-10, Adam lr 1e-3, multiclass hinge):
  - ``deel-torchlip``: ``SpectralLinear`` layers (power iteration, then up to 15 Björck
    steps with the first ones detached, stopping early at ‖Wₜ − Wₜ₋₁‖ < 1e-3, on every
    forward) and ``GroupSort2``: the library's standard 1-Lipschitz dense network;
  - ``torch relu``: ``nn.Linear`` + ReLU, unconstrained.
Prints one JSON object: per batch size and model, min and median seconds per step over
``--repeats`` interleaved chunks of ``--chunk`` steps (after 3 warm-up steps).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from deel import torchlip

WIDTHS = (1024, 1024, 1024)


def deel_model() -> torch.nn.Module:
    sizes = (784,) + WIDTHS
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torchlip.SpectralLinear(fan_in, fan_out), torchlip.GroupSort2()]
    return torchlip.Sequential(*layers, torchlip.SpectralLinear(sizes[-1], 10))


def plain_model() -> torch.nn.Module:
    sizes = (784,) + WIDTHS
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 10))


def make_step(model, batch_size, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(8, batch_size, 784, generator=gen)
    # deel-torchlip's hinge takes one-hot targets.
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (8, batch_size), generator=gen), 10).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torchlip.HingeMulticlassLoss(min_margin=0.3)
    counter = [0]

    def step():
        i = counter[0] % 8
        counter[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[i]), y[i])
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = dict(torch=torch.__version__, deel_torchlip=getattr(torchlip, "__version__", "?"),
               threads=torch.get_num_threads(), results=[])
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        steps = {"deel-torchlip": make_step(deel_model(), batch_size, 0),
                 "torch relu": make_step(plain_model(), batch_size, 0)}
        times = {name: [] for name in steps}
        for step in steps.values():
            for _ in range(3):
                step()
        for _ in range(args.repeats):
            for name, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.chunk):
                    step()
                times[name].append((time.perf_counter() - t0) / args.chunk)
        for name, t in times.items():
            out["results"].append(dict(batch_size=batch_size, model=name,
                                       s_min=float(np.min(t)), s_median=float(np.median(t))))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
