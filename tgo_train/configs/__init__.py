"""Experiment configs, shipped as modules of this package so that an installed wheel finds them.

A program's ``--config`` takes a config file path (``tgo_train/configs/fmnist_tgo.py``) or the name of a
module here (``fmnist_tgo``); either may carry an argument after a colon
(``cifar:cifar10,wrn16_4,rat,tgo``). ``resolve_config_flag`` turns a name into this package's file path
before the flags are parsed, so the path-based loader of ``ml_collections.config_flags`` reads both.
"""
from __future__ import annotations

import os
import textwrap
from typing import List, Mapping, Sequence

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def names() -> List[str]:
    """Config modules of this package that define ``get_config``."""
    found = []
    for entry in sorted(os.listdir(CONFIG_DIR)):
        stem, ext = os.path.splitext(entry)
        if ext == ".py" and not stem.startswith("_"):
            with open(os.path.join(CONFIG_DIR, entry)) as f:
                if "\ndef get_config(" in f.read():
                    found.append(stem)
    return found


def config_path(value: str) -> str:
    """A ``--config`` value as a file path: a name of ``names()`` becomes its module's path.

    Args:
      value: ``PATH[:ARG]`` or ``NAME[:ARG]``.

    Raises:
      ValueError: ``value`` is neither an existing file nor a config name (the message lists the names).
    """
    spec, sep, arg = value.partition(":")
    if os.path.isfile(spec):
        return value
    if spec in names():
        return os.path.join(CONFIG_DIR, spec + ".py") + sep + arg
    raise ValueError(f"--config: {spec!r} is neither a config file nor a config name; "
                     f"names: {', '.join(names())} (with an argument after ':' for cifar)")


def resolve_config_flag(argv: Sequence[str]) -> List[str]:
    """``argv`` with the value of ``--config`` (``--config=V`` or ``--config V``) passed through config_path.

    Overrides such as ``--config.epochs=3`` are left alone.
    """
    out = list(argv)
    for i, a in enumerate(out):
        if a in ("--config", "-config") and i + 1 < len(out):
            out[i + 1] = config_path(out[i + 1])
        elif a.startswith(("--config=", "-config=")):
            flag, _, value = a.partition("=")
            out[i] = f"{flag}={config_path(value)}"
    return out


def describe_fields(config, width: int = 100) -> str:
    """The fields and values of a config (a ``ConfigDict`` or dict), one wrapped paragraph per section, for
    ``--help``."""
    config = config.to_dict() if hasattr(config, "to_dict") else config
    lines = ["config fields, with the defaults of tgo_train/configs/base.py (a config file changes some; "
             "set any with --config.FIELD=VALUE; None: unset, the field's fallback):"]
    top = " ".join(f"{k}={v!r}" for k, v in config.items() if not isinstance(v, Mapping))
    lines += textwrap.wrap(top, width, initial_indent="  ", subsequent_indent="    ")
    for section, values in config.items():
        if isinstance(values, Mapping):
            text = " ".join(f"{section}.{k}={v!r}" for k, v in values.items())
            lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)
