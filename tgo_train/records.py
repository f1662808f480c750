"""Files of a run's workdir written whole or not at all: ``metrics.jsonl`` and JSON records.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a crash (even ``kill -9``) leaves the previous complete file. A torn final line left by an
older writer (or another tool) is dropped on reading, with a warning; a damaged line before the end is
an error naming the file and line.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterable, Optional

METRICS = "metrics.jsonl"


def write_atomic(path: str, text: str) -> None:
    """Replaces ``path`` by ``text`` in one rename (the temporary file sits next to it)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


def read_jsonl(path: str, warn: Optional[Callable[[str], None]] = None) -> list[dict]:
    """The records of a JSON-lines file ([] when absent), dropping a torn final line (``warn`` says so)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
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


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def append_jsonl(path: str, record: dict) -> None:
    """Appends one record by rewriting the file whole (metrics files hold one record per epoch)."""
    write_jsonl(path, read_jsonl(path) + [record])


def keep_records_until(path: str, step: int, drop_partial: bool = True) -> None:
    """On resume: forgets records of epochs that ended after ``step`` (they are redone) and, when
    training goes on (``drop_partial``), the partial record of a ``max_steps`` stop."""
    if os.path.exists(path):
        write_jsonl(path, [r for r in read_jsonl(path)
                           if r.get("step", 0) <= step and not (drop_partial and r.get("partial"))])


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
