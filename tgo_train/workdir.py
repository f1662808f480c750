"""Workdirs as ``etils.epath`` paths, so ``gs://bucket/run`` stays a bucket path (where that filesystem
is installed) and a local path becomes absolute (orbax wants absolute paths)."""
from __future__ import annotations

import os
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike, epath.Path]


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: URLs (``scheme://...``) unchanged, local paths made absolute."""
    if "://" in os.fspath(path):
        return epath.Path(path)
    return epath.Path(os.path.abspath(os.fspath(path)))
