"""The gan experiment: a few-step WGAN-GP run through the shared entry point, resume,
reuse of a trained generator, and config errors before any work."""
import json
import os

import numpy as np
import pytest

from lipsort import train
from lipsort.tasks import gan


def _tiny(num_steps=2):
    from lipsort.config_loader import load_config

    config = load_config("gan_mnist:quick")
    config.data.source = "bundled"  # pinned: a prepared tfds MNIST must not change the test
    config.data.num_train = 256
    config.data.num_test = 64
    config.train.num_steps = num_steps
    config.train.critic_steps = 2
    config.train.batch_size = 16
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    config.eval.num_samples = 32
    config.certify.search_steps = 1
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted 3-step run, shared by the tests below."""
    workdir = str(tmp_path_factory.mktemp("gan") / "run")
    return workdir, train.train_and_evaluate(_tiny(3), workdir)  # dispatches to gan.train_gan


def test_gan_runs_writes_contract_and_generator_is_reusable(finished):
    workdir, results = finished
    for key in ("experiment", "steps", "wall_time_s", "data_source", "lipschitz_constant",
                "lipschitz_upper_bound", "lipschitz_lower_bound"):
        assert key in results, key
    assert results["experiment"] == "gan" and results["steps"] == 3
    assert results["data_source"].startswith("bundled:")
    for name in ("config.json", "metrics.jsonl", "results.json", "export.npz", "samples.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3]

    generator = gan.load_generator(workdir)
    import jax

    x = np.asarray(generator.sample(jax.random.PRNGKey(0), 5))
    assert x.shape == (5, 784) and x.min() >= 0.0 and x.max() <= 1.0
    # ensure_generator finds the finished run and does not train again.
    mtime = os.path.getmtime(os.path.join(workdir, "results.json"))
    again = gan.ensure_generator(_tiny(3), workdir)
    assert os.path.getmtime(os.path.join(workdir, "results.json")) == mtime
    np.testing.assert_array_equal(np.asarray(again.sample(jax.random.PRNGKey(0), 5)), x)


def test_gan_resume_matches_uninterrupted(tmp_path, finished):
    a, b = finished[0], str(tmp_path / "b")
    assert train.train_and_evaluate(_tiny(3), b, stop_after_step=1) is None
    resumed = train.train_and_evaluate(_tiny(3), b)
    assert resumed["resumed_from_step"] == 1
    import jax

    key = jax.random.PRNGKey(1)
    np.testing.assert_allclose(np.asarray(gan.load_generator(a).sample(key, 4)),
                               np.asarray(gan.load_generator(b).sample(key, 4)), rtol=1e-5, atol=1e-6)


def test_generator_dir_depends_on_the_config():
    from lipsort.config_loader import load_config

    c1, c2 = load_config("gan_mnist"), load_config("gan_mnist")
    assert gan.generator_dir("base", c1) == gan.generator_dir("base", c2)
    c2.train.num_steps += 1
    assert gan.generator_dir("base", c1) != gan.generator_dir("base", c2)


def test_bad_gan_config_fails_before_work(tmp_path):
    config = _tiny()
    config.train.critic_steps = 0
    config.train.gp_weight = -1.0
    config.generator.widths = ()
    with pytest.raises(train.ConfigError) as e:
        train.train_and_evaluate(config, str(tmp_path / "bad"))
    for fragment in ("critic_steps", "gp_weight", "generator.widths"):
        assert fragment in str(e.value)
    assert not os.path.exists(tmp_path / "bad")
    with pytest.raises(train.ConfigError, match="config.data.dataset"):
        config = _tiny()
        config.data.dataset = "svhn"
        train.validate_config(config)


def test_lipschitz_critic_in_retraction_mode_is_retracted_after_every_update(tmp_path):
    """A Björck critic trained in retraction mode stays orthonormal: the updates knock it
    off the manifold (large drift) and the retraction brings it back every time."""
    from flax import nnx

    from lipsort import workdir as run_files
    from lipsort.orthogonal import orthogonality_residual

    config = _tiny(2)
    config.model.constraint = "bjorck"
    config.model.activation = "group_sort"
    config.model.bjorck_training = "retraction"
    config.train.gp_weight = 0.0
    config.train.learning_rate = 1e-2
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir)
    metrics = run_files.read_metrics(workdir)
    assert all(m["retraction_drift"] > 1e-3 for m in metrics), metrics  # the updates leave the manifold
    critic, graphdef, _, state = gan._init_state(config)
    checkpointer = run_files.Checkpointer(os.path.join(workdir, "checkpoints"))
    _, state = checkpointer.restore(state)
    checkpointer.close()
    critic = nnx.merge(graphdef, state[1], state[2])
    for layer in critic.layers:
        assert float(orthogonality_residual(layer.kernel[...])) <= 2e-3


@pytest.mark.parametrize("shape, channels", [((28, 28, 1), (16, 8)), ((32, 32, 3), (16, 8, 4))])
def test_dcgan_generator_shapes_and_pixel_range(shape, channels):
    import jax
    import ml_collections

    gen = ml_collections.ConfigDict({"latent_dim": 8, "channels": channels})
    assert gan.GENERATORS["dcgan"].problems(gen, shape) == []
    params = gan.GENERATORS["dcgan"].init(jax.random.PRNGKey(0), gen, shape)
    x = np.asarray(gan.dcgan_apply(params, 3.0 * jax.random.normal(jax.random.PRNGKey(1), (4, 8)), (-1.0, 1.0), shape))
    assert x.shape == (4, int(np.prod(shape))) and -1.0 <= x.min() and x.max() <= 1.0
    assert len(np.unique(x.round(4))) > 100  # not collapsed to the range's ends
    too_deep = ml_collections.ConfigDict({"latent_dim": 8, "channels": (4,) * 4})
    assert "divisible by 16" in gan.GENERATORS["dcgan"].problems(too_deep, (28, 28, 1))[0]


@pytest.mark.parametrize("height, width, c_in, c_out", [(3, 5, 4, 2), (4, 4, 6, 1)])
def test_subpixel_upsampling_is_the_transposed_convolution(height, width, c_in, c_out):
    """The DCGAN generator's sub-pixel form equals jax.lax.conv_transpose (stride 2, SAME,
    4×4), in value and in both gradients (float64, so rounding cannot hide a wrong tap)."""
    import jax
    import jax.numpy as jnp

    def reference(h, k):
        return jax.lax.conv_transpose(h, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    with jax.enable_x64(True):
        h = jax.random.normal(jax.random.PRNGKey(0), (2, height, width, c_in), jnp.float64)
        k = jax.random.normal(jax.random.PRNGKey(1), (4, 4, c_in, c_out), jnp.float64)
        ours = gan.upsample_conv_transpose(h, k)
        assert ours.shape == (2, 2 * height, 2 * width, c_out)
        np.testing.assert_allclose(ours, reference(h, k), atol=1e-12)
        weights = jax.random.normal(jax.random.PRNGKey(2), ours.shape, jnp.float64)
        grads = [jax.grad(lambda h, k, f=f: jnp.sum(weights * jnp.tanh(f(h, k))), argnums=(0, 1))(h, k)
                 for f in (gan.upsample_conv_transpose, reference)]
        for ours_grad, reference_grad in zip(*grads):
            np.testing.assert_allclose(ours_grad, reference_grad, atol=1e-12)
    with pytest.raises(ValueError, match="4×4 kernels"):
        gan.upsample_conv_transpose(h, jnp.zeros((3, 3, c_in, c_out)))


def test_dcgan_with_weight_clipping_trains_and_its_generator_is_reusable(tmp_path):
    import jax

    from lipsort import workdir as run_files
    from lipsort.config_loader import load_config

    config = load_config("gan_mnist:dcgan,quick")
    for key in ("source", "num_train", "num_test"):
        config.data[key] = _tiny().data[key]
    config.train.num_steps = config.train.log_every = config.train.checkpoint_every = 2
    config.train.critic_steps, config.train.batch_size, config.eval.num_samples = 2, 16, 32
    config.certify.search_steps = 1
    config.train.gp_weight, config.train.weight_clip = 0.0, 0.01  # the original WGAN
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 2 and os.path.exists(tmp_path / "samples.png")
    generator = gan.load_generator(str(tmp_path))
    assert generator.architecture == "dcgan"
    x = np.asarray(generator.sample(jax.random.PRNGKey(0), 3))
    assert x.shape == (3, 784) and 0.0 <= x.min() and x.max() <= 1.0
    # Weight clipping held every critic parameter inside [-c, c].
    *_, state = gan._init_state(config)
    _, state = run_files.Checkpointer(str(tmp_path / "checkpoints")).restore(state)
    leaves = jax.tree.leaves(state[1])
    assert leaves and max(float(np.abs(np.asarray(p)).max()) for p in leaves) <= 0.01 + 1e-7
    bad = load_config("gan_mnist:quick")
    bad.generator.architecture = "cnn"
    assert any("Unknown generator architecture 'cnn'" in e for e in gan.validate(bad))
