"""Loading an experiment config as ``--config=configs/NAME.py[:ARG]`` does, from Python.

    load_config("toy_wde:translate,quick")            # a name in the repository's configs/
    load_config("configs/toy_wde.py:translate,quick")  # a path (relative: cwd, then the repo)
    load_config("/abs/path/my_config.py")

As ``ml_collections.config_flags``: everything after the first ``:`` is passed to the
file's ``get_config``, which is called without an argument when there is no ``:``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")


def config_names() -> list[str]:
    """The names of the configs in the repository's configs/ (the files with a get_config)."""
    names = []
    for entry in sorted(os.listdir(CONFIG_DIR)):
        name, ext = os.path.splitext(entry)
        if ext == ".py" and not name.startswith("_"):
            with open(os.path.join(CONFIG_DIR, entry), encoding="utf-8") as f:
                if "\ndef get_config(" in f.read():
                    names.append(name)
    return names


def config_path(name_or_path: str) -> str:
    """The file of a config name (``toy_wde``) or path (``configs/toy_wde.py``); a relative
    path is looked up in the working directory, then in the repository."""
    if name_or_path.endswith(".py") or os.sep in name_or_path or "/" in name_or_path:
        candidates = [name_or_path]
        if not os.path.isabs(name_or_path):
            candidates.append(os.path.join(REPO, name_or_path))
    else:
        candidates = [os.path.join(CONFIG_DIR, f"{name_or_path}.py")]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise ValueError(f"No config file {name_or_path!r} (looked for {' and '.join(candidates)}); "
                     f"the configs in {CONFIG_DIR} are: {', '.join(config_names())}.")


def load_module(name_or_path: str) -> types.ModuleType:
    """The config file's module (its ``get_config``, ``KINDS``, docstring), freshly executed."""
    path = config_path(name_or_path)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"_lipsort_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    # Registered (as config_flags does) so that e.g. a dataclass in the file can be defined.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} is not a config: it defines no get_config().")
    return module


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of ``spec``: ``NAME[:ARG]``, ``configs/NAME.py[:ARG]`` or ``/path/x.py[:ARG]``."""
    path, colon, arg = spec.partition(":")
    module = load_module(path)
    return module.get_config(arg) if colon else module.get_config()
