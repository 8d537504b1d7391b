"""Command line: ``python -m lipsort.main --config=configs/NAME.py[:ARG] [--workdir=DIR]``.

Config fields are overridden with ``--config.a.b=value``. Without ``--workdir`` the run
goes to ``runs/<config name>[_ARG]/<timestamp>``. ``--restart`` moves a run already in
the workdir aside (``DIR.previous-<timestamp>``, never deleted) and starts over. All
logic is in :func:`lipsort.train.train_and_evaluate`.

Errors are one line on stderr (exit status 2 for a bad config or command line, 1 for a
failed run, 130 when interrupted); ``LIPSORT_DEBUG=1`` shows the traceback instead.
"""
import os
import signal
import time

from absl import app, flags, logging
from ml_collections import config_flags

from lipsort import train
from lipsort.cli import RUN_ERROR, USAGE_ERROR, debug, fail, interrupted, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default runs/<config>/<timestamp>).")
_RESTART = flags.DEFINE_bool("restart", False, "Move a run already in --workdir aside and start over.")

def default_workdir(config_path: str) -> str:
    """runs/<config file name>[_<arg>]/<timestamp> from a ``path.py[:arg]`` flag value."""
    path, _, arg = config_path.partition(":")
    name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg}" if arg else "")
    return os.path.join("runs", name, time.strftime("%Y%m%d-%H%M%S"))


def main(argv):
    if len(argv) > 1:
        fail(app.UsageError(f"unexpected arguments: {argv[1:]}"), USAGE_ERROR)
    try:
        config = _CONFIG.value  # the config file is loaded here: fail before logging anything
        config.get("experiment")  # a file that failed to load raises on first use
    except Exception as e:  # a missing or broken config file
        fail(e, USAGE_ERROR, "config: ")
    workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
    logging.info("workdir: %s", workdir)
    message = f"interrupted; run the same command again to resume {workdir} from its last checkpoint"
    if not debug():
        # Ctrl-C exits from the handler itself, before any unwinding: a KeyboardInterrupt
        # raised inside an orbax save can hang in orbax's own cleanup (waiting on the save's
        # threads), which the fresh-clone CI run hit once under load (2026-12-02).
        signal.signal(signal.SIGINT, lambda signum, frame: interrupted(message))
    try:
        train.train_and_evaluate(config, workdir, restart=_RESTART.value)
    except train.ConfigError as e:
        fail(e, USAGE_ERROR, "config error: ")
    except KeyboardInterrupt:
        if debug():
            raise
        interrupted(message)
    except Exception as e:  # every failure of a run is reported the same way
        fail(e, RUN_ERROR, f"{type(e).__name__}: ")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=parse_flags)
