"""A progress bar with ETA for long loops (tqdm), silent when disabled or not on a terminal-like stream."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """Counts steps toward ``total``; ``write`` prints a line above the bar."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = ""):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                        file=sys.stderr, disable=not enabled, mininterval=1.0)
        self.enabled = enabled
        self.n = initial

    def update(self, n: int) -> None:
        self.bar.update(n - self.n)
        self.n = n

    def write(self, line: str) -> None:
        if self.enabled:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()
