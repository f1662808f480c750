"""Workdirs: paths as ``etils.epath`` and the exclusive lock of the program writing in one.

Paths: ``gs://bucket/run`` stays a bucket path (where that filesystem is installed) and a local path
becomes absolute (orbax wants absolute paths).

Lock: a program that writes in a workdir (training, the experiment and reproduction drivers) holds
``WORKDIR/.tgo-lock`` (``fcntl.flock``) from before its first write to its end; ``tgo-evaluate`` holds its
own ``.tgo-evaluate-lock``, so it evaluates a workdir that training is writing (reading its newest intact
checkpoint) while two evaluations of one workdir exclude each other. A second holder is refused at once
with ``WorkdirBusyError`` naming the first (host, pid, start time). The kernel drops the lock when its holder
dies, however it dies; the next program takes it over and says so. The lock file names its holder and
is removed on release (with the workdir itself when the lock file was all it held). A ``gs://`` workdir is
not locked (a bucket has no locks): one line says so, and only one program should write there at a time.
In a multi-process run process 0 alone takes the lock.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator, Optional, Sequence, Union

from etils import epath

PathLike = Union[str, os.PathLike, epath.Path]
WRITER = ".tgo-lock"  # training, experiment, reproduction
EVALUATOR = ".tgo-evaluate-lock"  # tgo-evaluate (and its audit)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class WorkdirBusyError(ValueError):
    """Another running program holds the workdir's lock (a ValueError: its message, naming the holder, is
    the whole story, which ``tgo_train.cli`` prints alone)."""


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: URLs (``scheme://...``) unchanged, local paths made absolute."""
    if is_url(path):
        return epath.Path(path)
    return epath.Path(os.path.abspath(os.fspath(path)))


def is_url(path: PathLike) -> bool:
    return "://" in os.fspath(path)


@contextlib.contextmanager
def naming(path: PathLike) -> Iterator[None]:
    """Re-raises an ``OSError`` that names no file (a full disk met in ``write()``) with ``path`` named."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise type(e)(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e
        raise


class ClosedOnExit:
    """A writer used as a context manager: ``close()`` on the way out; after an error quietly, since a second
    failure while stopping (a full disk fails the close too) would hide the first, the one the user needs."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001 - see the docstring
            pass


class Lock:
    """A held workdir lock (``release`` or leave the ``locked`` block to give it up)."""

    def __init__(self, fd: int, path: str, made_dir: bool):
        self.fd, self.path, self._made_dir = fd, path, made_dir

    def moved_to(self, folder: str) -> None:
        """The workdir was renamed to ``folder`` while held (``--fresh``): the lock file went with it."""
        self.path = os.path.join(folder, os.path.basename(self.path))
        self._made_dir = False

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # before unlocking: a waiter re-checks that the file it locked is still there
        os.close(self.fd)
        self.fd = -1
        if self._made_dir:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))  # only when empty: nothing else was written


def acquire(workdir: PathLike, name: str = WRITER, program: str = "") -> Optional[Lock]:
    """Takes ``workdir``'s lock ``name`` (creating the workdir); None where there are no locks (a bucket,
    a filesystem without ``flock``: a warning says so). ``WorkdirBusyError`` when a running program holds it."""
    if is_url(workdir):
        _warn(f"{workdir} is a bucket path, which has no locks: make sure one program at a time writes there")
        return None
    folder = os.fspath(as_path(workdir))
    made_dir = not os.path.isdir(folder)
    with naming(folder):
        os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise type(e)(e.errno, f"cannot write in {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise WorkdirBusyError(f"{folder} is in use by {describe(holder)} (lock file {path}); wait for it "
                                   "to end or stop it, or use another --workdir") from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            _warn(f"the filesystem of {folder} has no file locks: make sure one program at a time writes there")
            return None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder released (and removed) it between our open and lock: take the new one
    previous = _read(fd)
    if previous:
        _warn(f"took over the lock of {folder} from {describe(previous)}, which ended without releasing it")
    _write(fd, {"host": socket.gethostname(), "pid": os.getpid(), "program": program or _program(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return Lock(fd, path, made_dir)


@contextlib.contextmanager
def locked(workdir: PathLike, name: str = WRITER, program: str = "", enabled: bool = True) -> Iterator[Optional[Lock]]:
    """``acquire`` for the block's duration (nothing when not ``enabled``, e.g. on processes other than 0)."""
    lock = acquire(workdir, name, program) if enabled else None
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def locked_for_evaluation(workdirs: Sequence[PathLike], out: Optional[PathLike] = None,
                          primary: bool = True) -> contextlib.ExitStack:
    """Before any attack (``tgo-evaluate``, ``tgo-audit``): each existing workdir's evaluation lock (so it is
    writable, and no other evaluation writes there; training may go on) and a writable folder for ``out``;
    held until the returned stack closes. Process 0 only (``primary``); a missing workdir is left to the
    loader, which names it."""
    held = contextlib.ExitStack()
    if primary:
        with held:
            for workdir in workdirs:
                check_writable(workdir)
                if as_path(workdir).is_dir():
                    held.enter_context(locked(workdir, EVALUATOR))
            if out:
                check_writable(os.path.dirname(os.path.abspath(out)))
            return held.pop_all()
    return held


def describe(holder: Optional[dict]) -> str:
    """'pid 123 on host (tgo-train, started 2026-01-01T10:00:00Z)' from a lock file's record."""
    if not holder:
        return "another program (starting)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('program') or 'a program'}, "
            f"started {holder.get('started')})")


def _read(fd: int) -> Optional[dict]:
    try:
        text = os.pread(fd, 4096, 0).decode()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def _write(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _program() -> str:
    return " ".join([os.path.basename(sys.argv[0] if sys.argv else "python")] + sys.argv[1:3])


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def check_writable(folder: PathLike) -> None:
    """Raises an ``OSError`` naming ``folder`` when no file can be made there (checked before long work
    whose results go there). A missing folder is not checked (the caller reports it)."""
    path = as_path(folder)
    if not path.exists():
        return
    probe = path / f".tgo-write-check-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise type(e)(e.errno, f"cannot write in {path}: {e.strerror or e}") from None
