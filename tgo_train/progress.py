"""Progress output for long loops: a tqdm bar with ETA on a terminal, plain lines in a log.

On a terminal (stderr is a tty) the bar redraws in place and ``write`` prints above it. Redirected to a
file, nothing is redrawn: no bar, no carriage returns; only the lines given to ``write`` appear (the
programs write one per epoch and one per evaluated attack), each with a newline.
"""
from __future__ import annotations

import sys
from typing import Optional, TextIO

from tqdm import tqdm


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Counts steps toward ``total``; ``write`` prints a line (above the bar on a terminal).

    Args:
      total: steps of the whole loop.
      initial: steps already done (a resumed run).
      enabled: False silences the bar (the lines of ``write`` are still printed).
      desc: the bar's label.
      stream: where the bar goes (default stderr); the bar is shown only if it is a terminal.
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "",
                 stream: Optional[TextIO] = None):
        stream = sys.stderr if stream is None else stream
        self.bar_shown = enabled and _is_terminal(stream)
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                        file=stream, disable=not self.bar_shown, mininterval=1.0)
        self.n = initial

    def update(self, n: int) -> None:
        self.bar.update(n - self.n)
        self.n = n

    def write(self, line: str) -> None:
        if self.bar_shown:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()
