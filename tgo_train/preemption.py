"""Stopping training cleanly on SIGTERM (a cluster's preemption) or SIGINT (Ctrl-C).

While training runs, ``StopSignals`` turns the first SIGTERM or SIGINT into a request: the loop finishes
its step, saves a checkpoint, writes the epoch-so-far record and raises ``Preempted``, which the programs
report as one line and exit status ``EXIT_PREEMPTED`` (75, EX_TEMPFAIL: rerun the same command to resume,
bit for bit). A second signal while it saves acts at once (Ctrl-C: status 130, nothing more saved).
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

EXIT_PREEMPTED = 75  # EX_TEMPFAIL from sysexits.h: a checkpoint was saved; rerun to resume
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention: stopped without saving
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal after saving its checkpoint; the message says where."""

    exit_status = EXIT_PREEMPTED


class StopSignals:
    """``with StopSignals() as stop:`` ... ``if stop.requested:`` — the first SIGTERM/SIGINT is recorded
    (not acted on); the handlers in place before are restored on leaving, and by the first signal
    itself, so a second one acts as it normally would. Outside the main thread it records nothing."""

    def __init__(self):
        self.signal: Optional[int] = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
