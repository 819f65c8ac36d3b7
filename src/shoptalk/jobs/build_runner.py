"""A `shoptalk build` started from the console, in its own process.

    python -m shoptalk.jobs.build_runner SERVED_PROJECT BUILD_ID

The build's row lives in the served project's registry and names the project to
build: the served one or one made in the console. Like a fine-tuning job,
stopping it is stopping the process and resuming it is building again:
unchanged stages are skipped and training continues from its last checkpoint.
"""

from __future__ import annotations

import logging
import sys

from shoptalk.jobs import log_to
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import BuildRow

log = logging.getLogger(__name__)


def run_build(served: Project, build_id: str) -> None:
    from shoptalk import build

    sessions = open_registry(served.config.serve.database_url, served.state)
    with sessions() as session:
        root = session.get(BuildRow, build_id).project_root

    def say(message: str) -> None:
        stage = message.split(maxsplit=1)[0] if message.strip() else None
        with sessions() as session:
            row = session.get(BuildRow, build_id)
            row.stage = stage
            store.add_event(session, build_id, message.strip())
            session.commit()

    try:
        project = Project.open(root) if root else served
        dataset = build.prepare_dataset(project, say)
        with sessions() as session:
            session.get(BuildRow, build_id).run_path = str(
                project.runs / project.run_id(dataset.hash)
            )
            session.commit()
        result = build.build(project, say=say)
    except Exception as exc:
        from shoptalk.data.pii import redact

        log.exception("build %s failed", build_id)
        message = redact(f"{type(exc).__name__}: {exc}").text
        with sessions() as session:
            store.add_event(session, build_id, message, level="error")
            store.set_status(
                session,
                build_id,
                "failed",
                error={"code": "build_failed", "message": message, "param": None},
            )
            session.commit()
        return
    passed = result.gate is None or result.gate.passed
    with sessions() as session:
        store.set_status(session, build_id, "succeeded", stage="done")
        store.add_event(
            session,
            build_id,
            "Build finished; model promoted" if passed else "Build finished; the gate failed",
            level="info" if passed else "warn",
        )
        session.commit()


def main() -> None:
    project = Project.open(sys.argv[1])
    log_to(project.state / "logs" / "builds.log")
    run_build(project, sys.argv[2])


if __name__ == "__main__":
    main()
