"""The run config checked before anything is written: every field with its type and range, in one place.

``SCHEMA`` maps each dotted field of ``tgo_train/configs/base.py`` to its check (``tgo_jax/validation.py``;
the neuron's fields to ``NeuronConfig.FIELD_CHECKS``, the neuron's own rules);
``check(config)`` runs them all, then builds the neuron configuration and the model (without initialising
it), so a bad value fails in seconds with one line naming the field, its value and what is allowed.
``model`` and ``model_kwargs`` may hold further keyword arguments of the model class; the model itself
checks those. ``explain_override_error`` turns ml_collections' error for an unknown ``--config.KEY``
into one line listing the nearest known keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import ml_collections

from tgo_jax import data, fastconv, losses, models, neurons, validation

DTYPES = ("float32", "bfloat16")  # compute dtypes; params and optimiser state stay float32
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "constant")
RAT_FORMS = ("retraction", "loss")
OPEN_SECTIONS = ("model", "model_kwargs")  # extra keys are model keyword arguments, checked by the model


class ConfigError(ValueError):
    """A config field outside what is allowed; the message is one line naming it."""


INT_MAX = 2**31 - 1  # counts, sizes and steps: int32 on the devices
SEED_MAX = 2**32 - 2  # jax.random.PRNGKey keeps 32 bits of a seed (larger ones repeat smaller ones); seed + 1 is used too


def _int(minimum: int, maximum: int = INT_MAX) -> Callable:
    """An int in [minimum, maximum]: a larger one is refused here, naming the field, not overflowed later."""

    def check(name: str, value: Any) -> int:
        value = validation.count(name, value, minimum)
        if value > maximum:
            raise ValueError(f"{name} must be an int in [{minimum}, {maximum}], got {value!r}")
        return value

    return check


def _choice(choices: Sequence[Any]) -> Callable:
    return functools.partial(validation.choice, choices=tuple(choices))


def _range(lo: float, hi: float) -> Callable:
    return functools.partial(validation.in_range, lo=lo, hi=hi)


def _optional(check: Callable) -> Callable:
    return lambda name, value: value if value is None else check(name, value)


def _checked_when_built(name: str, value: Any) -> Any:
    """A field whose rule involves other fields: the class it configures checks it in ``_check_built``."""
    return value


SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "seed": _int(0, SEED_MAX),
    "dataset": _choice(data.DATASETS),
    "data_dir": validation.text,
    "augment": validation.boolean,
    "dvs.frames": _int(1),  # T of event data; the model runs one step per frame
    "dvs.size": _int(1),
    "dvs.mode": _choice(data.dvs.MODES),
    "dvs.count_cap": lambda name, v: validation.in_range(name, validation.count(name, v, 1), 1, 255),  # uint8 cache
    "dvs.cache_dir": validation.text,
    "dvs.roll": _int(0),
    "train_subset": _int(0),
    "eval_subset": _int(0),
    "model.arch": _choice(models.ARCHS),
    "model.num_steps": _int(1),
    "model.num_classes": _optional(_int(1)),  # None: the dataset's
    "model_kwargs.remat_blocks": validation.boolean,
    "model_kwargs.conv_impl": _choice(fastconv.IMPLS),
    "dtype": _choice(DTYPES),
    **{f"neuron.{field.name}": neurons.NeuronConfig.FIELD_CHECKS.get(field.name, _checked_when_built)
       for field in dataclasses.fields(neurons.NeuronConfig)},  # the neuron's own rules, one place
    "strategy": _choice(losses.STRATEGIES),
    "tet_lambda": validation.non_negative,
    "margin.enabled": validation.boolean,
    "margin.delta": validation.positive,
    "margin.p": _choice((1, 2)),
    "margin.lambda_max": validation.non_negative,
    "margin.schedule": _choice(losses.SCHEDULES),
    "at.eps": _range(0.0, 1.0),
    "at.alpha": _range(0.0, 1.0),
    "at.steps": _int(1),
    "rat.beta": validation.non_negative,
    "rat.form": _choice(RAT_FORMS),
    "sr.enabled": validation.boolean,
    "sr.weight": validation.non_negative,
    "sr.h": validation.positive,
    "optim.name": _choice(OPTIMIZERS),
    "optim.lr": validation.positive,
    "optim.momentum": _range(0.0, 1.0),
    "optim.nesterov": validation.boolean,
    "optim.weight_decay": validation.non_negative,
    "optim.schedule": _choice(LR_SCHEDULES),
    "batch_size": _int(1),
    "epochs": _int(1),
    "max_steps": _int(0),  # 0 = all epochs
    "checkpoint_every_steps": _int(1),
    "keep_checkpoints": _int(1),
    "eval_batch_size": _int(1),
    "eval_every_epochs": _int(1),
    "eval_noise_draws": _int(1),
    "num_devices": _int(0),  # 0 = all visible
    "progress": validation.boolean,
    "log_every_steps": _int(0),  # 0 = no per-step TensorBoard scalars
}


def flatten(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) of a nested dict / ConfigDict, in key order."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, (Mapping, ml_collections.ConfigDict)):
            yield from flatten(value, path + ".")
        else:
            yield path, value


def check(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field of a run config; raises ``ConfigError`` naming the first bad one.

    Returns the config unchanged, so ``config = check(config)`` reads well.
    """
    fields = dict(flatten(config))
    for path, value in fields.items():
        if path in SCHEMA:
            _run(SCHEMA[path], path, value)
        elif path.split(".", 1)[0] not in OPEN_SECTIONS:
            raise ConfigError(f"config.{path} is not a known field{_nearest_hint(path, list(SCHEMA))}")
    missing = [p for p in SCHEMA if p not in fields and not p.startswith(OPEN_SECTIONS)]
    if missing:
        raise ConfigError(f"config lacks field(s) {missing}; start from tgo_train.configs.base.get_base_config()")
    _check_built(config)
    return config


def _run(check_fn: Callable, path: str, value: Any) -> None:
    try:
        check_fn(f"config.{path}", value)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_built(config: ml_collections.ConfigDict) -> None:
    """The neuron and model classes check their own arguments: build both (no parameters are made)."""
    try:
        neuron = neurons.NeuronConfig(**config.neuron.to_dict())
    except ValueError as e:  # its message starts with the field's name
        raise ConfigError(f"config.neuron.{e}") from None
    if config.dataset == data.dvs.NAME and config.model.num_steps != config.dvs.frames:
        raise ConfigError(f"config.model.num_steps is {config.model.num_steps} but config.dvs.frames is "
                          f"{config.dvs.frames}: event data feed one frame per step, so they must be equal")
    arch, kwargs = model_arguments(config, data.dataset_info(config.dataset))
    try:
        models.create(arch, neuron=neuron, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.model / config.model_kwargs ({arch}): {e}") from None


def model_arguments(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> tuple[str, dict[str, Any]]:
    """(arch, keyword arguments) of the model: ``model`` and ``model_kwargs`` merged, unset placeholders
    (None) dropped, and the dataset's classes, channels and normalisation where the config sets none."""
    kwargs = dict(config.model.to_dict(), **config.model_kwargs.to_dict())
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    arch = kwargs.pop("arch")
    kwargs.setdefault("num_classes", info.num_classes)
    kwargs.setdefault("in_channels", info.shape[-1])
    kwargs.setdefault("mean", tuple(info.mean))
    kwargs.setdefault("std", tuple(info.std))
    return arch, kwargs


# ----------------------------------------------------------------------------- command-line overrides

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")


def explain_override_error(argv: Sequence[str], error: BaseException) -> str:
    """One line for an error raised while ml_collections applied ``--config.KEY=VALUE`` overrides.

    An unknown KEY is named with the nearest known keys of the loaded config file; any other error is
    reduced to its first line.
    """
    config = _load_config_file(argv)
    if config is not None:
        known = [path for path, _ in flatten(config)]
        sections = {p.rsplit(".", 1)[0] for p in known if "." in p}
        for arg in argv:
            match = _OVERRIDE.match(arg)
            if match and match.group(1) not in known and match.group(1) not in sections:
                key = match.group(1)
                return f"unknown config field {key!r} (in {arg!r}){_nearest_hint(key, known)}"
    return one_line(error)


def config_path(argv: Sequence[str]) -> Optional[str]:
    """The PATH of ``--config=PATH`` / ``--config PATH`` in ``argv`` (None when absent)."""
    path = None
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(argv):
            path = argv[i + 1]
    return path


def explain_load_error(argv: Sequence[str], error: BaseException) -> Optional[str]:
    """One line for a config file ml_collections could not load (its own message omits the path)."""
    path = config_path(argv)
    if path is None or "config file" not in str(error):
        return None
    file = path.split(":", 1)[0]  # PATH:ARG passes ARG to get_config
    if not os.path.exists(file):
        return f"config file {file!r} does not exist (--config {path})"
    return f"config file {path!r} cannot be loaded (run with --verbose for the cause)"


def _load_config_file(argv: Sequence[str]):
    """The config named by ``--config`` in ``argv``, or None if it cannot be loaded."""
    from ml_collections.config_flags import config_flags

    path = config_path(argv)
    if not path:
        return None
    try:
        config = config_flags.ConfigFileFlagParser(name="config").parse(path)
        return config if isinstance(config, ml_collections.ConfigDict) else None
    except Exception:  # noqa: BLE001 - the original error is reported instead
        return None


def _nearest_hint(key: str, known: Sequence[str]) -> str:
    """'; nearest known: a, b, c' from difflib, matched on the full path and on its last part."""
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {p.rsplit(".", 1)[-1]: p for p in known}
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    near += [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=3, cutoff=0.6)]
    near = list(dict.fromkeys(near))[:4] or difflib.get_close_matches(key, known, n=3, cutoff=0.0)
    return f"; nearest known: {', '.join(near)}" if near else ""


def one_line(error: BaseException) -> str:
    """An exception as one line: the message alone for ValueError, else 'TypeName: first line'."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if isinstance(error, KeyError) and len(error.args) == 1:
        message = str(error.args[0])
    if isinstance(error, ValueError) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
