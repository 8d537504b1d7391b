"""Experiment configs: ``python -m lipsort.main --config=configs/NAME.py[:ARG]``.

Each ``NAME.py`` defines ``get_config(arg=None)``; :mod:`configs.common` holds what
several of them share (the argument parser and the shared config builders), and
:func:`lipsort.config_loader.load_config` loads one by name or path from Python.
"""
