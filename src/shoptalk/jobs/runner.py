"""One fine-tuning job, start to finish, in its own process.

    validate files → pipeline.jobs.fine_tune (dataset, train; resumes) → model

It runs as `python -m shoptalk.jobs.runner PROJECT JOB_ID`, so pausing or
cancelling a job is stopping a process, and resuming it is starting the
process again: the training run continues from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from shoptalk.artifacts import RunArtifact, write_results_csv
from shoptalk.data.formats import read_conversations
from shoptalk.data.pii import redact
from shoptalk.data.preferences import read_preferences
from shoptalk.errors import SourceError
from shoptalk.jobs import log_to
from shoptalk.jobs.checkpoints import keep_checkpoints, model_name
from shoptalk.memory import keep_freed_memory
from shoptalk.pipeline.events import TRAINING_STAGES, Event
from shoptalk.pipeline.jobs import FineTuneJob, fine_tune, hyperparameters_used
from shoptalk.pipeline.record import Recorder
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import FileRow, JobRow, now

log = logging.getLogger(__name__)
RESULTS_PURPOSE = "fine-tune-results"


class JobError(Exception):
    """A job that cannot run, with OpenAI's error fields."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param}


class JobFiles(BaseModel):
    training: list = Field(default_factory=list)
    validation: list = Field(default_factory=list)


def job_spec(job: JobRow) -> FineTuneJob:
    return FineTuneJob.of(job.method, job.seed)


def read_job_file(row: FileRow, param: str, kind: str = "supervised") -> list:
    """The file's conversations (or preference pairs for DPO); a bad row fails the job
    naming the file and line."""
    path = Path(row.path)
    try:
        if kind == "dpo":
            return read_preferences(path, path.parent)
        return read_conversations(path, path.parent)
    except SourceError as err:
        where = f"{row.filename}, line {err.line}" if err.line else row.filename
        # The detail may quote the user's data: it is redacted like any log line.
        raise JobError("invalid_file", f"{where}: {redact(err.detail).text}", param) from err


def validate(session, job: JobRow) -> JobFiles:
    files = JobFiles()
    kind = job_spec(job).kind
    for param, file_id in (
        ("training_file", job.training_file),
        ("validation_file", job.validation_file),
    ):
        if file_id is None:
            continue
        row = session.get(FileRow, file_id)
        if row is None:
            raise JobError("file_not_found", f"No file with id {file_id}", param)
        records = read_job_file(row, param, kind)
        if param == "training_file" and not records:
            raise JobError("invalid_file", f"{row.filename}: no training examples", param)
        setattr(files, "training" if param == "training_file" else "validation", records)
    return files


class JobProgress:
    """The job's events in the registry, and from the training stage's events what
    OpenAI's job object reports: the hyperparameters used, the estimated finish and
    the checkpoints (kept at the step that wrote them: training deletes them at its end)."""

    def __init__(self, sessions, project: Project, job: FineTuneJob, job_id: str) -> None:
        self.sessions, self.project, self.job, self.job_id = sessions, project, job, job_id
        self.record = Recorder(sessions, job_id, steps=True)

    def __call__(self, event: Event) -> None:
        self.record(event)
        if event.stage not in TRAINING_STAGES or event.status != "progress" or not event.run:
            return
        run = RunArtifact.at(Path(event.run))
        with self.sessions() as session:
            row = session.get(JobRow, self.job_id)
            if event.step is None:  # the plan: "auto" resolved
                max_seq_len = self.project.config.train.max_seq_len
                row.hyperparameters_used = hyperparameters_used(self.job, run, max_seq_len)
            else:
                left = run.seconds_left()
                row.estimated_finish = now() + timedelta(seconds=left) if left is not None else None
                keep_checkpoints(session, row, self.project.job(self.job_id))
            session.commit()


def run_job(project: Project, job_id: str) -> None:
    sessions = open_registry(project.config.serve.database_url, project.state)
    with sessions() as session:
        job = session.get(JobRow, job_id)
        try:
            files = validate(session, job)
        except JobError as err:
            store.add_event(session, job_id, err.message, level="error")
            store.set_status(session, job_id, "failed", error=err.as_dict())
            session.commit()
            return
    spec = job_spec(job)
    try:
        run = fine_tune(
            project,
            spec,
            files.training,
            files.validation,
            project.job(job_id),
            JobProgress(sessions, project, spec, job_id),
        )
    except Exception as exc:
        log.exception("job %s failed", job_id)
        message = f"{type(exc).__name__}: {redact(str(exc)).text}"
        with sessions() as session:
            store.add_event(session, job_id, message, level="error")
            error = {"code": "server_error", "message": message, "param": None}
            store.set_status(session, job_id, "failed", error=error)
            session.commit()
        return
    finish(sessions, job, run)


def finish(sessions, job: JobRow, run: RunArtifact) -> None:
    """The job's outcome: its model, tokens trained, and the metrics as a result file."""
    results = write_results_csv(run)
    with sessions() as session:
        file_id = store.new_id("file")
        session.add(
            FileRow(
                id=file_id,
                filename=f"{job.id}-{results.name}",
                purpose=RESULTS_PURPOSE,
                bytes=results.stat().st_size,
                sha256=hashlib.sha256(results.read_bytes()).hexdigest(),
                path=str(results),
                key_id=job.key_id,
            )
        )
        store.add_event(session, job.id, "The job has successfully completed")
        store.set_status(
            session,
            job.id,
            "succeeded",
            fine_tuned_model=model_name(job.model, job),
            run_path=str(run.path),
            trained_tokens=sum(r.get("tokens", 0) for r in run.metrics()),
            result_files=[file_id],
        )
        session.commit()


def main() -> None:
    keep_freed_memory()  # a job trains or answers like the CLI: shoptalk/memory.py
    project = Project.open(sys.argv[1])
    log_to(project.state / "logs" / "jobs.log")
    run_job(project, sys.argv[2])


if __name__ == "__main__":
    main()
