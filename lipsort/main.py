"""Command line: ``python -m lipsort.main --config=configs/NAME.py[:ARG] [--workdir=DIR]``.

Config fields are overridden with ``--config.a.b=value``. Without ``--workdir`` the run
goes to ``runs/<config name>[_ARG]/<timestamp>``. All logic is in
:func:`lipsort.train.train_and_evaluate`.
"""
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from lipsort import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default runs/<config>/<timestamp>).")


def default_workdir(config_path: str) -> str:
    """runs/<config file name>[_<arg>]/<timestamp> from a ``path.py[:arg]`` flag value."""
    path, _, arg = config_path.partition(":")
    name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg}" if arg else "")
    return os.path.join("runs", name, time.strftime("%Y%m%d-%H%M%S"))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
    logging.info("workdir: %s", workdir)
    try:
        train.train_and_evaluate(_CONFIG.value, workdir)
    except train.ConfigError as e:
        sys.exit(f"config error: {e}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
