"""A dynamic batcher: requests arrive on the event loop, one worker thread runs them.

Concurrent requests for the same model (or adapter) are merged into one batch:
the worker takes the oldest waiting request, waits up to `batch_wait_ms` for
more requests for that model, and runs up to `max_batch_size` rows together.
While a batch runs, requests for the same model join it between steps (`join`)
as rows finish and make room.

The queue is bounded: more than `max_queue` waiting requests is a 503 at once,
because a client waiting minutes for an overloaded server is worse off than
one told to retry. Results travel back to the event loop through each job's
asyncio queue, so the loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from shoptalk.serve.errors import ApiError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request: its rows (one per choice), and a way to hear back from the worker."""

    key: Hashable
    rows: list[Any]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)

    def send(self, event: object) -> None:
        """Called from the worker thread."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[Hashable, list[Job]], None],
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        max_queue: int = 64,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.max_queue = max_queue
        self.batches = 0
        self._waiting: list[Job] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="shoptalk-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closing:
                raise ApiError(503, "The server is shutting down; retry shortly.", code="shutdown")
            if len(self._waiting) >= self.max_queue:
                raise ApiError(
                    503,
                    f"The server is at capacity ({self.max_queue} requests waiting); retry shortly.",
                    code="server_overloaded",
                    headers={"Retry-After": "1"},
                )
            self._waiting.append(job)
            self._cond.notify()

    def join(self, key: Hashable, room: int) -> list[Job]:
        """Waiting jobs for `key` that fit in `room` rows, to join a running batch.

        Only jobs ahead of every job for another model: joining never lets a
        request overtake an older one that is waiting for a different model.
        """
        with self._cond:
            jobs = []
            for job in self._waiting:
                if job.key != key:
                    break
                if not job.cancelled and len(job.rows) <= room:
                    jobs.append(job)
                    room -= len(job.rows)
            self._waiting = [j for j in self._waiting if j not in jobs]
            return jobs

    def close(self, timeout: float | None = None) -> None:
        """Finish every waiting and running request, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            key, jobs = batch
            if not jobs:
                continue
            self.batches += 1
            try:
                self.run_batch(key, jobs)
            except Exception as exc:  # the worker must outlive any one bad batch
                log.exception("Batch for %s failed", key)
                for job in jobs:
                    job.send(exc)

    def _next_batch(self) -> tuple[Hashable, list[Job]] | None:
        with self._cond:
            while not self._waiting:
                if self._closing:
                    return None
                self._cond.wait()
            key = self._waiting[0].key
            deadline = time.monotonic() + self.batch_wait_s
            while self._rows_for(key) < self.max_batch_size and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            jobs, rows = [], 0
            for job in list(self._waiting):
                if job.key != key or job.cancelled:
                    continue
                if jobs and rows + len(job.rows) > self.max_batch_size:
                    break
                jobs.append(job)
                rows += len(job.rows)
            self._waiting = [
                j for j in self._waiting if j not in jobs and not (j.key == key and j.cancelled)
            ]
            return key, jobs

    def _rows_for(self, key: Hashable) -> int:
        return sum(len(j.rows) for j in self._waiting if j.key == key and not j.cancelled)
