"""WGAN-GP on images: the generator whose samples the Wasserstein table compares with data.

Two networks, so this experiment has its own trainer (:func:`train_gan`, the ``gan``
entry of ``lipsort.train.TRAINERS``):

- generator G: an MLP z ~ N(0, I_latent) → ReLU hidden layers → lo + (hi − lo)·sigmoid(·),
  so every sample lies in ``config.data.pixel_range``;
- critic D: a :class:`lipsort.models.LipschitzMLP` from ``config.model`` (by default
  unconstrained, ``constraint='none'``, as in WGAN-GP), trained with the gradient
  penalty of Gulrajani et al. (2017):

      L_D = E D(G(z)) − E D(x) + λ · E (‖∇D(x̂)‖₂ − 1)²,   x̂ = εx + (1 − ε)G(z), ε ~ U[0, 1]
      L_G = −E D(G(z))

  with ``config.train.critic_steps`` critic updates per generator update. A Lipschitz
  critic (e.g. Björck in ``retraction``/``riemannian`` mode, no penalty) trains through
  the same update as every other network (:func:`lipsort.train.make_update`), so it is
  retracted after every update.

One "step" is one generator update. The run writes the usual files (``config.json``,
``metrics.jsonl``, ``results.json``, orbax checkpoints with resume, the critic's
``export.npz``) and ``samples.png``, a grid of generator samples. The critic of a
WGAN-GP is *not* certified: its ``lipschitz_upper_bound`` (product of exact layer
norms) is reported as it is, usually far above 1.

A finished run directory is a reusable generator: :func:`load_generator` rebuilds G
from its ``config.json`` and latest checkpoint; :func:`ensure_generator` trains one
first, in this process, when the directory has none (the ``prepare`` step of the image
Wasserstein runs in :mod:`lipsort.tasks.wde`, before their critic is traced). The
default configs are ``configs/gan_*.py``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from lipsort import data, optim, riemannian_adam
from lipsort import workdir as run_files
from lipsort.export import export_model, numpy_forward, save_export
from lipsort.models import LipschitzMLP, spec_from_config
from lipsort.registry import Registry
from lipsort.tasks import Task
from lipsort.validation import check_int, get, raise_if

Array = jax.Array


# --- validation ---------------------------------------------------------------------------


def gan_kind(config) -> str:
    """What the config trains, in words: how its critic is kept Lipschitz, and its generator."""
    train = get(config, "train")
    if float(get(train, "gp_weight", 0.0) or 0.0) > 0:
        kind = "WGAN-GP"
    elif float(get(train, "weight_clip", 0.0) or 0.0) > 0:
        kind = "WGAN (weight clipping)"
    elif get(get(config, "model"), "constraint", "none") != "none":
        kind = "Lipschitz WGAN (certified critic)"
    else:
        kind = "WGAN (unconstrained critic)"
    return kind + (", DCGAN generator" if architecture_name(get(config, "generator")) == "dcgan" else "")


def validate(config) -> list[str]:
    """Every problem with a gan config, as messages (nothing is loaded or trained)."""
    errors = []
    try:
        req = data.parse_config(get(config, "data"))
        image_shape = data.IMAGE_SHAPES[req.dataset]
    except ValueError as e:
        errors.append(str(e))
        image_shape = (1, 1, 1)
    dim = int(np.prod(image_shape))
    gen = get(config, "generator")
    if gen is None:
        errors.append("config.generator is missing (latent_dim, widths).")
    else:
        check_int(errors, "config.generator.latent_dim", get(gen, "latent_dim"))
        try:
            architecture = GENERATORS.lookup(architecture_name(gen))
            errors.extend(architecture.problems(gen, image_shape))
        except ValueError as e:
            errors.append(f"config.generator.architecture: {e}")
    check_int(errors, "config.seed", get(config, "seed"), minimum=0)
    try:
        spec_from_config(get(config, "model"), dim, 1)
    except (ValueError, TypeError, AttributeError) as e:
        errors.append(f"config.model (the critic): {e}")
    train = get(config, "train")
    if train is None:
        errors.append("config.train is missing.")
        return errors
    for name in ("num_steps", "critic_steps", "batch_size", "log_every", "checkpoint_every"):
        check_int(errors, f"config.train.{name}", get(train, name))
    errors.extend(optim.validate(train))
    for name in ("gp_weight", "weight_clip"):
        v = get(train, name, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
            errors.append(f"config.train.{name} must be a number ≥ 0, got {v!r}.")
    check_int(errors, "config.eval.num_samples", get(get(config, "eval"), "num_samples"), minimum=2)
    return errors


def make_task(config) -> Task:
    """For :func:`lipsort.validation.validate_config`: checks the config and describes the
    critic (the network that is exported). Training goes through :func:`train_gan`."""
    errors = validate(config)
    if errors:
        raise ValueError("; ".join(errors))
    dim = int(np.prod(data.IMAGE_SHAPES[config.data.dataset]))

    def own_loop(*_):
        raise RuntimeError("the gan experiment has its own trainer: lipsort.tasks.gan.train_gan(config, workdir).")

    return Task(in_features=dim, out_features=1, data_source=f"(loaded by train_gan: {config.data.dataset})",
                sample_batch=own_loop, loss=own_loop, evaluate=own_loop,
                certify_points=np.zeros((1, dim), np.float32))


# --- the generator: a pure function of a pytree ----------------------------------------------


def init_generator(key: Array, latent_dim: int, widths, out_dim: int) -> list[dict[str, Array]]:
    """The MLP generator's parameters: He-normal kernels (the hidden layers are ReLU), zero biases."""
    sizes = [latent_dim, *widths, out_dim]
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"kernel": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "bias": jnp.zeros((b,))}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def generator_apply(params, z: Array, pixel_range) -> Array:
    """The MLP generator: G(z) = lo + (hi − lo)·sigmoid(W_n relu(… relu(W_1 z + b_1) …) + b_n)."""
    h = z
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
    lo, hi = pixel_range
    return lo + (hi - lo) * jax.nn.sigmoid(h @ params[-1]["kernel"] + params[-1]["bias"])


DCGAN_KERNEL = 4  # transposed-convolution kernels 4×4, stride 2 (DCGAN, Radford et al. 2016)


def init_dcgan(key: Array, latent_dim: int, channels, image_shape) -> dict:
    """A DCGAN-style generator's parameters: z → dense → (H/2^L, W/2^L, channels[0]) →
    L transposed convolutions (stride 2) through ``channels[1:]`` to the image's C."""
    h, w, c = image_shape
    factor = 2 ** len(channels)
    start = (h // factor, w // factor, int(channels[0]))
    sizes = [*map(int, channels), c]
    keys = jax.random.split(key, len(sizes))
    dense_out = int(np.prod(start))
    return {
        "dense": {"kernel": jax.random.normal(keys[0], (latent_dim, dense_out)) * jnp.sqrt(2.0 / latent_dim),
                  "bias": jnp.zeros((dense_out,))},
        "deconvs": [{"kernel": jax.random.normal(k, (DCGAN_KERNEL, DCGAN_KERNEL, a, b))
                     * jnp.sqrt(2.0 / (DCGAN_KERNEL * DCGAN_KERNEL * a)), "bias": jnp.zeros((b,))}
                    for k, a, b in zip(keys[1:], sizes[:-1], sizes[1:])],
    }


# Which tap of a 4-tap, stride-2, "SAME" transposed convolution (``jax.lax.conv_transpose``)
# joins input m + d to output 2m + p: (p, d) → tap, probed from conv_transpose itself
# (tests/test_gan.py checks the equivalence). Each output parity p reads two inputs.
_PARITY_TAPS = {(0, -1): 0, (0, 0): 2, (1, 0): 1, (1, 1): 3}
_PARITY_OFFSETS = {0: (-1, 0), 1: (0, 1)}


def upsample_conv_transpose(h: Array, kernel: Array) -> Array:
    """``jax.lax.conv_transpose(h, kernel, (2, 2), "SAME")`` for a 4×4 HWIO kernel, NHWC,
    computed per output parity as one matmul (a sub-pixel convolution, Shi et al. 2016):

        y[2m + p, 2q + s] = Σ_{d ∈ D(p), e ∈ D(s)} h[m + d, q + e] · k[tap(p, d), tap(s, e)],

    four matmuls of (N·H·W, 4·C_in) patches by (4·C_in, C_out), the transposed convolution's
    FLOPs, no zero-dilated input. Equal up to float rounding. Why: on CPU, XLA's
    convolution gradients inside a ``lax.scan`` (the GAN's training loop) keep non-canonical
    layouts and run on a slow path; the generator step takes 2.2× less time this way
    (``scripts/benchmark.py --parts=g`` times both). Matmuls have no such path."""
    if kernel.shape[:2] != (DCGAN_KERNEL, DCGAN_KERNEL):
        raise ValueError(f"the sub-pixel form is for {DCGAN_KERNEL}×{DCGAN_KERNEL} kernels, got {kernel.shape[:2]}.")
    n, height, width, _ = h.shape
    padded = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def shifted(d, e):
        return padded[:, 1 + d: 1 + d + height, 1 + e: 1 + e + width]

    def parity(p, s):
        pairs = [(d, e) for d in _PARITY_OFFSETS[p] for e in _PARITY_OFFSETS[s]]
        patches = jnp.concatenate([shifted(d, e) for d, e in pairs], axis=-1)
        taps = jnp.concatenate([kernel[_PARITY_TAPS[(p, d)], _PARITY_TAPS[(s, e)]] for d, e in pairs], axis=0)
        return patches @ taps

    y = jnp.stack([jnp.stack([parity(p, s) for s in (0, 1)], axis=3) for p in (0, 1)], axis=2)  # n, H, p, W, s, C
    return y.reshape(n, 2 * height, 2 * width, kernel.shape[3])


def dcgan_apply(params, z: Array, pixel_range, image_shape) -> Array:
    """G(z) = lo + (hi − lo)·(1 + tanh(…))/2 of the DCGAN-style generator, flattened (NHWC):
    a dense layer to a small feature map, then stride-2 transposed convolutions with ReLU
    between them (tanh after the last)."""
    first = params["deconvs"][0]["kernel"].shape[2]
    side_h = image_shape[0] // 2 ** len(params["deconvs"])
    side_w = image_shape[1] // 2 ** len(params["deconvs"])
    h = jax.nn.relu(z @ params["dense"]["kernel"] + params["dense"]["bias"]).reshape(-1, side_h, side_w, first)
    for i, layer in enumerate(params["deconvs"]):
        h = upsample_conv_transpose(h, layer["kernel"])
        h = h + layer["bias"]
        if i < len(params["deconvs"]) - 1:
            h = jax.nn.relu(h)
    lo, hi = pixel_range
    return (lo + (hi - lo) * 0.5 * (1.0 + jnp.tanh(h))).reshape(h.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class GeneratorArchitecture:
    """One generator kind (``config.generator.architecture``): ``init(key, gen_cfg,
    image_shape)``, ``apply(params, z, pixel_range, image_shape)`` (flattened images in
    ``pixel_range``), and ``problems(gen_cfg, image_shape)`` (its fields' errors)."""

    init: Callable[[Array, Any, tuple], Any]
    apply: Callable[[Any, Array, tuple, tuple], Array]
    problems: Callable[[Any, tuple], list[str]]


def _mlp_problems(gen, image_shape) -> list[str]:
    widths = get(gen, "widths", ())
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        return [f"config.generator.widths must be positive integers, got {widths!r}."]
    return []


def _dcgan_problems(gen, image_shape) -> list[str]:
    channels = get(gen, "channels", ())
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        return [f"config.generator.channels must be positive integers (one per resolution), got {channels!r}."]
    factor = 2 ** len(channels)
    if image_shape[0] % factor or image_shape[1] % factor:
        return [f"config.generator.channels: {len(channels)} stride-2 upsamplings need image sides divisible by "
                f"{factor}, got {image_shape[:2]}; use fewer channels."]
    return []


GENERATORS: Registry[GeneratorArchitecture] = Registry("generator architecture")
GENERATORS.add("mlp", GeneratorArchitecture(
    init=lambda key, gen, shape: init_generator(key, int(gen.latent_dim), tuple(gen.widths), int(np.prod(shape))),
    apply=lambda params, z, pixel_range, shape: generator_apply(params, z, pixel_range),
    problems=_mlp_problems,
))
GENERATORS.add("dcgan", GeneratorArchitecture(
    init=lambda key, gen, shape: init_dcgan(key, int(gen.latent_dim), tuple(gen.channels), shape),
    apply=dcgan_apply,
    problems=_dcgan_problems,
))


def architecture_name(gen_cfg) -> str:
    """``config.generator.architecture`` (absent: ``mlp``, so older configs keep their hash)."""
    return get(gen_cfg, "architecture", "mlp") or "mlp"


@dataclasses.dataclass(frozen=True)
class Generator:
    """A trained generator: ``sample(key, n)`` draws n flattened images."""

    params: Any
    latent_dim: int
    pixel_range: tuple[float, float]
    image_shape: tuple
    directory: str
    architecture: str = "mlp"

    def sample(self, key: Array, n: int) -> Array:
        z = jax.random.normal(key, (n, self.latent_dim))
        return GENERATORS[self.architecture].apply(self.params, z, self.pixel_range, self.image_shape)


# --- state, checkpoints, reuse ----------------------------------------------------------------


def _optimizers(config, g_params, critic, c_params):
    """(generator optimizer, critic optimizer), both from ``config.train``; the critic's
    knows its orthonormal kernels (Riemannian Adam), the generator has none."""
    g_tx = optim.make_optimizer(config.train, jax.tree.map(lambda _: False, g_params))
    c_tx = optim.make_optimizer(config.train, riemannian_adam.tangent_kernel_mask(critic, c_params))
    return g_tx, c_tx


def _init_state(config):
    """(critic, graphdef of the critic, (G tx, D tx), state) with
    state = (G params, D params, D rest, G opt, D opt)."""
    dim = int(np.prod(data.IMAGE_SHAPES[config.data.dataset]))
    key = jax.random.PRNGKey(int(config.seed))
    g_params = GENERATORS[architecture_name(config.generator)].init(
        jax.random.fold_in(key, 0), config.generator, data.IMAGE_SHAPES[config.data.dataset])
    critic = LipschitzMLP(spec_from_config(config.model, dim, 1), rngs=nnx.Rngs(int(config.seed) + 1))
    graphdef, c_params, c_rest = nnx.split(critic, nnx.Param, ...)
    g_tx, c_tx = _optimizers(config, g_params, critic, c_params)
    return critic, graphdef, (g_tx, c_tx), (g_params, c_params, c_rest, g_tx.init(g_params), c_tx.init(c_params))


def _without_nones(d: dict) -> dict:
    # An optional field left unset (None) must not move a trained generator to a new folder.
    return {k: _without_nones(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def generator_dir(base: str, gan_cfg) -> str:
    """``base/<dataset>-<10 hex digits of the config's hash>``: a changed GAN config
    gets its own directory, an unchanged one finds the generator trained before."""
    blob = json.dumps(_without_nones(run_files.config_to_dict(gan_cfg)), sort_keys=True)
    return os.path.join(base, f"{gan_cfg.data.dataset}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}")


def is_trained(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, run_files.RESULTS))


def load_generator(directory: str) -> Generator:
    """The generator of a finished gan run in ``directory`` (its config and last checkpoint)."""
    if not is_trained(directory):
        raise FileNotFoundError(
            f"no finished gan run in {directory!r} (no results.json); train one with "
            "python -m lipsort.main --config=configs/gan_mnist.py --workdir=DIR."
        )
    config = run_files.read_config(directory)
    *_, state = _init_state(config)
    checkpointer = run_files.Checkpointer(os.path.join(directory, run_files.CHECKPOINTS))
    step, state = checkpointer.restore(state)
    checkpointer.close()
    if step is None:
        raise FileNotFoundError(f"{directory!r} has results.json but no checkpoint; train it again.")
    return Generator(state[0], int(config.generator.latent_dim), tuple(config.data.pixel_range),
                     data.IMAGE_SHAPES[config.data.dataset], directory, architecture_name(config.generator))


def ensure_generator(gan_cfg, directory: str) -> Generator:
    """Loads the generator in ``directory``, training it there first if it is missing.

    Training runs in this process: call it before tracing anything that samples from
    the generator (``Task.prepare`` does).
    """
    if not is_trained(directory):
        raise_if(validate(gan_cfg), "generator config")
        logging.info("no generator in %s: training one (%d steps) first", directory, gan_cfg.train.num_steps)
        try:
            train_gan(gan_cfg, directory)
        except run_files.WorkdirBusy:
            logging.info("another run is training the generator in %s: waiting for it", directory)
            with run_files.locked(directory, wait=True):
                pass
    return load_generator(directory)


# --- the loop -------------------------------------------------------------------------------


def critic_loss_fn(gp_weight: float):
    """The WGAN-GP critic loss on a batch (real, fake, ε) as ``loss(model, batch)``."""

    def loss(model, batch):
        real, fake, eps = batch
        d = lambda x: model(x)[:, 0]
        x_hat = eps * real + (1.0 - eps) * fake
        grads = jax.vmap(jax.grad(lambda x: d(x[None])[0]))(x_hat)
        penalty = jnp.mean((jnp.sqrt(jnp.sum(grads**2, axis=-1) + 1e-12) - 1.0) ** 2)
        gap = jnp.mean(d(real)) - jnp.mean(d(fake))
        return -gap + gp_weight * penalty, {"critic_w1": gap, "gradient_penalty": penalty}

    return loss


def make_step(graphdef, config, x_train: Array, data_key: Array, optimizers, *, retracts: bool):
    """One generator update after ``critic_steps`` critic updates, as a pure function."""
    from lipsort.train import make_update  # train imports the tasks package, not this module

    train = config.train
    batch, latent = int(train.batch_size), int(config.generator.latent_dim)
    n_critic = int(train.critic_steps)
    pixel_range = tuple(float(v) for v in config.data.pixel_range)
    g_tx, c_tx = optimizers
    critic_update = make_update(graphdef, critic_loss_fn(float(train.gp_weight)), c_tx, retracts=retracts)
    image_shape = data.IMAGE_SHAPES[config.data.dataset]
    apply = GENERATORS[architecture_name(config.generator)].apply
    clip = float(get(train, "weight_clip", 0.0))

    def generate(g_params, z):
        return apply(g_params, z, pixel_range, image_shape)

    def generator_loss(g_params, c_params, c_rest, z):
        model = nnx.merge(graphdef, c_params, c_rest, copy=True)  # copy=True: inside jax.grad
        return -jnp.mean(model(generate(g_params, z))[:, 0])

    def critic_step(g_params, carry, key):
        kr, kz, ke = jax.random.split(key, 3)
        real = x_train[jax.random.randint(kr, (batch,), 0, x_train.shape[0])]
        fake = generate(g_params, jax.random.normal(kz, (batch, latent)))
        eps = jax.random.uniform(ke, (batch, 1))
        (c_params, c_rest, c_opt), out = critic_update(carry, (real, fake, eps))
        if clip > 0:  # the original WGAN's weight clipping (Arjovsky et al. 2017)
            c_params = jax.tree.map(lambda p: jnp.clip(p, -clip, clip), c_params)
        return (c_params, c_rest, c_opt), out

    def step_fn(state, step):
        g_params, c_params, c_rest, g_opt, c_opt = state
        key = jax.random.fold_in(data_key, step)
        (c_params, c_rest, c_opt), (c_losses, aux) = jax.lax.scan(
            lambda carry, k: critic_step(g_params, carry, k),
            (c_params, c_rest, c_opt), jax.random.split(jax.random.fold_in(key, 0), n_critic),
        )
        z = jax.random.normal(jax.random.fold_in(key, 1), (batch, latent))
        g_loss, g_grads = jax.value_and_grad(generator_loss)(g_params, c_params, c_rest, z)
        updates, g_opt = g_tx.update(g_grads, g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        aux = {k: v[-1] for k, v in aux.items()}
        return (g_params, c_params, c_rest, g_opt, c_opt), (c_losses[-1], {**aux, "generator_loss": g_loss})

    return step_fn


def train_gan(config, workdir: str, *, stop_after_step: int | None = None) -> dict | None:
    """Trains the WGAN ``config`` describes in ``workdir`` (resuming if it can) and
    returns results.json; ``stop_after_step`` simulates a kill (returns None), for tests."""

    start_time = time.time()
    raise_if(validate(config))
    images = data.load(config.data)  # a missing data set fails here, before any training
    with run_files.locked(workdir):
        run = run_files.start_run(workdir, config)
        if run.finished and not run.evaluation_changes:
            logging.info("%s holds this gan run, finished: nothing to do", workdir)
            return run_files.read_results(workdir)
        return _train_gan_locked(config, workdir, images, run, start_time, stop_after_step)


def _train_gan_locked(config, workdir, images, run, start_time, stop_after_step):
    from lipsort.train import (DIVERGENCE_PATIENCE, Member, loop_settings, make_check, run_chunked_loop, run_keys,
                               search_lower_bound)

    logging.info("gan: %s from %s, %d training images", images.name, images.source, len(images.x_train))
    num_steps, log_every, ckpt_every = loop_settings(config)
    critic, graphdef, optimizers, state = _init_state(config)
    checkpointer, resumed_from, state = run_files.resume(workdir, state, run.config_hash)
    step = resumed_from or 0

    data_key, eval_key = run_keys(config)
    step_fn = make_step(graphdef, config, jnp.asarray(images.x_train), data_key, optimizers,
                        retracts=critic.retracts)
    run_chunk = jax.jit(lambda state, steps: jax.lax.scan(step_fn, state, steps))
    warnings: list[str] = []
    check = make_check(workdir, critic.spec if critic.retracts else None,
                       int(get(config.train, "divergence_patience", DIVERGENCE_PATIENCE)), warnings,
                       weights=lambda state: (state[0], state[1]))  # generator and critic

    state, step, stopped = run_chunked_loop(
        run_chunk, state, step, num_steps=num_steps, log_every=log_every, ckpt_every=ckpt_every,
        members=[Member(workdir, checkpointer, check)], start_time=start_time,
        describe=lambda r: f"critic loss {r['loss']:.4g}  critic W1 {r['critic_w1']:.4g}",
        stop_after_step=stop_after_step,
    )
    if stopped:
        return None

    g_params, c_params, c_rest, _, _ = state
    generator = Generator(g_params, int(config.generator.latent_dim), tuple(config.data.pixel_range),
                          images.image_shape, workdir, architecture_name(config.generator))
    critic = nnx.merge(graphdef, c_params, c_rest)
    critic.eval()
    exported = export_model(critic)
    save_export(exported, workdir)
    n_eval = min(int(config.eval.num_samples), len(images.x_test))
    fake = np.asarray(generator.sample(jax.random.fold_in(eval_key, 0), n_eval))
    real = images.x_test[:n_eval]
    gap = float(numpy_forward(exported, real).mean() - numpy_forward(exported, fake).mean())
    save_sample_grid(np.asarray(generator.sample(jax.random.fold_in(eval_key, 1), 64)), images.image_shape,
                     os.path.join(workdir, "samples.png"), title=f"{gan_kind(config)}, {step} steps")
    lower = search_lower_bound(config, exported, real[:8], jax.random.fold_in(eval_key, 2))
    common = run_files.common_results(
        config, exported, steps=step, start_time=start_time, resumed_from=resumed_from,
        data_source=images.source, lower_bound=lower, params=c_params,
    )
    return run_files.finish_run(workdir, common, {
        # E D(test images) − E D(G(z)) with the (uncertified) WGAN-GP critic: a rough
        # W1 indication only; the certified estimate is the wde experiment's job.
        "critic_gap_held_out": gap,
        "num_eval_samples": n_eval,
        "num_generator_params": int(sum(np.size(x) for x in jax.tree.leaves(g_params))),
    }, run, warnings)


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
