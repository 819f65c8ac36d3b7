"""A build (or a plan of one) started from the console, in its own process.

    python -m shoptalk.jobs.build_runner SERVED_PROJECT BUILD_ID

The build's row lives in the served project's registry and names the project to
build: the served one or one made in the console. A row of kind 'plan' runs
`pipeline.plan` instead, one of kind 'report' writes the data report; both
write the dataset folder and load the base model (or its tokenizer), so they are
queued like a build, never run in a request, and store what they made in the
row's `result`. `pipeline.build` stores its
typed events there (the console shows every stage and the run folder really
written). Like a fine-tuning job, stopping it is stopping the process and
resuming it is building again: unchanged stages are skipped and training
continues from its last checkpoint.
"""

from __future__ import annotations

import logging
import sys

from shoptalk import pipeline
from shoptalk.jobs import log_to
from shoptalk.memory import keep_freed_memory
from shoptalk.pipeline import record
from shoptalk.pipeline.events import OnEvent
from shoptalk.pipeline.record import served_root
from shoptalk.project import Project
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import BuildRow

log = logging.getLogger(__name__)


def run_build(served: Project, build_id: str) -> None:
    sessions = open_registry(served.config.serve.database_url, served.state)
    with sessions() as session:
        row = session.get(BuildRow, build_id)
        root, kind = served_root(row.project_root, served.root), row.kind
    try:
        project = Project.open(root)
    except Exception as exc:
        record.fail(sessions, build_id, exc)
        return
    try:
        if kind == "plan":
            record.queued_result(sessions, build_id, lambda emit: plan(project, emit))
        elif kind == "report":
            record.queued_result(sessions, build_id, lambda emit: data_report(project, emit))
        else:
            pipeline.build(project, build_id=build_id, sessions=sessions)
    except Exception:
        # The build's row holds the failure (pipeline.build recorded it); the log the trace.
        log.exception("build %s failed", build_id)


def plan(project: Project, on_event: OnEvent) -> dict:
    return pipeline.plan(project, on_event).model_dump(mode="json")


def data_report(project: Project, on_event: OnEvent) -> dict:
    """The data report of the project's current sources, beside its dataset."""
    from shoptalk.data.report import write_report

    _, html = write_report(project, pipeline.prepare_dataset(project, on_event))
    return {"html": str(html)}


def main() -> None:
    keep_freed_memory()  # a job trains or answers like the CLI: shoptalk/memory.py
    project = Project.open(sys.argv[1])
    log_to(project.state / "logs" / "builds.log")
    run_build(project, sys.argv[2])


if __name__ == "__main__":
    main()
