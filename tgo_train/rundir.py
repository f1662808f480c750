"""A run's directory (its workdir): the file names, whole-file writes, and what the files say about the run.

    WORKDIR/
      config.json            CONFIG: the config the run was last started with (``read_config``)
      config_history.jsonl   HISTORY: the allowed config changes of its resumes (``tgo_train.resume``)
      metrics.jsonl          METRICS: one record per epoch (``read_metrics``)
      checkpoints/<step>/    CHECKPOINTS: orbax checkpoints (``checkpoint_dir``, ``checkpoint_steps``)
      damaged_checkpoints/   DAMAGED: damaged checkpoints set aside on resume
      eval.json, eval.md     EVAL_JSON, EVAL_MD: ``tgo-evaluate``'s results
      audit.json, audit.md   AUDIT_JSON, AUDIT_MD: the gradient-masking audit's (``tgo-audit``)
      reproduce.json         REPRODUCE: a reproduction run's record (``tgo-reproduce``)

Writes are whole or nothing: each goes to a temporary file in the same folder, is flushed to disk, then
renamed over the target, so a crash (even ``kill -9``) leaves the previous complete file. Paths go
through ``etils.epath``, so a ``gs://`` workdir works where that filesystem is installed. On reading a
JSON-lines file a torn final line (left by an older writer or another tool) is dropped with a warning; a
damaged line before the end is an error naming the file and line.

A run is ``finished`` when training it again with its config would train nothing more; two configs make
the same run when ``config_changes`` refuses nothing: they differ only in fields that change how the run is
carried out or reported (``HARMLESS``), not what it means.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Callable, Iterable, NamedTuple, Optional

import ml_collections

from tgo_train.config_check import flatten
from tgo_train.configs.base import get_base_config
from tgo_train.workdir import PathLike, as_path, naming

CONFIG = "config.json"
HISTORY = "config_history.jsonl"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
DAMAGED = "damaged_checkpoints"
EVAL_JSON, EVAL_MD = "eval.json", "eval.md"
AUDIT_JSON, AUDIT_MD = "audit.json", "audit.md"
REPRODUCE = "reproduce.json"
MARKS = (CONFIG, CHECKPOINTS, METRICS)  # what makes a folder a training workdir

# Progress, evaluation, checkpoint cadence, devices, where the data lies and how the same computation runs.
HARMLESS = ("progress", "log_every_steps", "max_steps", "eval_batch_size", "eval_subset", "eval_every_epochs",
            "eval_noise_draws", "checkpoint_every_steps", "keep_checkpoints", "num_devices", "data_dir", "neuron.fused",
            "neuron.remat", "neuron.unroll", "model_kwargs.remat_blocks", "model_kwargs.conv_impl")
_ABSENT = "<absent>"


def file(workdir: PathLike, name: str) -> str:
    """The path of the run's file ``name`` (one of the names above): ``workdir/name``, a URL kept one."""
    return os.path.join(os.fspath(workdir), name)


def checkpoint_dir(workdir: PathLike) -> str:
    return file(workdir, CHECKPOINTS)


# ----------------------------------------------------------------------------- whole-file writes and reads

def write_atomic(path: PathLike, text: str) -> None:
    """Replaces ``path`` by ``text`` in one rename (the temporary file sits next to it).

    A failed write (a full disk, no permission) removes the temporary file and raises an ``OSError``
    naming ``path``; the previous file stays whole.
    """
    target = as_path(path)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    try:
        with naming(target):
            _write_then_rename(tmp, target, text)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_then_rename(tmp, target, text: str) -> None:
    if "://" in str(target):  # a bucket: no fsync there; the rename is the commit
        tmp.write_text(text)
        tmp.replace(target)
        return
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def write_json(path: PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (other values as their text), written whole."""
    write_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


def read_json(path: PathLike) -> Optional[Any]:
    """The JSON value of ``path``; None when there is no such file. A file that cannot be read or is not
    JSON is a ``ValueError`` naming it."""
    path = as_path(path)
    if not path.exists():
        return None
    try:
        with path.open() as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read ({e})") from None


def read_jsonl(path: PathLike, warn: Optional[Callable[[str], None]] = None) -> list[dict]:
    """The records of a JSON-lines file ([] when absent), dropping a torn final line (``warn`` says so)."""
    path = as_path(path)
    if not path.exists():
        return []
    with path.open() as f:
        lines = [(i + 1, line) for i, line in enumerate(f) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if index < len(lines) - 1:
                raise ValueError(f"{path} line {number} is not a JSON record: {line.strip()[:80]!r}") from None
            (warn or _stderr)(f"{path}: dropped a torn final record at line {number} "
                              f"({line.strip()[:60]!r}); it is rewritten when its epoch is redone")
    return records


def write_jsonl(path: PathLike, records: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def append_jsonl(path: PathLike, record: dict) -> None:
    """Appends one record by rewriting the file whole (metrics files hold one record per epoch)."""
    write_jsonl(path, read_jsonl(path) + [record])


def keep_records_until(path: PathLike, step: int, drop_partial: bool = True) -> None:
    """On resume: forgets records of epochs that ended after ``step`` (they are redone) and, when
    training goes on (``drop_partial``), the partial record of a ``max_steps`` stop."""
    if as_path(path).exists():
        write_jsonl(path, [r for r in read_jsonl(path)
                           if r.get("step", 0) <= step and not (drop_partial and r.get("partial"))])


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- what the run's files say

def read_metrics(workdir: PathLike, warn: Optional[Callable[[str], None]] = None) -> list[dict]:
    """The per-epoch records of ``metrics.jsonl`` ([] when there is none; a torn final line dropped)."""
    return read_jsonl(file(workdir, METRICS), warn)


def read_config(workdir: PathLike) -> Optional[dict]:
    """The config the run was last started with (``config.json``, plain JSON values); None when there is
    none. An unreadable one is a ``ValueError`` naming the file."""
    return read_json(file(workdir, CONFIG))


def checkpoint_steps(workdir: PathLike) -> list[int]:
    """Steps of the finished checkpoints in ``workdir/checkpoints`` (orbax's step folders), ascending."""
    folder = as_path(checkpoint_dir(workdir))
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def finished(workdir: PathLike, config=None) -> bool:
    """Whether training ``workdir`` with ``config`` (default: its ``config.json``) would train nothing more.

    That is: its last metrics record ends the run and a checkpoint of that step exists. The record ends
    the run when it is the whole last epoch (epoch == ``config.epochs``, not partial), or when it reaches
    the config's ``max_steps`` (a run cut short on purpose, e.g. a quick notebook run: its last record
    may be a partial epoch). A checkpoint older than the record (a crash between them) means the last
    steps are trained again.
    """
    config = plain(config) if config is not None else read_config(workdir)
    records = read_metrics(workdir)
    steps = checkpoint_steps(workdir)
    if not config or not records or not steps:
        return False
    last = records[-1]
    ends = ((last.get("epoch") == config["epochs"] and not last.get("partial"))
            or bool(config.get("max_steps")) and last.get("step", 0) >= config["max_steps"])
    return ends and steps[-1] >= last.get("step", 0)


# ----------------------------------------------------------------------------- the same run?

class Change(NamedTuple):
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field} {self.old!r} → {self.new!r}"


def plain(config) -> dict:
    """A config as plain JSON values (tuples become lists), as config.json stores it."""
    tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(tree, default=str))


def config_changes(stored, new) -> tuple[list[Change], list[Change]]:
    """(refused, allowed) changes from a stored config (a dict or ConfigDict) to a new one: refused ones
    change what the run means, allowed ones are in ``HARMLESS``.

    Fields the stored config lacks (options added since it was written) take their base defaults.
    """
    old = dict(flatten(plain(get_base_config())))
    old.update(flatten(plain(stored)))
    new = dict(flatten(plain(new)))
    refused, allowed = [], []
    for field in sorted(set(old) | set(new)):
        a, b = old.get(field, _ABSENT), new.get(field, _ABSENT)
        if a != b:
            (allowed if field in HARMLESS else refused).append(Change(field, a, b))
    return refused, allowed
