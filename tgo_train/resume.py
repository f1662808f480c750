"""Resuming a workdir: the stored config against the new one, before any state is restored.

A field that changes what the run means (model, data, objective, optimiser, batch size, seed, ...)
refuses the resume with one line naming each change (old → new) and how to start fresh. Fields that
only change how the run is carried out or reported (``HARMLESS``) are allowed; the change is recorded in
``config_history.jsonl`` and ``config.json`` then holds the new config.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple, Optional

import ml_collections

from tgo_train import records
from tgo_train.config_check import flatten
from tgo_train.configs.base import get_base_config
from tgo_train.workdir import as_path

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
# Progress, evaluation, checkpoint cadence, devices, where the data lies and how the same computation runs.
HARMLESS = ("progress", "log_every_steps", "max_steps", "eval_batch_size", "eval_subset", "eval_every_epochs",
            "eval_noise_draws", "checkpoint_every_steps", "keep_checkpoints", "num_devices", "data_dir", "neuron.fused",
            "neuron.remat", "neuron.unroll", "model_kwargs.remat_blocks", "model_kwargs.conv_impl")
_ABSENT = "<absent>"


class ResumeError(ValueError):
    """The workdir holds a run whose config differs in a field that changes the run's meaning."""


class Change(NamedTuple):
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field} {self.old!r} → {self.new!r}"


def _plain(config) -> dict:
    """A config as plain JSON values (tuples become lists), as config.json stores it."""
    tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(tree, default=str))


def compare(stored: dict, new) -> tuple[list[Change], list[Change]]:
    """(refused, allowed) changes from a stored config to a new one.

    Fields the stored config lacks (options added since it was written) take their base defaults.
    """
    old = dict(flatten(_plain(get_base_config())))
    old.update(flatten(_plain(stored)))
    new = dict(flatten(_plain(new)))
    refused, allowed = [], []
    for field in sorted(set(old) | set(new)):
        a, b = old.get(field, _ABSENT), new.get(field, _ABSENT)
        if a != b:
            (allowed if field in HARMLESS else refused).append(Change(field, a, b))
    return refused, allowed


def checkpoint_steps(workdir: str) -> list[int]:
    """Steps of the finished checkpoints in ``workdir/checkpoints`` (orbax's step folders), ascending."""
    folder = as_path(workdir) / "checkpoints"  # epath: a gs:// workdir too
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def stored_config(workdir: str) -> Optional[dict]:
    """The config the workdir's run was last started with (config.json), None when there is none."""
    path = as_path(workdir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        with path.open() as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ResumeError(f"{path} cannot be read ({e}); start fresh with another --workdir or --fresh") from None


def check_resume(workdir: str, config) -> list[Change]:
    """Refuses (``ResumeError``) a resume whose config changes the run's meaning; returns allowed changes.

    Only a workdir with a checkpoint is a resume; otherwise the new config simply starts the run.
    """
    if not checkpoint_steps(workdir):
        return []
    stored = stored_config(workdir)
    if stored is None:
        from tgo_train.checkpoint import read_meta  # orbax only when there is no config.json
        stored = read_meta(os.path.join(workdir, "checkpoints"))["config"]
    refused, allowed = compare(stored, config)
    if refused:
        raise ResumeError(
            f"{workdir} holds a run with another config, so it cannot resume: {'; '.join(map(str, refused))}. "
            f"Start fresh with another --workdir, or move {workdir} aside (tgo_train.main --fresh does that)")
    return allowed


def record_start(workdir: str, config, allowed: list[Change], step: int) -> None:
    """Writes config.json; a resume with allowed changes appends them to config_history.jsonl."""
    if allowed:
        record = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "changed": {c.field: [c.old, c.new] for c in allowed}}
        records.append_jsonl(os.path.join(workdir, HISTORY_FILE), record)
        print(f"resuming with changed settings: {'; '.join(map(str, allowed))} "
              f"(recorded in {os.path.join(workdir, HISTORY_FILE)})", flush=True)
    records.write_json(os.path.join(workdir, CONFIG_FILE), _plain(config))


def move_aside(workdir: str) -> Optional[str]:
    """``--fresh``: renames an existing workdir to ``<workdir>.old-<UTC time>``; returns the new name."""
    if not os.path.exists(workdir):
        return None
    target = f"{os.path.normpath(workdir)}.old-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    suffix = 0
    while os.path.exists(target + (f"-{suffix}" if suffix else "")):
        suffix += 1
    target += f"-{suffix}" if suffix else ""
    os.rename(workdir, target)
    return target
