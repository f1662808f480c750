"""Files of a run's workdir written whole or not at all: ``metrics.jsonl`` and JSON records.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a crash (even ``kill -9``) leaves the previous complete file (paths go through ``etils.epath``,
so a ``gs://`` workdir works where that filesystem is installed). A torn final line left by an older
writer (or another tool) is dropped on reading, with a warning; a damaged line before the end is an error
naming the file and line.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Callable, Iterable, Optional

from tgo_train.workdir import PathLike, as_path, naming

METRICS = "metrics.jsonl"


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
    write_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


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
