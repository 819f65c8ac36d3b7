"""Count, rate and ETA lines for the export's long loops, readable in a log file.

A line at most every `every` seconds and one at the end, through the same
`say` the export prints with: no terminal control characters, so a log
written to a file shows how far a parity check got and when it will end.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class Progress:
    """`advance(n)` after each unit of work; prints `label: done/total unit, rate, ETA`."""

    def __init__(
        self,
        say: Callable[[str], None],
        label: str,
        total: int,
        unit: str = "prompts",
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say, self.label, self.total, self.unit = say, label, total, unit
        self.every, self.clock = every, clock
        self.done = 0
        self.started = self.last = clock()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        if self.done >= self.total:
            rate = self.done / elapsed
            self.say(
                f"{self.label}: {self.done}/{self.total} {self.unit} in {duration(elapsed)} "
                f"({rate:.3g} {self.unit}/s)"
            )
        elif now - self.last >= self.every:
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate
            self.say(
                f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.3g} {self.unit}/s, "
                f"ETA {duration(eta)}"
            )
        else:
            return
        self.last = now
