"""Shared test settings: CPU, deterministic, small."""
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# One persistent XLA compilation cache for the whole session (both xdist workers and the
# command-line runs the tests start): the same small programs are compiled once, not in
# every process. Keyed by the test run's parent pid, so each `pytest` starts empty.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"lipsort-test-xla-cache-{os.getppid()}"))
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
