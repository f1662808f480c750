"""Resuming a workdir: the stored config against the new one, before any state is restored.

A field that changes what the run means (model, data, objective, optimiser, batch size, seed, ...)
refuses the resume with one line naming each change (old → new) and how to start fresh. Fields that
only change how the run is carried out or reported (``HARMLESS``) are allowed; the change is recorded in
``config_history.jsonl`` and ``config.json`` then holds the new config.

A stored config written by another version of the code is read as that run's: a field the code no longer
knows is dropped with a warning; a field config.json lacks is taken from the config saved in the newest
intact checkpoint (what the run trained with), and only a field neither holds (an option added since)
takes its base default.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, NamedTuple, Optional

import ml_collections

from tgo_train import records
from tgo_train.config_check import OPEN_SECTIONS, flatten
from tgo_train.configs.base import get_base_config
from tgo_train.workdir import EVALUATOR, WRITER, acquire, as_path

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
    if stored is None or lacks_fields(stored, config):  # completed from what the run trained with
        from tgo_train.checkpoint import read_meta  # orbax only when config.json is not enough
        saved = dict(flatten(_plain(read_meta(os.path.join(workdir, "checkpoints"))["config"])))
        stored = dict(saved, **dict(flatten(_plain(stored or {}))))
    stored = without_retired(stored, config, where=os.path.join(workdir, CONFIG_FILE))
    refused, allowed = compare(stored, config)
    if refused:
        raise ResumeError(
            f"{workdir} holds a run with another config, so it cannot resume: {'; '.join(map(str, refused))}. "
            f"Start fresh with another --workdir, or move {workdir} aside (tgo_train.main --fresh does that)")
    return allowed


def lacks_fields(stored: dict, config) -> bool:
    """Whether ``stored`` lacks a field of ``config`` (written by an older version of the code, or edited)."""
    return bool(set(dict(flatten(_plain(config)))) - set(dict(flatten(_plain(stored)))))


def without_retired(stored: dict, config, where: str = "the stored config") -> dict:
    """``stored`` (flattened) without the fields the code no longer knows, with a warning naming them.
    ``model`` and ``model_kwargs`` take any keyword of the model class, so their fields are all kept."""
    known = set(dict(flatten(_plain(get_base_config())))) | set(dict(flatten(_plain(config))))
    flat = dict(flatten(_plain(stored)))
    retired = [f for f in flat if f not in known and f.split(".", 1)[0] not in OPEN_SECTIONS]
    if retired:
        print(f"warning: {where}: ignoring {', '.join(f'{f}={flat[f]!r}' for f in retired)} (not options "
              "of this version of the code)", file=sys.stderr, flush=True)
    return {f: v for f, v in flat.items() if f not in retired}


def record_start(workdir: str, config, allowed: list[Change], step: int) -> None:
    """Writes config.json; a resume with allowed changes appends them to config_history.jsonl."""
    if allowed:
        record = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "changed": {c.field: [c.old, c.new] for c in allowed}}
        records.append_jsonl(os.path.join(workdir, HISTORY_FILE), record)
        print(f"resuming with changed settings: {'; '.join(map(str, allowed))} "
              f"(recorded in {os.path.join(workdir, HISTORY_FILE)})", flush=True)
    records.write_json(os.path.join(workdir, CONFIG_FILE), _plain(config))


WORKDIR_MARKS = (CONFIG_FILE, "checkpoints", records.METRICS)  # what makes a folder a training workdir


def _contents(folder: str) -> list[str]:
    """The folder's entries but lock files (a crashed program's, which the next one takes over)."""
    return [name for name in os.listdir(folder) if name not in (WRITER, EVALUATOR)]


def move_aside(workdir: str) -> Optional[str]:
    """``--fresh``: renames an existing workdir to ``<workdir>.old-<UTC time>``; returns the new name (None
    when there is nothing to move: no such path, or an empty folder).

    Only a training workdir is moved (a folder holding one of ``WORKDIR_MARKS``), and only while no other
    program holds it (``tgo_train.workdir`` lock); anything else is refused with ``ValueError``.
    """
    if not os.path.lexists(workdir) or (os.path.isdir(workdir) and not _contents(workdir)):
        return None
    if not os.path.isdir(workdir) or os.path.islink(workdir):
        raise ValueError(f"--fresh: {workdir} is not a folder, so not a workdir; it is left as it is (give "
                         "--workdir a folder)")
    if not any(os.path.exists(os.path.join(workdir, mark)) for mark in WORKDIR_MARKS):
        raise ValueError(f"--fresh: {workdir} holds no training run (none of {', '.join(WORKDIR_MARKS)}), so it "
                         "is not moved; give --workdir a new or a training folder")
    lock = acquire(workdir)  # refuses while another program writes there
    target = f"{os.path.normpath(workdir)}.old-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    suffix = 0
    while os.path.exists(target + (f"-{suffix}" if suffix else "")):
        suffix += 1
    target += f"-{suffix}" if suffix else ""
    try:
        os.rename(workdir, target)
        if lock is not None:
            lock.moved_to(target)
    finally:
        if lock is not None:
            lock.release()
    return target
