"""A checksum manifest per finished checkpoint, so a damaged file is found and named before restoring.

After orbax has finished a step folder, ``write(step_dir)`` lists every file in it with its size and
SHA-256 in ``step_dir/tgo_manifest.json`` (written whole or not at all). ``verify(step_dir)`` returns
None when every listed file is there, of its size and hash, else one line naming the first damaged file.
A step without a manifest (killed between orbax's commit and the manifest) is checked by restoring it.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from tgo_train import rundir
from tgo_train.workdir import as_path

NAME = "tgo_manifest.json"
_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with as_path(path).open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(step_dir: str) -> list[str]:
    root = as_path(step_dir)  # epath (a gs:// checkpoint folder too), which has no recursive glob
    out, folders = [], [root]
    while folders:
        for p in folders.pop().iterdir():
            if p.is_dir():
                folders.append(p)
            else:
                out.append(str(p.relative_to(root)))
    return sorted(p for p in out if p != NAME)


def write(step_dir: str) -> None:
    """Records size and SHA-256 of every file of a finished checkpoint folder."""
    entries = {}
    for rel in _files(step_dir):
        path = os.path.join(step_dir, rel)
        entries[rel] = {"bytes": as_path(path).stat().length, "sha256": _sha256(path)}
    rundir.write_json(os.path.join(step_dir, NAME), {"files": entries})


def exists(step_dir: str) -> bool:
    return (as_path(step_dir) / NAME).exists()


def verify(step_dir: str) -> Optional[str]:
    """None when the folder matches its manifest; else one line naming the damaged file."""
    try:
        with (as_path(step_dir) / NAME).open() as f:
            entries = json.load(f)["files"]
    except (OSError, ValueError, KeyError) as e:
        return f"{NAME} cannot be read ({type(e).__name__})"
    for rel, expected in entries.items():
        path = os.path.join(step_dir, rel)
        if not as_path(path).exists():
            return f"{rel} is missing"
        size = as_path(path).stat().length
        if size != expected["bytes"]:
            return f"{rel} has {size} bytes, {expected['bytes']} were written"
        if _sha256(path) != expected["sha256"]:
            return f"{rel} does not match its checksum"
    return None
