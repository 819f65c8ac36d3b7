"""Training's time left from its real steps: the plan's estimate, corrected once they are timed.

The plan's estimate is arithmetic on a matmul rate measured in a fraction of a
second before training; a step's real cost (data, optimizer, evaluations,
checkpoints, another program on the same cores) can put it off. Once a few
steps have run, or `CHECK_SECONDS` have passed, the pace they really took
replaces it, said once as an event ("~11 min left ...; the plan said ~3.8 h"),
and the progress line's ETA follows the real pace from then on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from shoptalk.progress import format_seconds

# Steps timed after the first one (which also warms up threads, caches and the allocator).
CHECK_STEPS = 3
CHECK_SECONDS = 30.0


class Pace:
    """Wall time between finished steps; `step()` returns the correction once it is known."""

    def __init__(
        self,
        planned_seconds: float | None,
        total: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.planned, self.total, self.clock = planned_seconds, total, clock
        self.first: float | None = None  # when the first step seen ended
        self.last: float | None = None
        self.intervals: list[float] = []
        self.first_step = 0
        self.said = False

    def step(self, step: int) -> str | None:
        """`step` just finished; the corrected estimate, the one time it is due."""
        now = self.clock()
        if self.last is None:
            self.first, self.first_step = now, step
        else:
            self.intervals.append(now - self.last)
        self.last = now
        if self.said or not self.intervals or step >= self.total:
            return None
        if len(self.intervals) < CHECK_STEPS and now - self.first < CHECK_SECONDS:
            return None
        self.said = True
        return self.message(step, statistics.median(self.intervals))

    def message(self, step: int, per_step: float) -> str:
        left = (self.total - step) * per_step
        first = self.first_step + 1
        measured = (
            f"step {step} took {per_step:.3g} s"
            if first == step
            else f"steps {first}-{step} took {per_step:.3g} s each"
        )
        text = f"time     ~{format_seconds(left)} left ({measured}"
        if self.planned:
            whole = self.total * per_step
            text += f"; the plan estimated ~{format_seconds(self.planned)}"
            text += f", this pace ~{format_seconds(whole)}"
        return text + ")"
