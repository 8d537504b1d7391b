"""What the command-line entrypoints share (``lipsort.main``, ``lipsort.sweep``): errors
as one line on stderr with an exit status, and absl flag parsing that reports a bad
config file or override the same way. ``LIPSORT_DEBUG=1`` shows tracebacks instead."""
import ast
import os
import sys

from absl import flags

USAGE_ERROR, RUN_ERROR, INTERRUPTED = 2, 1, 130


def debug() -> bool:
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
    if debug():
        raise error
    sys.stderr.write(f"lipsort: {prefix}{one_line(error)}\n")
    sys.exit(status)


def interrupted(message: str) -> None:
    """Ctrl-C: one line, then exit 130 at once. ``os._exit``, not ``sys.exit``: an orbax
    checkpoint save that the interrupt cut short can keep the interpreter's shutdown
    waiting on its threads forever. That save is incomplete anyway (it has no meta file and
    is not resumed as verified); the checkpoints before it are whole."""
    sys.stderr.write(f"lipsort: {message}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(INTERRUPTED)


def parse_flags(argv):
    """absl's flag parsing, with config-file and override errors as one line."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or a config override's own error (e.g. a typo in a field)
        fail(e, USAGE_ERROR, "command line: ")
