"""`shoptalk worker` as its own process: one per project, no orphan trainers, and it stops
when the server that started it is gone (even after `kill -9`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from shoptalk.jobs.worker import (
    TRAINER_PID_NAME,
    WorkerBusy,
    run_worker,
    stop_orphans,
    worker_lock,
)
from shoptalk.project import Project

from projects import write_project


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan may wait for a reaper that never comes)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_trainer_left_by_a_dead_worker_is_stopped_on_the_next_start(tmp_path: Path):
    # Named like a runner (`python -m shoptalk.jobs.runner ...`), as stop_orphans checks.
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", "shoptalk.jobs.runner"]
    orphan = subprocess.Popen(sleeper, start_new_session=True)
    cmdline = Path(f"/proc/{orphan.pid}/cmdline")
    assert wait_until(lambda: b"shoptalk.jobs." in cmdline.read_bytes(), 10), "exec'd"
    (tmp_path / TRAINER_PID_NAME).write_text(f"{orphan.pid}\n")
    assert stop_orphans(tmp_path, grace_s=5) == orphan.pid
    assert orphan.wait(timeout=10) is not None
    assert not (tmp_path / TRAINER_PID_NAME).exists()
    assert stop_orphans(tmp_path) is None, "nothing left to stop"


def test_a_process_that_is_no_runner_is_left_alone(tmp_path: Path):
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        (tmp_path / TRAINER_PID_NAME).write_text(f"{stranger.pid}\n")
        assert stop_orphans(tmp_path, grace_s=1) is None
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_one_worker_per_project(tmp_path: Path):
    with (
        worker_lock(tmp_path),
        pytest.raises(WorkerBusy, match="--no-worker"),
        worker_lock(tmp_path),
    ):
        pass
    with worker_lock(tmp_path):  # released when its holder ends
        pass


def test_the_worker_stops_when_its_server_is_gone(tmp_path: Path, tiny_model: Path):
    project = Project.open(write_project(tmp_path / "p", tiny_model))
    stop = threading.Event()
    started = time.monotonic()
    # A parent pid that is not ours: the server that started this worker is gone.
    run_worker(project, stop, poll_s=0.1, parent_pid=-1)
    assert time.monotonic() - started < 30 and not stop.is_set()


def test_a_killed_server_leaves_no_worker_behind(tmp_path: Path, tiny_model: Path):
    root = write_project(tmp_path / "p", tiny_model)
    server = textwrap.dedent(
        f"""
        import os, signal, time
        from shoptalk.project import Project
        from shoptalk.serve.console import WorkerProcess
        worker = WorkerProcess(Project.open({str(root)!r}))
        worker.start()
        print(worker.process.pid, flush=True)
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.run(
        [sys.executable, "-c", server], capture_output=True, text=True, timeout=120
    )
    worker_pid = int(parent.stdout.split()[0])
    assert wait_until(lambda: not running(worker_pid), 90), "the worker outlived its server"


def test_a_cli_build_is_never_run_by_the_worker(tmp_path: Path, tiny_model):
    """A `shoptalk build` recorded in the registry belongs to its own process: a worker
    restart fails it only if that process is gone, and never queues it."""
    from shoptalk.jobs.worker import Worker
    from shoptalk.pipeline.record import project_registry, start_cli_build
    from shoptalk.registry.jobs import BuildRow

    project = Project.open(write_project(tmp_path / "p", tiny_model))
    sessions = project_registry(project)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ours, dead = start_cli_build(sessions, project), start_cli_build(sessions, project)
    with sessions() as session:
        session.get(BuildRow, dead).worker_pid = gone.pid
        session.commit()
    Worker(project).recover()
    with sessions() as session:
        assert session.get(BuildRow, ours).status == "running", "this process still builds it"
        row = session.get(BuildRow, dead)
        assert row.status == "failed" and row.error["code"] == "build_interrupted"
