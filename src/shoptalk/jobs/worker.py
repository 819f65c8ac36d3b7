"""The worker: takes queued jobs from the registry and runs each in a child process.

One job at a time (training uses every core). The child records its own
events (`pipeline.record`) and keeps its checkpoints as models
(`jobs.checkpoints`); the worker acts on cancel and pause requests by stopping
the child, and keeps the checkpoints a stopped or finished child left behind.
After a restart, jobs that were running are queued again and continue from
their last checkpoint; a build that `shoptalk build` was running is its own
process's, and is marked failed only if that process is gone.

`shoptalk worker DIR` runs it as its own process (`shoptalk serve` starts one
unless told not to). That process holds a lock file, so one worker runs per
project, and records its trainer's process group: a worker killed with
`kill -9` leaves a trainer behind (it runs in its own session), and the next
worker stops it before it requeues the job, so two trainers never share a run
folder. A worker started by a server stops when that server is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from shoptalk.errors import ShoptalkError
from shoptalk.jobs.checkpoints import keep_checkpoints
from shoptalk.pipeline.record import alive, mark_stopped
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import BuildRow, JobRow

log = logging.getLogger(__name__)

LOCK_NAME = "worker.lock"
TRAINER_PID_NAME = "worker-trainer.pid"


class WorkerBusy(ShoptalkError):
    """Another worker already runs this project's jobs."""


@contextlib.contextmanager
def worker_lock(state: Path) -> Iterator[None]:
    """Hold the project's worker lock (released by the kernel even after `kill -9`)."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / LOCK_NAME
    with path.open("a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise WorkerBusy(
                f"Another worker (pid {holder}) already runs the jobs of {state.parent} "
                f"(lock {path}); stop it first, or serve with --no-worker."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def stop_orphans(state: Path, grace_s: float = 30.0) -> int | None:
    """Stop the trainer a dead worker left running; its process group id, if there was one."""
    path = state / TRAINER_PID_NAME
    if not path.is_file():
        return None
    pgid = int(path.read_text(encoding="utf-8").strip() or 0)
    path.unlink()
    if pgid <= 0 or not group_alive(pgid) or not is_runner(pgid):
        return None
    log.warning("stopping trainer process group %d left by a previous worker", pgid)
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    return pgid


def is_runner(pid: int) -> bool:
    """Whether `pid` is still a job runner: after a reboot the number may be another process's."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask: trust the file the dead worker wrote
    return b"shoptalk.jobs." in cmdline


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished trainer that nobody waited for is a zombie, not a runner.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pgid, os.WNOHANG)[0] == pgid:
            return False
    return True


def trainer_pid_file(project: Project) -> Path:
    return project.state / TRAINER_PID_NAME


def run_worker(
    project: Project, stop: threading.Event, poll_s: float = 1.0, parent_pid: int | None = None
) -> None:
    """The worker process's life: lock, stop orphans, run jobs until stopped or orphaned."""
    with worker_lock(project.state):
        stop_orphans(project.state)  # before recover() requeues the orphan's job
        Worker(project, poll_s).run_forever(stop, parent_pid)


class Worker:
    def __init__(self, project: Project, poll_s: float = 1.0) -> None:
        self.project = project
        self.poll_s = poll_s
        self.sessions = open_registry(project.config.serve.database_url, project.state)
        store.add_missing_columns(self.sessions)
        self.child: subprocess.Popen | None = None
        self.job_id: str | None = None

    def recover(self) -> None:
        """Jobs left running by a previous worker go back to the queue."""
        with self.sessions() as session:
            running = [
                *session.scalars(select(JobRow).where(JobRow.status == "running")),
                *session.scalars(select(BuildRow).where(BuildRow.status == "running")),
            ]
            for job in running:
                if isinstance(job, BuildRow) and job.origin == "cli":
                    if not alive(job.worker_pid):
                        mark_stopped(session, job)
                    continue
                store.set_status(session, job.id, "queued", worker_pid=None)
                store.add_event(
                    session, job.id, "Requeued after a restart; resuming from the last checkpoint"
                )
            session.commit()

    def run_forever(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        """Run jobs until `stop` is set, or until the server that started us is gone."""
        self.recover()
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the server (pid %d) is gone; the worker stops", parent_pid)
                break
            self.tick()
            stop.wait(self.poll_s)
        # Back to the queue, not paused: the next start resumes it from its checkpoint.
        self.stop_child(
            "queued", "Interrupted by a server shutdown; it resumes when the server is back"
        )

    def tick(self) -> None:
        if self.child is None:
            self.start_next()
            return
        with self.sessions() as session:
            requested = session.get(store.table_of(self.job_id), self.job_id).requested
        if requested in ("cancel", "pause"):
            status = "cancelled" if requested == "cancel" else "paused"
            self.stop_child(status, f"Job {status} on request")
        elif self.child.poll() is not None:
            self.finish_child()

    def start_next(self) -> None:
        with self.sessions() as session:
            job = store.claim_next(session, os.getpid())
            if job is None:
                return
            store.add_event(session, job.id, "Job started")
            session.commit()
        log.info("running job %s", job.id)
        self.job_id = job.id
        # Both runners get the served project (its registry); a build's row names what it builds.
        runner = (
            "shoptalk.jobs.build_runner" if isinstance(job, BuildRow) else "shoptalk.jobs.runner"
        )
        self.child = subprocess.Popen(
            [sys.executable, "-m", runner, str(self.project.root), job.id],
            start_new_session=True,
        )
        # Its own session: the child's pid is its process group, which stop_orphans stops.
        trainer_pid_file(self.project).write_text(f"{self.child.pid}\n", encoding="utf-8")

    def stop_child(self, status: str, message: str) -> None:
        if self.child is None:
            return
        if self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGTERM)
            try:
                self.child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.child.pid, signal.SIGKILL)
                self.child.wait()
        with self.sessions() as session:
            job = session.get(store.table_of(self.job_id), self.job_id)
            self.keep_left_checkpoints(session, job)
            if job.status == "running":
                store.set_status(session, job.id, status, requested=None, worker_pid=None)
                store.add_event(session, job.id, message)
            session.commit()
        self.forget_child()

    def forget_child(self) -> None:
        self.child = None
        self.job_id = None
        trainer_pid_file(self.project).unlink(missing_ok=True)

    def finish_child(self) -> None:
        code = self.child.returncode
        with self.sessions() as session:
            job = session.get(store.table_of(self.job_id), self.job_id)
            self.keep_left_checkpoints(session, job)
            if job.status == "running":
                # The runner records its own outcome; still running means it died.
                error = {
                    "code": "server_error",
                    "message": f"training process exited with {code}",
                    "param": None,
                }
                store.set_status(session, job.id, "failed", error=error)
                store.add_event(session, job.id, error["message"], level="error")
            session.commit()
        self.forget_child()

    def keep_left_checkpoints(self, session, job: JobRow | BuildRow) -> None:
        """Checkpoints the job's process wrote but did not keep (it ended in between).

        Called only once that process is gone: while it runs, it keeps its own
        checkpoints (jobs/checkpoints.py), so two writers never race for a step.
        """
        if isinstance(job, BuildRow):
            return
        keep_checkpoints(session, job, self.project.job(job.id))
