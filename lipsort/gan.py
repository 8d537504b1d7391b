"""WGAN-GP on images: the generator whose samples the Wasserstein table compares with data.

Two networks, so this experiment owns its loop (:func:`run`, reached through
``lipsort.train.train_and_evaluate`` for ``config.experiment = 'gan'``):

- generator G: an MLP z ~ N(0, I_latent) → ReLU hidden layers → lo + (hi − lo)·sigmoid(·),
  so every sample lies in ``config.data.pixel_range``;
- critic D: a :class:`lipsort.models.LipschitzMLP` from ``config.model`` (by default
  unconstrained, ``constraint='none'``, as in WGAN-GP), trained with the gradient
  penalty of Gulrajani et al. (2017):

      L_D = E D(G(z)) − E D(x) + λ · E (‖∇D(x̂)‖₂ − 1)²,   x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1]
      L_G = −E D(G(z))

  with ``config.train.critic_steps`` critic updates per generator update.

One "step" is one generator update. The run writes the usual files (``config.json``,
``metrics.jsonl``, ``results.json``, orbax checkpoints with resume, the critic's
``export.npz``) and ``samples.png``, a grid of generator samples. The critic of a
WGAN-GP is *not* certified: its ``lipschitz_upper_bound`` (product of exact layer
norms) is reported as it is, usually far above 1.

A finished run directory is a reusable generator: :func:`load_generator` rebuilds G
from its ``config.json`` and latest checkpoint; :func:`ensure_generator` trains one
first when the directory has none (used by the image Wasserstein runs in
:mod:`lipsort.wde`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from lipsort import certify, data, plots
from lipsort.export import export_model, save_export
from lipsort.models import LipschitzMLP, spec_from_config
from lipsort.train import (
    ConfigError,
    Task,
    _check_int,
    _check_same_run,
    _Checkpointer,
    _get,
    _truncate_metrics,
    _write_json,
    config_to_dict,
    read_metrics,
    run_chunked_loop,
)

Array = jax.Array


# --- the default config (configs/gan_*.py and the generator section of configs/wde_*.py) -----


def gan_config(dataset: str = "mnist", quick: bool = False) -> ml_collections.ConfigDict:
    """The WGAN-GP config for ``dataset``; ``quick``: same experiment, a few steps.

    Defaults follow WGAN-GP (λ = 10, 5 critic steps, Adam(1e-4, β = (0.5, 0.9))), with
    MLPs small enough for 2 CPU cores; see configs/gan_mnist.py for the measured time.
    """
    if dataset not in data.DATASETS:
        raise ValueError(f"dataset must be one of {data.DATASETS}, got {dataset!r}.")
    config = ml_collections.ConfigDict()
    config.experiment = "gan"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.dataset = dataset
    config.data.source = "auto"
    config.data.data_dir = ""
    config.data.pixel_range = (0.0, 1.0)
    config.data.num_train = 0
    config.data.num_test = 0

    config.generator = ml_collections.ConfigDict()
    config.generator.latent_dim = 16 if quick else 64
    config.generator.widths = (32,) if quick else (256, 512)

    config.model = ml_collections.ConfigDict()  # the critic
    config.model.widths = (32,) if quick else (512, 256)
    config.model.activation = "relu"
    config.model.group_size = 2
    config.model.constraint = "none"  # WGAN-GP: the gradient penalty, not a constraint
    config.model.lipschitz_constant = 1.0
    config.model.norm = "l2"

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 20 if quick else 3000  # generator updates
    config.train.critic_steps = 5
    config.train.batch_size = 32 if quick else 64
    config.train.learning_rate = 1e-4
    config.train.b1 = 0.5
    config.train.b2 = 0.9
    config.train.gp_weight = 10.0
    config.train.log_every = 10 if quick else 100
    config.train.checkpoint_every = 20 if quick else 1000

    config.eval = ml_collections.ConfigDict()
    config.eval.num_samples = 500 if quick else 1000  # held-out samples for the critic's gap

    config.certify = ml_collections.ConfigDict()
    config.certify.search_steps = 5 if quick else 20
    return config


# --- validation ---------------------------------------------------------------------------


def validate(config) -> list[str]:
    """Every problem with a gan config, as messages (nothing is loaded or trained)."""
    errors = []
    try:
        req = data.parse_config(_get(config, "data"))
        dim = int(np.prod(data.IMAGE_SHAPES[req.dataset]))
    except ValueError as e:
        errors.append(str(e))
        dim = 1
    gen = _get(config, "generator")
    if gen is None:
        errors.append("config.generator is missing (latent_dim, widths).")
    else:
        _check_int(errors, "config.generator.latent_dim", _get(gen, "latent_dim"))
        widths = _get(gen, "widths", ())
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            errors.append(f"config.generator.widths must be positive integers, got {widths!r}.")
    _check_int(errors, "config.seed", _get(config, "seed"), minimum=0)
    try:
        spec_from_config(_get(config, "model"), dim, 1)
    except (ValueError, TypeError, AttributeError) as e:
        errors.append(f"config.model (the critic): {e}")
    train = _get(config, "train")
    if train is None:
        errors.append("config.train is missing.")
        return errors
    for name in ("num_steps", "critic_steps", "batch_size", "log_every", "checkpoint_every"):
        _check_int(errors, f"config.train.{name}", _get(train, name))
    for name, lo, hi in (("learning_rate", 0, math.inf), ("b1", -1e-12, 1), ("b2", -1e-12, 1),
                         ("gp_weight", -1e-12, math.inf)):
        v = _get(train, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v < hi):
            errors.append(f"config.train.{name} must be a number in ({max(lo, 0)}, {hi}), got {v!r}.")
    _check_int(errors, "config.eval.num_samples", _get(_get(config, "eval"), "num_samples"), minimum=2)
    return errors


def make_task(config) -> Task:
    """For :func:`lipsort.train.validate_config`: checks the config and describes the
    critic (the network that is exported). Training goes through :func:`run`."""
    errors = validate(config)
    if errors:
        raise ValueError("; ".join(errors))
    dim = int(np.prod(data.IMAGE_SHAPES[config.data.dataset]))

    def own_loop(*_):
        raise RuntimeError("the gan experiment has its own loop: call lipsort.gan.run(config, workdir).")

    return Task(in_features=dim, out_features=1, data_source=f"(loaded by lipsort.gan.run: {config.data.dataset})",
                sample_batch=own_loop, loss=own_loop, evaluate=own_loop,
                certify_points=np.zeros((1, dim), np.float32))


# --- the generator: a pure function of a pytree ----------------------------------------------


def init_generator(key: Array, latent_dim: int, widths, out_dim: int) -> list[dict[str, Array]]:
    """He-normal kernels (the hidden layers are ReLU), zero biases."""
    sizes = [latent_dim, *widths, out_dim]
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"kernel": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "bias": jnp.zeros((b,))}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def generator_apply(params, z: Array, pixel_range) -> Array:
    """G(z) = lo + (hi − lo)·sigmoid(W_n relu(… relu(W_1 z + b_1) …) + b_n)."""
    h = z
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
    lo, hi = pixel_range
    return lo + (hi - lo) * jax.nn.sigmoid(h @ params[-1]["kernel"] + params[-1]["bias"])


@dataclasses.dataclass(frozen=True)
class Generator:
    """A trained generator: ``sample(key, n)`` draws n flattened images."""

    params: Any
    latent_dim: int
    pixel_range: tuple[float, float]
    image_shape: tuple
    directory: str

    def sample(self, key: Array, n: int) -> Array:
        z = jax.random.normal(key, (n, self.latent_dim))
        return generator_apply(self.params, z, self.pixel_range)


# --- state, checkpoints, reuse ----------------------------------------------------------------


def _optimizer(train) -> optax.GradientTransformation:
    return optax.adam(float(train.learning_rate), b1=float(train.b1), b2=float(train.b2))


def _init_state(config):
    """(graphdef of the critic, state) with state = (G params, D params, D rest, G opt, D opt)."""
    dim = int(np.prod(data.IMAGE_SHAPES[config.data.dataset]))
    key = jax.random.PRNGKey(int(config.seed))
    g_params = init_generator(jax.random.fold_in(key, 0), int(config.generator.latent_dim),
                              tuple(config.generator.widths), dim)
    critic = LipschitzMLP(spec_from_config(config.model, dim, 1), rngs=nnx.Rngs(int(config.seed) + 1))
    graphdef, c_params, c_rest = nnx.split(critic, nnx.Param, ...)
    tx = _optimizer(config.train)
    return graphdef, (g_params, c_params, c_rest, tx.init(g_params), tx.init(c_params))


def generator_dir(base: str, gan_cfg) -> str:
    """``base/<dataset>-<10 hex digits of the config's hash>``: a changed GAN config
    gets its own directory, an unchanged one finds the generator trained before."""
    blob = json.dumps(config_to_dict(gan_cfg), sort_keys=True)
    return os.path.join(base, f"{gan_cfg.data.dataset}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}")


def is_trained(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "results.json"))


def load_generator(directory: str) -> Generator:
    """The generator of a finished gan run in ``directory`` (its config and last checkpoint)."""
    if not is_trained(directory):
        raise FileNotFoundError(
            f"no finished gan run in {directory!r} (no results.json); train one with "
            "python -m lipsort.main --config=configs/gan_mnist.py --workdir=DIR."
        )
    with open(os.path.join(directory, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    _, state = _init_state(config)
    checkpointer = _Checkpointer(os.path.join(directory, "checkpoints"))
    step, state = checkpointer.restore(state)
    checkpointer.close()
    if step is None:
        raise FileNotFoundError(f"{directory!r} has results.json but no checkpoint; train it again.")
    return Generator(state[0], int(config.generator.latent_dim), tuple(config.data.pixel_range),
                     data.IMAGE_SHAPES[config.data.dataset], directory)


def ensure_generator(gan_cfg, directory: str) -> Generator:
    """Loads the generator in ``directory``, training it there first if it is missing.

    Training runs in a child process: this may be called while JAX traces another
    function (a critic's batch sampler), where the GAN's own jitted loop must not be
    staged into that trace.
    """
    if not is_trained(directory):
        errors = validate(gan_cfg)
        if errors:
            raise ConfigError("invalid generator config:\n  - " + "\n  - ".join(errors))
        os.makedirs(directory, exist_ok=True)
        request = os.path.join(directory, "gan_request.json")
        _write_json(request, config_to_dict(gan_cfg))
        logging.info("no generator in %s: training one (%d steps) first", directory, gan_cfg.train.num_steps)
        subprocess.run([sys.executable, "-m", "lipsort.gan", request, directory], check=True)
    return load_generator(directory)


# --- the loop -------------------------------------------------------------------------------


def _critic_fn(graphdef, params, rest):
    model = nnx.merge(graphdef, params, rest, copy=True)  # copy=True: inside jax.grad
    return model, (lambda x: model(x)[:, 0])


def make_step(graphdef, config, x_train: Array, data_key: Array):
    """One generator update after ``critic_steps`` critic updates, as a pure function."""
    train = config.train
    batch, latent = int(train.batch_size), int(config.generator.latent_dim)
    n_critic, gp_weight = int(train.critic_steps), float(train.gp_weight)
    pixel_range = tuple(float(v) for v in config.data.pixel_range)
    tx = _optimizer(train)

    def critic_loss(c_params, c_rest, real, fake, eps):
        model, d = _critic_fn(graphdef, c_params, c_rest)
        x_hat = eps * real + (1.0 - eps) * fake
        grads = jax.vmap(jax.grad(lambda x: d(x[None])[0]))(x_hat)
        penalty = jnp.mean((jnp.sqrt(jnp.sum(grads**2, axis=-1) + 1e-12) - 1.0) ** 2)
        gap = jnp.mean(d(real)) - jnp.mean(d(fake))
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        return -gap + gp_weight * penalty, ({"critic_w1": gap, "gradient_penalty": penalty}, new_rest)

    def generator_loss(g_params, c_params, c_rest, z):
        _, d = _critic_fn(graphdef, c_params, c_rest)
        return -jnp.mean(d(generator_apply(g_params, z, pixel_range)))

    def critic_update(g_params, carry, key):
        c_params, c_rest, c_opt = carry
        kr, kz, ke = jax.random.split(key, 3)
        real = x_train[jax.random.randint(kr, (batch,), 0, x_train.shape[0])]
        fake = generator_apply(g_params, jax.random.normal(kz, (batch, latent)), pixel_range)
        eps = jax.random.uniform(ke, (batch, 1))
        (loss, (aux, c_rest)), grads = jax.value_and_grad(critic_loss, has_aux=True)(c_params, c_rest, real, fake, eps)
        updates, c_opt = tx.update(grads, c_opt, c_params)
        return (optax.apply_updates(c_params, updates), c_rest, c_opt), (loss, aux)

    def step_fn(state, step):
        g_params, c_params, c_rest, g_opt, c_opt = state
        key = jax.random.fold_in(data_key, step)
        (c_params, c_rest, c_opt), (c_losses, aux) = jax.lax.scan(
            lambda carry, k: critic_update(g_params, carry, k),
            (c_params, c_rest, c_opt), jax.random.split(jax.random.fold_in(key, 0), n_critic),
        )
        z = jax.random.normal(jax.random.fold_in(key, 1), (batch, latent))
        g_loss, g_grads = jax.value_and_grad(generator_loss)(g_params, c_params, c_rest, z)
        updates, g_opt = tx.update(g_grads, g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        aux = {k: v[-1] for k, v in aux.items()}
        return (g_params, c_params, c_rest, g_opt, c_opt), (c_losses[-1], {**aux, "generator_loss": g_loss})

    return step_fn


def run(config, workdir: str, *, stop_after_step: int | None = None) -> dict | None:
    """Trains the WGAN-GP ``config`` describes in ``workdir`` (resuming if it can) and
    returns results.json; ``stop_after_step`` simulates a kill (returns None), for tests."""
    start_time = time.time()
    errors = validate(config)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    images = data.load(config.data)  # a missing data set fails here, before any training
    config_dict = config_to_dict(config)
    os.makedirs(workdir, exist_ok=True)
    _check_same_run(workdir, config_dict)
    _write_json(os.path.join(workdir, "config.json"), config_dict)
    logging.info("gan: %s from %s, %d training images", images.name, images.source, len(images.x_train))

    train = config.train
    num_steps, log_every, ckpt_every = int(train.num_steps), int(train.log_every), int(train.checkpoint_every)
    graphdef, state = _init_state(config)
    checkpointer = _Checkpointer(os.path.join(workdir, "checkpoints"))
    step, state = checkpointer.restore(state)
    resumed_from = step
    step = step or 0
    _truncate_metrics(workdir, step)

    seed_key = jax.random.PRNGKey(int(config.seed))
    data_key, eval_key = jax.random.fold_in(seed_key, 1), jax.random.fold_in(seed_key, 2)
    step_fn = make_step(graphdef, config, jnp.asarray(images.x_train), data_key)
    run_chunk = jax.jit(lambda state, steps: jax.lax.scan(step_fn, state, steps))

    def check(step, end, losses, aux, state):
        if not np.all(np.isfinite(losses)) or not np.all(np.isfinite(np.asarray(aux["generator_loss"]))):
            raise FloatingPointError(
                f"non-finite GAN loss between steps {step + 1} and {end} of {workdir}; "
                "lower config.train.learning_rate."
            )

    state, step, stopped = run_chunked_loop(
        run_chunk, state, step, num_steps=num_steps, log_every=log_every, ckpt_every=ckpt_every,
        workdir=workdir, checkpointer=checkpointer, start_time=start_time, check=check,
        describe=lambda r: f"critic loss {r['loss']:.4g}  critic W1 {r['critic_w1']:.4g}",
        stop_after_step=stop_after_step,
    )
    if stopped:
        return None

    g_params, c_params, c_rest, _, _ = state
    generator = Generator(g_params, int(config.generator.latent_dim), tuple(config.data.pixel_range),
                          images.image_shape, workdir)
    critic = nnx.merge(graphdef, c_params, c_rest)
    critic.eval()
    exported = export_model(critic)
    save_export(exported, workdir)
    n_eval = min(int(config.eval.num_samples), len(images.x_test))
    fake = np.asarray(generator.sample(jax.random.fold_in(eval_key, 0), n_eval))
    real = images.x_test[:n_eval]
    from lipsort.export import numpy_forward

    gap = float(numpy_forward(exported, real).mean() - numpy_forward(exported, fake).mean())
    save_sample_grid(np.asarray(generator.sample(jax.random.fold_in(eval_key, 1), 64)), images.image_shape,
                     os.path.join(workdir, "samples.png"), title=f"WGAN-GP, {step} steps")
    search_steps = int(_get(_get(config, "certify"), "search_steps", 20))
    lower = certify.export_lower_bound(exported, jnp.asarray(real[:8]), jax.random.fold_in(eval_key, 2),
                                       steps=search_steps) if search_steps > 0 else None
    metrics = read_metrics(workdir)
    plots.plot_metrics(metrics, os.path.join(workdir, "loss.png"))
    results = {
        "experiment": "gan",
        "steps": step,
        "wall_time_s": round(time.time() - start_time, 3),
        "resumed_from_step": resumed_from,
        "data_source": images.source,
        "lipschitz_constant": float(config.model.lipschitz_constant),
        "lipschitz_upper_bound": certify.lipschitz_upper_bound(exported),
        "lipschitz_lower_bound": lower,
        "final_loss": metrics[-1]["loss"] if metrics else None,
        # E D(test images) − E D(G(z)) with the (uncertified) WGAN-GP critic: a rough
        # W1 indication only; the certified estimate is the wde experiment's job.
        "critic_gap_held_out": gap,
        "num_eval_samples": n_eval,
        "num_generator_params": int(sum(np.size(x) for x in jax.tree.leaves(g_params))),
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(c_params))),
    }
    _write_json(os.path.join(workdir, "results.json"), results)
    logging.info("results: %s", json.dumps(results))
    return results


def save_sample_grid(samples: np.ndarray, image_shape, path: str, title: str = "", ncols: int = 8) -> None:
    """A grid of flattened images (pixels in any range; shown min–max per grid)."""
    import matplotlib.pyplot as plt

    h, w, c = image_shape
    n = len(samples)
    nrows = -(-n // ncols)
    grid = np.zeros((nrows * h, ncols * w, c), np.float32) + samples.min()
    for i, s in enumerate(samples):
        r, col = divmod(i, ncols)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = s.reshape(h, w, c)
    grid = (grid - grid.min()) / max(float(grid.max() - grid.min()), 1e-12)
    fig, ax = plt.subplots(figsize=(ncols * 0.8, nrows * 0.8 + 0.4))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _main(argv) -> None:
    """``python -m lipsort.gan CONFIG_JSON WORKDIR`` (used by :func:`ensure_generator`)."""
    if len(argv) != 3:
        sys.exit("usage: python -m lipsort.gan CONFIG_JSON WORKDIR")
    logging.set_verbosity(logging.INFO)
    with open(argv[1]) as f:
        config = ml_collections.ConfigDict(json.load(f))
    # JSON has lists; the config's own format has tuples (so the hash and
    # _check_same_run compare equal).
    for section, key in (("generator", "widths"), ("model", "widths"), ("data", "pixel_range")):
        config[section][key] = tuple(config[section][key])
    run(config, argv[2])


if __name__ == "__main__":
    _main(sys.argv)
