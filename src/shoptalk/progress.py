"""Progress of every long loop, one way: a bar on a terminal, plain lines everywhere else.

    for batch in progress.track(batches, "embedding chunks", total=n, size=len):
        ...
    with progress.Task("scoring base", total=85) as task:
        task.advance(16)

On a terminal (stderr is one) the tasks share one rich bar display. Elsewhere
(a log file, a pipe, the jobs worker) a task writes a plain line on stderr
every `SHOPTALK_PROGRESS_SECONDS` (10 s unless set) -- "scoring base: 32/85,
0.41/s, ETA 02:09" -- and a last one with its total time when it ran that long,
so a phase shorter than the interval stays silent. Every line also goes to the
log (`shoptalk.progress`), which the CLI writes to `.shoptalk/logs/` and the
worker to its build or job log, on a terminal too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from shoptalk.errors import ShoptalkError

log = logging.getLogger(__name__)

INTERVAL_ENV = "SHOPTALK_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0

T = TypeVar("T")


def interval() -> float:
    """Seconds between two plain lines of one task."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ShoptalkError(f"{INTERVAL_ENV}: expected a number of seconds >= 0, got {raw!r}")
    return seconds


def on_terminal() -> bool:
    return sys.stderr.isatty()


def clock(seconds: float) -> str:
    """mm:ss, or h:mm:ss from an hour."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_seconds(seconds: float) -> str:
    """An estimate as people say it: "40 s", "12 min", "3.4 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def rate_text(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.3g}/s"


def line(
    phase: str,
    done: int,
    total: int | None,
    elapsed: float,
    start: int = 0,
    fields: str = "",
    final: bool = False,
) -> str:
    """One plain progress line: "phase: i/N, rate/s, ETA mm:ss" (the last: "in mm:ss")."""
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    count = f"{done}/{total}" if total is not None else str(done)
    parts = [f"{phase}: {count}", rate_text(rate)]
    if final:
        parts.append(f"in {clock(elapsed)}")
    elif total is not None:
        parts.append(f"ETA {clock((total - done) / rate)}" if rate > 0 else "ETA ?")
    if fields:
        parts.append(fields)
    return ", ".join(parts)


class Task:
    """One phase's progress: count, rate and ETA, shown as the output allows."""

    def __init__(self, phase: str, total: int | None, start: int = 0) -> None:
        self.phase, self.total, self.start, self.done = phase, total, start, start
        self.fields = ""
        self.every = interval()
        self.began = self.last = time.monotonic()
        self.bar = BARS.add(phase, total, start) if on_terminal() else None

    def __enter__(self) -> Task:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(finished=kind is None)

    def advance(self, n: int = 1, fields: str | None = None) -> None:
        self.update(self.done + n, fields)

    def update(self, done: int, fields: str | None = None) -> None:
        """`done` items so far; `fields` ("loss 0.61, 371 tok/s") replaces the last ones."""
        self.done = done
        if fields is not None:
            self.fields = fields
        if self.bar is not None:
            BARS.update(self.bar, done, self.fields)
        now = time.monotonic()
        if now - self.last >= self.every and (self.total is None or done < self.total):
            self.last = now
            self.say(line(self.phase, done, self.total, now - self.began, self.start, self.fields))

    def close(self, finished: bool = True) -> None:
        if self.bar is not None:
            BARS.remove(self.bar)
            self.bar = None
        elapsed = time.monotonic() - self.began
        if finished and elapsed >= self.every and self.done > self.start:
            self.say(
                line(self.phase, self.done, self.total, elapsed, self.start, self.fields, True)
            )

    def say(self, text: str) -> None:
        log.info(text)
        if self.bar is None:
            print(text, file=sys.stderr, flush=True)


def track(
    items: Iterable[T],
    phase: str | None,
    total: int | None = None,
    size: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """Each item of `items`, counted as done once the loop's body for it has run.

    `total` defaults to `len(items)`; `size(item)` counts an item as several
    (a batch of chunks), and then `total` is the sum of the sizes. No `phase`:
    the items alone, for a caller whose work is too short to report (a chat's answer).
    """
    if phase is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Task(phase, total) as task:
        for item in items:
            yield item
            task.advance(size(item) if size is not None else 1)


class Bars:
    """The one rich display every task on a terminal shares (rich allows one at a time)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.open: set[TaskID] = set()

    def add(self, phase: str, total: int | None, start: int) -> TaskID:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fields]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.progress.start()
        task = self.progress.add_task(phase, total=total, completed=start, fields="")
        self.open.add(task)
        return task

    def update(self, task: TaskID, done: int, fields: str) -> None:
        if self.progress is not None:
            self.progress.update(task, completed=done, fields=fields)

    def remove(self, task: TaskID) -> None:
        """The task's bar stays in place; the display stops with its last open task."""
        self.open.discard(task)
        if self.progress is not None and not self.open:
            self.progress.stop()
            self.progress = None


BARS = Bars()
