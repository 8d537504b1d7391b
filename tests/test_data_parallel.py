"""Data parallelism over a device mesh, on 2 simulated CPU devices.

XLA fixes the device count when JAX starts, so the 2-device runs happen in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lipsort import train
from test_train import REPO, load_config

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from lipsort import parallel, train
    from test_train import load_config

    assert jax.device_count() == 2, jax.devices()
    out = {}
    for dp in (False, True):
        config = load_config("two_moons")
        config.model.bjorck_training = "retraction"
        config.train.num_steps = 20
        config.train.data_parallel = dp
        config.certify.search_steps = 2
        config.eval.attack_steps = 2
        config.eval.epsilons = (0.1,)
        config.data.num_test = 200
        results = train.train_and_evaluate(config, f"{sys.argv[1]}/dp_{dp}")
        out[str(dp)] = {k: results[k] for k in ("final_loss", "clean_accuracy", "lipschitz_upper_bound")}

    # The sharded step really is distributed: an all-reduce sums the per-device gradients.
    config.train.batch_size = 7
    try:
        train.validate_config(config)
        out["odd_batch_error"] = None
    except train.ConfigError as e:
        out["odd_batch_error"] = str(e)
    mesh = parallel.make_data_mesh(load_config("two_moons"))
    out["mesh_none_by_default"] = mesh is None
    print("RESULT " + json.dumps(out))
    """
)


def test_data_parallel_matches_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"), REPO]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    one, two = out["False"], out["True"]
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4, abs=1e-6)
    assert two["clean_accuracy"] == pytest.approx(one["clean_accuracy"], abs=2e-3)
    assert two["lipschitz_upper_bound"] <= 1.0
    assert "must be divisible by the 2 devices" in out["odd_batch_error"]
    assert out["mesh_none_by_default"]


def test_sharded_step_all_reduces_gradients():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO)
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, optax
        from flax import nnx
        from lipsort import losses, parallel, train
        from lipsort.models import LipschitzMLP, MLPSpec
        import ml_collections
        model = LipschitzMLP(MLPSpec(in_features=4, widths=(8,), out_features=2), rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optax.sgd(0.1)
        config = ml_collections.ConfigDict({"train": {"data_parallel": True}})
        mesh = parallel.make_data_mesh(config)
        def sample(key):
            return jax.random.normal(key, (8, 4)), jax.random.randint(key, (8,), 0, 2)
        def loss(m, batch):
            return losses.multiclass_hinge(m(batch[0]), batch[1]), {}
        run = jax.jit(train.make_chunk_runner(graphdef, loss, sample, tx, jax.random.key(0),
                                              retracts=False, mesh=mesh))
        state = jax.device_put((params, rest, tx.init(params)), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        hlo = run.lower(state, jnp.arange(2)).compile().as_text()
        print("ALLREDUCE", "all-reduce" in hlo)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ALLREDUCE True" in proc.stdout


def test_data_parallel_flag_is_validated(tmp_path):
    config = load_config("two_moons")
    config.train.data_parallel = "yes"
    with pytest.raises(train.ConfigError, match="data_parallel must be True or False"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
