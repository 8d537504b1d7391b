"""Validation of a whole config before any work: every problem reported at once.

:func:`validate_config` checks what the generic trainer reads (experiment, seed, model,
train, certify) and builds the task, whose ``make_task`` checks its own fields. It
raises one :class:`ConfigError` listing all problems, so a run never fails after
training for a field it could have checked first.
"""
from __future__ import annotations

import jax
import ml_collections

from lipsort import optim, tasks
from lipsort.models import MLPSpec, spec_from_config


class ConfigError(ValueError):
    """An invalid config, found before any training starts."""


def get(cfg, key, default=None):
    """``cfg.get(key, default)`` for a ConfigDict or dict, ``default`` for None."""
    return cfg.get(key, default) if cfg is not None and hasattr(cfg, "get") else default


def check_int(errors: list[str], name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        errors.append(f"{name} must be an integer ≥ {minimum}, got {value!r}.")


def raise_if(errors: list[str], what: str = "config") -> None:
    if errors:
        raise ConfigError(f"invalid {what}:\n  - " + "\n  - ".join(errors))


def _check_train(errors: list[str], train, spec: MLPSpec | None) -> None:
    for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
        check_int(errors, f"config.train.{name}", get(train, name))
    errors.extend(optim.validate(train))
    data_parallel = get(train, "data_parallel", False)
    if not isinstance(data_parallel, bool):
        errors.append(f"config.train.data_parallel must be True or False, got {data_parallel!r}.")
    elif data_parallel and isinstance(get(train, "batch_size"), int) and train.batch_size % jax.device_count():
        errors.append(
            f"config.train.batch_size {train.batch_size} must be divisible by the "
            f"{jax.device_count()} devices of the data-parallel mesh."
        )
    optimizer = optim.OPTIMIZERS.get(optim.optimizer_name(train))
    if (optimizer is not None and optimizer.needs_manifold_mask and spec is not None
            and not (spec.constraint == "bjorck" and spec.bjorck_training == "riemannian")):
        errors.append(
            "optimizer 'riemannian_adam' adapts one second moment per orthonormal kernel and needs "
            "config.model.constraint='bjorck' with config.model.bjorck_training='riemannian' "
            f"(got {spec.constraint!r}, {spec.bjorck_training!r}); use optimizer 'adam' otherwise."
        )


def validate_config(config: ml_collections.ConfigDict) -> tuple[tasks.Task, MLPSpec]:
    """Checks every field the run will use; raises one :class:`ConfigError` listing all
    problems. Returns the task and the validated model spec (nothing is trained)."""
    errors: list[str] = []
    experiment = get(config, "experiment")
    task = None
    try:
        tasks.entry(experiment)
        try:
            task = tasks.make_task(config)
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            errors.append(f"{experiment} task: {e}")
    except ValueError as e:
        errors.append(str(e))
    check_int(errors, "config.seed", get(config, "seed"), minimum=0)
    spec = None
    model_cfg = get(config, "model")
    if model_cfg is None:
        errors.append("config.model is missing.")
    else:
        in_f, out_f, shape = (task.in_features, task.out_features, task.input_shape) if task else (1, 1, None)
        try:
            spec = spec_from_config(model_cfg, in_f, out_f, shape)
        except (ValueError, TypeError) as e:
            errors.append(f"config.model: {e}")
    train = get(config, "train")
    if train is None:
        errors.append("config.train is missing.")
    else:
        _check_train(errors, train, spec)
    curve_every = get(get(config, "eval"), "curve_every", 0)
    check_int(errors, "config.eval.curve_every", curve_every, minimum=0)
    if task is not None and task.curve is None and isinstance(curve_every, int) and curve_every > 0:
        errors.append(f"config.eval.curve_every: the {experiment} task has no learning curve; set it to 0.")
    select_best = get(get(config, "eval"), "select_best", "") or ""
    if not isinstance(select_best, str):
        errors.append(f"config.eval.select_best must be a curve metric name or '', got {select_best!r}.")
    elif select_best and (task is None or task.curve is None or not isinstance(curve_every, int) or curve_every <= 0):
        errors.append(f"config.eval.select_best={select_best!r} picks the best model of the learning curve: it needs "
                      "config.eval.curve_every > 0 and a task with a curve (classify: config.data.num_val > 0).")
    cert = get(config, "certify")
    if cert is not None:
        check_int(errors, "config.certify.search_steps", get(cert, "search_steps", 1), minimum=0)
    raise_if(errors)
    return task, spec
