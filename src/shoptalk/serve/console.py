"""The web console and the jobs API, attached to the server of a project.

The console works on the served project and on the projects it makes (see
`projects_api`). It is a static single-page app (built from `console/` in the
repository, committed under `serve/static/console/`, so running it needs no
Node). Its files hold no data and are public; everything it shows comes from
the API with the signed-in user's key. The worker that runs fine-tuning jobs
and console builds runs beside the server as its own process (`shoptalk
worker`) and stops with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from shoptalk.project import Project
from shoptalk.registry.jobs import add_missing_columns
from shoptalk.serve.jobs_api import JobsService
from shoptalk.serve.projects_api import Workspace
from shoptalk.serve.services import registry

STATIC = Path(__file__).parent / "static" / "console"
# Routes served without a key: the console's own files (no data in them).
PUBLIC_PREFIXES = ("/console",)


def attach_console(app: FastAPI, project: Project, base_names: list[str]) -> None:
    """The state of the jobs, projects and project routers, and the console's files."""
    sessions = registry(project.config.serve, project.state)
    add_missing_columns(sessions)
    app.state.jobs = JobsService(sessions, project.state / "files", base_names)
    app.state.workspace = Workspace.of(project, app.state.services.settings.workspace, sessions)
    # The chat API's retrieval (`rag: true`, grounding.py) reads the served project's.
    app.state.project = app.state.workspace.state_for(None)

    @app.get("/console", include_in_schema=False)
    def console_index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console")

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")


class WorkerProcess:
    """`shoptalk worker` beside the server: started with it, stopped with it.

    A process, not a thread: the worker outlives nothing. It watches this
    server's pid and stops (with its trainer) when the server is gone, even
    after a `kill -9` that skips this class's `stop`.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "shoptalk.cli", "worker", str(self.project.root)]
        self.process = subprocess.Popen([*command, "--parent-pid", str(os.getpid())])

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # the worker requeues its job and stops its trainer
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
