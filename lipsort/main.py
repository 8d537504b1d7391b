"""Command line: ``python -m lipsort.main --config=configs/NAME.py[:ARG] [--workdir=DIR]``.

Config fields are overridden with ``--config.a.b=value``. Without ``--workdir`` the run
goes to ``runs/<config name>[_ARG]/<timestamp>``. ``--restart`` moves a run already in
the workdir aside (``DIR.previous-<timestamp>``, never deleted) and starts over. All
logic is in :func:`lipsort.train.train_and_evaluate`.

Errors are one line on stderr (exit status 2 for a bad config or command line, 1 for a
failed run, 130 when interrupted); ``LIPSORT_DEBUG=1`` shows the traceback instead.
"""
import ast
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from lipsort import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default runs/<config>/<timestamp>).")
_RESTART = flags.DEFINE_bool("restart", False, "Move a run already in --workdir aside and start over.")

USAGE_ERROR, RUN_ERROR, INTERRUPTED = 2, 1, 130


def default_workdir(config_path: str) -> str:
    """runs/<config file name>[_<arg>]/<timestamp> from a ``path.py[:arg]`` flag value."""
    path, _, arg = config_path.partition(":")
    name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg}" if arg else "")
    return os.path.join("runs", name, time.strftime("%Y%m%d-%H%M%S"))


def _debug() -> bool:
    return os.environ.get("LIPSORT_DEBUG", "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """The gist of an error in one line. config_flags wraps a config file's own error in
    a message that ends with that error's traceback: its last line is what went wrong."""
    text = str(error).strip()
    if isinstance(error, AttributeError) and text[:1] in "'\"":
        # ml_collections' message for a config field that does not exist, as a repr.
        text = "no such config field " + ast.literal_eval(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if any(line.startswith("Traceback") for line in lines) or "earlier failure to load" in text:
        lines = [lines[-1]]
    lines = [line.removeprefix("- ") for line in lines]  # ConfigError lists one problem per line
    return " ".join([lines[0], "; ".join(lines[1:])]).strip()


def fail(error: BaseException, status: int, prefix: str = "") -> None:
    if _debug():
        raise error
    sys.stderr.write(f"lipsort: {prefix}{one_line(error)}\n")
    sys.exit(status)


def parse_flags(argv):
    """absl's flag parsing, with config-file and override errors as one line."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or a config override's own error (e.g. a typo in a field)
        fail(e, USAGE_ERROR, "command line: ")


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
    try:
        train.train_and_evaluate(config, workdir, restart=_RESTART.value)
    except train.ConfigError as e:
        fail(e, USAGE_ERROR, "config error: ")
    except KeyboardInterrupt:
        if _debug():
            raise
        sys.stderr.write(f"lipsort: interrupted; run the same command again to resume {workdir} "
                         "from its last checkpoint\n")
        sys.exit(INTERRUPTED)
    except Exception as e:  # every failure of a run is reported the same way
        fail(e, RUN_ERROR, f"{type(e).__name__}: ")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=parse_flags)
