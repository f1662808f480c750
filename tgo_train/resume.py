"""Resuming a workdir: the stored config against the new one, before any state is restored.

A field that changes what the run means (model, data, objective, optimiser, batch size, seed, ...)
refuses the resume with one line naming each change (old → new) and how to start fresh. Fields that
only change how the run is carried out or reported (``rundir.HARMLESS``) are allowed; the change is recorded in
``config_history.jsonl`` and ``config.json`` then holds the new config.

A stored config written by another version of the code is read as that run's: a field the code no longer
knows is dropped with a warning; a field config.json lacks is taken from the config saved in the newest
intact checkpoint (what the run trained with), and only a field neither holds (an option added since)
takes its base default.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

from tgo_train import rundir
from tgo_train.config_check import OPEN_SECTIONS, flatten
from tgo_train.configs.base import get_base_config
from tgo_train.rundir import Change, plain
from tgo_train.workdir import EVALUATOR, WRITER, acquire


class ResumeError(ValueError):
    """The workdir holds a run whose config differs in a field that changes the run's meaning."""


def stored_config(workdir: str) -> Optional[dict]:
    """The config the workdir's run was last started with (config.json), None when there is none."""
    try:
        return rundir.read_config(workdir)
    except ValueError as e:
        raise ResumeError(f"{e}; start fresh with another --workdir or --fresh") from None


def check_resume(workdir: str, config) -> list[Change]:
    """Refuses (``ResumeError``) a resume whose config changes the run's meaning; returns allowed changes.

    Only a workdir with a checkpoint is a resume; otherwise the new config simply starts the run.
    """
    if not rundir.checkpoint_steps(workdir):
        return []
    stored = stored_config(workdir)
    if stored is None or lacks_fields(stored, config):  # completed from what the run trained with
        from tgo_train.checkpoint import read_meta  # orbax only when config.json is not enough
        saved = dict(flatten(plain(read_meta(rundir.checkpoint_dir(workdir))["config"])))
        stored = dict(saved, **dict(flatten(plain(stored or {}))))
    stored = without_retired(stored, config, where=rundir.file(workdir, rundir.CONFIG))
    refused, allowed = rundir.config_changes(stored, config)
    if refused:
        raise ResumeError(
            f"{workdir} holds a run with another config, so it cannot resume: {'; '.join(map(str, refused))}. "
            f"Start fresh with another --workdir, or move {workdir} aside (tgo_train.main --fresh does that)")
    return allowed


def lacks_fields(stored: dict, config) -> bool:
    """Whether ``stored`` lacks a field of ``config`` (written by an older version of the code, or edited)."""
    return bool(set(dict(flatten(plain(config)))) - set(dict(flatten(plain(stored)))))


def without_retired(stored: dict, config, where: str = "the stored config") -> dict:
    """``stored`` (flattened) without the fields the code no longer knows, with a warning naming them.
    ``model`` and ``model_kwargs`` take any keyword of the model class, so their fields are all kept."""
    known = set(dict(flatten(plain(get_base_config())))) | set(dict(flatten(plain(config))))
    flat = dict(flatten(plain(stored)))
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
        rundir.append_jsonl(rundir.file(workdir, rundir.HISTORY), record)
        print(f"resuming with changed settings: {'; '.join(map(str, allowed))} "
              f"(recorded in {rundir.file(workdir, rundir.HISTORY)})", flush=True)
    rundir.write_json(rundir.file(workdir, rundir.CONFIG), plain(config))


def _contents(folder: str) -> list[str]:
    """The folder's entries but lock files (a crashed program's, which the next one takes over)."""
    return [name for name in os.listdir(folder) if name not in (WRITER, EVALUATOR)]


def move_aside(workdir: str) -> Optional[str]:
    """``--fresh``: renames an existing workdir to ``<workdir>.old-<UTC time>``; returns the new name (None
    when there is nothing to move: no such path, or an empty folder).

    Only a training workdir is moved (a folder holding one of ``rundir.MARKS``), and only while no other
    program holds it (``tgo_train.workdir`` lock); anything else is refused with ``ValueError``.
    """
    if not os.path.lexists(workdir) or (os.path.isdir(workdir) and not _contents(workdir)):
        return None
    if not os.path.isdir(workdir) or os.path.islink(workdir):
        raise ValueError(f"--fresh: {workdir} is not a folder, so not a workdir; it is left as it is (give "
                         "--workdir a folder)")
    if not any(os.path.exists(os.path.join(workdir, mark)) for mark in rundir.MARKS):
        raise ValueError(f"--fresh: {workdir} holds no training run (none of {', '.join(rundir.MARKS)}), so it "
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
