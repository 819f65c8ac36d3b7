"""Builds and fine-tuning jobs in the registry: their typed events stored beside their rows.

A build's row (`BuildRow`) follows its events: the stage that runs and the run
folder it really writes, so the console shows every stage (DPO included) and
the right loss curve. Builds made by `shoptalk build` are recorded too (origin
'cli'), so the console's Build tab shows them; the worker never runs those.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shoptalk.data.pii import redact
from shoptalk.pipeline.events import Event, OnEvent
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import BuildRow, JobEventRow

LEVELS = {"failed": "error", "warning": "warn"}


class Recorder:
    """Stores events as the row's events; a step's metrics only when `steps` (jobs).

    A step's metrics are in the run's `metrics.jsonl` already: a build's page
    reads them there, so builds store one row per stage event, not per step.
    """

    def __init__(self, sessions: sessionmaker[Session], row_id: str, steps: bool = False) -> None:
        self.sessions, self.row_id, self.steps = sessions, row_id, steps
        self.last_step: dict[str | None, int] = {}

    def __call__(self, event: Event) -> None:
        is_step = event.status == "progress" and event.step is not None
        if is_step and not (self.steps and self.new_step(event)):
            return
        with self.sessions() as session:
            if is_step:
                store.add_event(
                    session,
                    self.row_id,
                    f"Step {event.step}: training loss={event.metrics.get('loss', 0.0):.4f}",
                    data=event.metrics,
                    kind="metrics",
                )
            else:
                self.add(session, event)
            session.commit()

    def new_step(self, event: Event) -> bool:
        """A resumed run trains again the steps after its checkpoint: each is stored once."""
        if event.run not in self.last_step:
            self.last_step[event.run] = self.stored_step()
        if event.step <= self.last_step[event.run]:
            return False
        self.last_step[event.run] = event.step
        return True

    def stored_step(self) -> int:
        """The last step stored by an earlier process of this row (a job trains one run)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(JobEventRow.data).where(
                    JobEventRow.job_id == self.row_id, JobEventRow.type == "metrics"
                )
            )
            return max((int((data or {}).get("step", 0)) for data in rows), default=0)

    def add(self, session: Session, event: Event) -> None:
        message = event.line()
        if event.status == "failed":
            message = redact(message).text  # an error may quote the user's data
        data = event.model_dump(mode="json") | {"message": message}
        level = LEVELS.get(event.status, "info")
        store.add_event(session, self.row_id, message, level=level, data=data)
        table = store.table_of(self.row_id)
        row = session.get(BuildRow, self.row_id) if table is BuildRow else None
        if row is not None and event.status in ("started", "skipped", "done"):
            row.stage = event.stage
            if event.run:
                row.run_path = event.run


def start_cli_build(sessions: sessionmaker[Session], project: Project) -> str:
    """A row for a build this process runs; builds left running by a dead process are failed."""
    with sessions() as session:
        mine = store.builds_of(str(project.root), served=False)
        stale = select(BuildRow).where(BuildRow.status == "running", BuildRow.origin == "cli", mine)
        for row in session.scalars(stale):
            if not alive(row.worker_pid):
                mark_stopped(session, row)
        row = BuildRow(
            id=store.new_id("build"),
            project_root=str(project.root),
            status="running",
            origin="cli",
            worker_pid=os.getpid(),
        )
        session.add(row)
        store.add_event(session, row.id, "Build started by `shoptalk build`")
        session.commit()
        return row.id


def mark_stopped(session: Session, row: BuildRow) -> None:
    message = "The `shoptalk build` process stopped before the build finished"
    error = {"code": "build_interrupted", "message": message, "param": None}
    store.set_status(session, row.id, "failed", error=error)
    store.add_event(session, row.id, message, level="error")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded(
    sessions: sessionmaker[Session],
    build_id: str,
    run: Callable[[OnEvent], object],
    on_event: OnEvent,
) -> object:
    """Run a build whose events go to `on_event` and to the build's row, and its outcome too."""
    recorder = Recorder(sessions, build_id)

    def both(event: Event) -> None:
        on_event(event)
        recorder(event)

    try:
        result = run(both)
    except BaseException as exc:
        fail(sessions, build_id, exc)
        raise
    gate = getattr(result, "gate", None)
    passed = gate is None or gate.passed
    finished = getattr(result, "finished", True)
    with sessions() as session:
        store.set_status(session, build_id, "succeeded", stage="done")
        if not finished:
            message, level = "Build stopped before training finished; build again to resume", "warn"
        elif passed:
            message, level = "Build finished; model promoted", "info"
        else:
            message, level = "Build finished; the gate failed", "warn"
        store.add_event(session, build_id, message, level=level)
        session.commit()
    return result


def queued_result(
    sessions: sessionmaker[Session], row_id: str, make: Callable[[OnEvent], dict]
) -> None:
    """Run a queued plan or data report (`make`) whose events and result go to its row."""
    try:
        result = make(Recorder(sessions, row_id))
    except BaseException as exc:
        fail(sessions, row_id, exc)
        raise
    with sessions() as session:
        store.set_status(session, row_id, "succeeded", stage="done", result=result)
        store.add_event(session, row_id, "Done")
        session.commit()


def fail(sessions: sessionmaker[Session], build_id: str, exc: BaseException) -> None:
    """The build failed (or was interrupted at the terminal): its row says so, redacted."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    message = "Interrupted" if interrupted else redact(f"{type(exc).__name__}: {exc}").text
    with sessions() as session:
        store.add_event(session, build_id, message, level="error")
        code = "build_interrupted" if interrupted else "build_failed"
        error = {"code": code, "message": message, "param": None}
        store.set_status(session, build_id, "failed", error=error)
        session.commit()


def project_registry(project: Project) -> sessionmaker[Session]:
    sessions = open_registry(project.config.serve.database_url, project.state)
    store.add_missing_columns(sessions)  # a registry made by an older shoptalk
    return sessions


def is_main_process() -> bool:
    """Under torchrun every process runs the build; only the first one records it."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def served_root(row_root: str | None, served: Path) -> Path:
    """The folder a build row builds: its own, or (rows from before projects) the served one."""
    return Path(row_root) if row_root else served
