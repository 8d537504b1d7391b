"""Shared test settings: CPU, deterministic, small."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# One persistent XLA compilation cache for the whole session (both xdist workers and the
# command-line runs the tests start): the same small programs are compiled once, not in
# every process. The controlling pytest process makes a new folder and removes it at exit;
# the workers and subprocesses inherit its path through the environment. (Keyed by the
# parent's pid before, a later `pytest` whose parent got the same pid reused an old cache:
# one "fresh" CI run here took 7 min 25 s warm against 11 min cold.)
# The tests' programs are tiny and compiling them is most of the suite's time: LLVM's
# optimization level 0 cut tests/test_configs.py from 108 s to 78 s on 2 CPU cores
# (2026-12-03), and the whole suite from 11 min 4 s to 8 min 50 s; every test passes the same.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="lipsort-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import hypothesis

hypothesis.settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.load_profile("ci")


def tiny_abs(num_steps=12):
    """The |x| fit cut to seconds: the runner tests' shared config."""
    from lipsort.config_loader import load_config

    config = load_config("toy_abs:quick")
    config.model.widths = (8, 8)
    config.train.num_steps = num_steps
    config.train.log_every = 3
    config.train.checkpoint_every = 6
    config.data.grid_size = 101
    config.certify.search_steps = 2
    return config


def train_retracting(model, make_tx, steps=10):
    """``steps`` large cross-entropy updates of ``model`` (6 inputs, 3 classes) on one fixed
    random batch, each followed by ``model.retract()`` as lipsort.train does. ``make_tx(model,
    params)`` builds the optax optimizer. Returns the trained model and every step's
    retraction (or projection) metrics."""
    import jax
    import optax
    from flax import nnx

    x = jax.random.normal(jax.random.key(0), (64, 6))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_tx(model, params)
    opt_state = tx.init(params)

    def loss(params):
        logits = nnx.merge(graphdef, params, rest, copy=True)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, rest, opt_state):
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        m = nnx.merge(graphdef, optax.apply_updates(params, updates), rest)
        stats = m.retract()
        _, params, rest = nnx.split(m, nnx.Param, ...)
        return params, rest, opt_state, stats

    history = []
    for _ in range(steps):
        params, rest, opt_state, stats = step(params, rest, opt_state)
        history.append(stats)
    return nnx.merge(graphdef, params, rest), history


def polar_factor(w):
    """The exact orthogonal polar factor U Vᵀ of ``w`` (float64 SVD): a reference for tests."""
    import numpy as np

    u, _, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
    return u @ vt
