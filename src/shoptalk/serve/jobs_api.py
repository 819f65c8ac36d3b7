"""OpenAI's Files and Fine-tuning API, served on the organization's own machine.

Field names and shapes follow OpenAI's, so scripts written for
`client.fine_tuning.jobs.create(...)` work unchanged against shoptalk. The
routes only read and write the registry; the worker process does the training.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shoptalk.artifacts import private_dir
from shoptalk.data.pii import redact
from shoptalk.jobs.runner import RESULTS_PURPOSE, JobError, validate
from shoptalk.registry import jobs as store
from shoptalk.registry.jobs import FileRow, JobCheckpointRow, JobEventRow, JobRow
from shoptalk.serve.auth import Principal, held_groups, key_of, reads_as_much, require
from shoptalk.serve.errors import ApiError
from shoptalk.serve.uploads import upload_name

JOBS_SCOPE = "editor"
MAX_UPLOAD_BYTES = 512 * 2**20
PURPOSES = ("fine-tune", "assistants", "batch", "user_data", "evals")

# One router per resource: files, and fine-tuning jobs.
files_router = APIRouter(prefix="/v1/files", tags=["fine-tuning"])
jobs_router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
Editor = Annotated[Principal, Depends(require(JOBS_SCOPE))]


@dataclass
class JobsService:
    sessions: sessionmaker[Session]
    files_dir: Path
    base_models: list[str]


def service(request: Request) -> JobsService:
    return request.app.state.jobs


def epoch(value) -> int | None:
    return int(value.timestamp()) if value is not None else None


# --- response models (OpenAI's shapes)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"

    @classmethod
    def of(cls, row: FileRow) -> FileObject:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=epoch(row.created_at),
            filename=row.filename,
            purpose=row.purpose,
        )


class JobObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None
    model: str
    fine_tuned_model: str | None
    organization_id: str = "org-local"
    status: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    result_files: list[str] = Field(default_factory=list)
    trained_tokens: int | None
    error: dict[str, Any] | None
    seed: int
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    estimated_finish: int | None = None
    integrations: list = Field(default_factory=list)
    groups: list[str] | None = Field(
        None,
        description="shoptalk extension: the groups a key must hold to be served the job's "
        "model and checkpoints (those of the keys that uploaded its files); null: only the "
        "owner's scope (admin)",
    )

    @classmethod
    def of(cls, row: JobRow) -> JobObject:
        kind = row.method.get("type", "supervised")
        return cls(
            id=row.id,
            created_at=epoch(row.created_at),
            finished_at=epoch(row.finished_at),
            model=row.model,
            fine_tuned_model=row.fine_tuned_model,
            status=row.status,
            training_file=row.training_file,
            validation_file=row.validation_file,
            # What training used ("auto" resolved) once it started, else what was asked.
            hyperparameters=row.hyperparameters_used
            or (row.method.get(kind) or {}).get("hyperparameters")
            or {},
            method=row.method,
            result_files=row.result_files or [],
            estimated_finish=epoch(row.estimated_finish),
            trained_tokens=row.trained_tokens,
            error=row.error,
            seed=row.seed,
            suffix=row.suffix,
            metadata=row.job_metadata,
            groups=row.model_groups,
        )


class EventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None = None
    type: str

    @classmethod
    def of(cls, row: JobEventRow) -> EventObject:
        return cls(
            id=row.id,
            created_at=epoch(row.created_at),
            level=row.level,
            message=row.message,
            data=row.data,
            type=row.type,
        )


class CheckpointObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any]

    @classmethod
    def of(cls, row: JobCheckpointRow) -> CheckpointObject:
        return cls(
            id=row.id,
            created_at=epoch(row.created_at),
            fine_tuned_model_checkpoint=row.model_name,
            fine_tuning_job_id=row.job_id,
            step_number=row.step,
            metrics={k: v for k, v in row.metrics.items() if k in ("loss", "val_loss", "step")}
            | {"train_loss": row.metrics.get("loss")},
        )


class Page(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
    has_more: bool = False


class JobCreate(BaseModel, extra="ignore"):
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = None
    metadata: dict[str, str] | None = None
    groups: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        max_length=100,
        description="shoptalk extension (`extra_body`): groups whose keys alone are served the "
        "model, besides those of the keys that uploaded its files; needed to serve beyond the "
        "owner's scope a model trained on a file an admin key uploaded",
    )

    @field_validator("suffix")
    @classmethod
    def _suffix_redacted(cls, suffix: str | None) -> str | None:
        # Stored and echoed in events and model names: a pasted key or e-mail must not be.
        return redact(suffix).text if suffix is not None else None

    @field_validator("metadata")
    @classmethod
    def _metadata_redacted(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is None:
            return None
        return {redact(k).text: redact(v).text for k, v in metadata.items()}

    def method_spec(self) -> dict[str, Any]:
        """`method`, with the legacy top-level `hyperparameters` folded into it."""
        method = dict(self.method or {"type": "supervised"})
        kind = method.get("type", "supervised")
        if kind not in ("supervised", "dpo"):
            raise ApiError(
                400, f"method.type must be 'supervised' or 'dpo', not {kind!r}", param="method.type"
            )
        if self.hyperparameters and not (method.get(kind) or {}).get("hyperparameters"):
            method[kind] = {"hyperparameters": self.hyperparameters}
        return method


# --- files


@files_router.post("", response_model=FileObject)
def upload_file(
    principal: Editor,
    jobs: Annotated[JobsService, Depends(service)],
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> FileObject:
    if purpose not in PURPOSES:
        raise ApiError(400, f"purpose must be one of {', '.join(PURPOSES)}", param="purpose")
    # The name is stored and echoed (file objects, job errors): redacted like a prompt.
    name = redact(upload_name(file.filename, "upload.jsonl")).text
    file_id = store.new_id("file")
    private_dir(jobs.files_dir)
    target = jobs.files_dir / f"{file_id}{Path(name).suffix or '.jsonl'}"
    digest, size = hashlib.sha256(), 0
    part = os.open(target.with_suffix(".part"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(part, "wb") as out:
        while chunk := file.file.read(2**20):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                out.close()
                target.with_suffix(".part").unlink()
                raise ApiError(413, f"File larger than {MAX_UPLOAD_BYTES} bytes", param="file")
            digest.update(chunk)
            out.write(chunk)
    target.with_suffix(".part").rename(target)
    row = FileRow(
        id=file_id,
        filename=name,
        purpose=purpose,
        bytes=size,
        sha256=digest.hexdigest(),
        path=str(target),
        key_id=principal.key_id,
    )
    with jobs.sessions() as session:
        session.add(row)
        session.commit()
    return FileObject.of(row)


def may_read_file(request: Request, principal: Principal, row: FileRow) -> bool:
    """An upload may hold what its key's groups read (training or eval items quoting a
    restricted document): shown only to keys that read as much (`serve.auth.reads_as_much`).
    A job's results file holds its metrics only (step, loss): every editor reads it."""
    if row.purpose == RESULTS_PURPOSE:
        return True
    return reads_as_much(principal, key_of(request, row.key_id))


def find_file(session: Session, request: Request, principal: Principal, file_id: str) -> FileRow:
    """The upload, if the key may read it; a 404 as for an unknown id if not."""
    row = find(session, FileRow, file_id, "file_id")
    if not may_read_file(request, principal, row):
        raise ApiError(404, f"No such object: {file_id}", code="not_found", param="file_id")
    return row


@files_router.get("", response_model=Page)
def list_files(
    principal: Editor, request: Request, jobs: Annotated[JobsService, Depends(service)]
) -> Page:
    with jobs.sessions() as session:
        rows = session.scalars(select(FileRow).order_by(FileRow.created_at.desc())).all()
        return Page(data=[FileObject.of(r) for r in rows if may_read_file(request, principal, r)])


@files_router.get("/{file_id}", response_model=FileObject)
def get_file(
    file_id: str,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
) -> FileObject:
    with jobs.sessions() as session:
        return FileObject.of(find_file(session, request, principal, file_id))


@files_router.get("/{file_id}/content")
def file_content(
    file_id: str,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
) -> FileResponse:
    with jobs.sessions() as session:
        row = find_file(session, request, principal, file_id)
    return FileResponse(row.path, filename=row.filename)


@files_router.delete("/{file_id}")
def delete_file(
    file_id: str,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
) -> dict:
    with jobs.sessions() as session:
        row = find_file(session, request, principal, file_id)
        Path(row.path).unlink(missing_ok=True)
        session.delete(row)
        session.commit()
    return {"id": file_id, "object": "file", "deleted": True}


# --- jobs


@jobs_router.post("", response_model=JobObject)
def create_job(
    body: JobCreate,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
) -> JobObject:
    if body.model not in jobs.base_models:
        raise ApiError(
            404,
            f"Model '{body.model}' cannot be fine-tuned here; available: {', '.join(jobs.base_models)}",
            code="model_not_found",
            param="model",
        )
    row = JobRow(
        id=store.new_id("ftjob"),
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        method=body.method_spec(),
        suffix=body.suffix,
        seed=body.seed if body.seed is not None else int(time.time()) % 2**31,
        job_metadata=body.metadata,
        key_id=principal.key_id,
    )
    with jobs.sessions() as session:
        # Train only on files the key may read: another key's upload may hold what its
        # groups read, and the job's model would tell it to this key.
        uploads = []
        for file_id, param in ((body.training_file, "training_file"),
                               (body.validation_file, "validation_file")):  # fmt: skip
            upload = session.get(FileRow, file_id) if file_id else None
            if upload is not None and not may_read_file(request, principal, upload):
                raise ApiError(404, f"No such object: {file_id}", code="not_found", param=param)
            uploads += [upload] if upload is not None else []
        row.model_groups = model_groups(request, uploads, body.groups)
        session.add(row)
        store.add_event(session, row.id, "Validating training file")
        if row.model_groups is None:
            store.add_event(
                session,
                row.id,
                "The model will be served to admin keys only: a file was uploaded by a key "
                "that reads every document; name its groups (`groups`) to serve it wider",
                level="warn",
            )
        session.commit()
        # Validation reads the files now, so a bad line is reported at once
        # with the file and line, before the job waits in the queue.
        try:
            validate(session, row)
        except JobError as err:
            store.set_status(session, row.id, "failed", error=err.as_dict())
            store.add_event(session, row.id, err.message, level="error")
        else:
            store.set_status(session, row.id, "queued")
            store.add_event(session, row.id, "Files validated; job queued")
        session.commit()
        session.refresh(row)
        return JobObject.of(row)


def model_groups(
    request: Request, uploads: list[FileRow], named: list[str] | None
) -> list[str] | None:
    """The groups a key must hold to be served the job's model: what a file's uploader
    could read it could put in the file, so the groups of each uploading key, plus those
    the job names. A file from a key that reads everything (admin) or was deleted may
    hold any document: the model is the owner's scope's only (None) unless the job names
    its groups, which only such a key can do (only it may read such a file)."""
    groups = set(named or [])
    for upload in uploads:
        uploader = key_of(request, upload.key_id)
        theirs = held_groups(uploader) if uploader is not None else None
        if theirs is None and named is None:
            return None
        groups.update(theirs or [])
    return sorted(groups)


@jobs_router.get("", response_model=Page)
def list_jobs(
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page:
    with jobs.sessions() as session:
        rows = session.scalars(select(JobRow).order_by(JobRow.created_at.desc())).all()
        shown = [r for r in rows if reads_as_much(principal, key_of(request, r.key_id))]
        return paginate([JobObject.of(r) for r in shown], after, limit)


def find_job(session: Session, request: Request, principal: Principal, job_id: str) -> JobRow:
    """The job, if the key reads as much as the key that started it (its files and errors
    quote that key's uploads); a 404 as for an unknown id if not."""
    row = find(session, JobRow, job_id, "fine_tuning_job_id")
    if not reads_as_much(principal, key_of(request, row.key_id)):
        raise ApiError(
            404, f"No such object: {job_id}", code="not_found", param="fine_tuning_job_id"
        )
    return row


@jobs_router.get("/{job_id}", response_model=JobObject)
def get_job(
    job_id: str, principal: Editor, request: Request, jobs: Annotated[JobsService, Depends(service)]
) -> JobObject:
    with jobs.sessions() as session:
        return JobObject.of(find_job(session, request, principal, job_id))


@jobs_router.post("/{job_id}/cancel", response_model=JobObject)
def cancel_job(
    job_id: str, principal: Editor, request: Request, jobs: Annotated[JobsService, Depends(service)]
) -> JobObject:
    return change(jobs, request, principal, job_id, "cancel")


@jobs_router.post("/{job_id}/pause", response_model=JobObject)
def pause_job(
    job_id: str, principal: Editor, request: Request, jobs: Annotated[JobsService, Depends(service)]
) -> JobObject:
    return change(jobs, request, principal, job_id, "pause")


@jobs_router.post("/{job_id}/resume", response_model=JobObject)
def resume_job(
    job_id: str, principal: Editor, request: Request, jobs: Annotated[JobsService, Depends(service)]
) -> JobObject:
    return change(jobs, request, principal, job_id, "resume")


@jobs_router.get("/{job_id}/events", response_model=Page)
def job_events(
    job_id: str,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Page:
    with jobs.sessions() as session:
        find_job(session, request, principal, job_id)
        rows = session.scalars(
            select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.seq.desc())
        ).all()
        return paginate([EventObject.of(r) for r in rows], after, limit)


@jobs_router.get("/{job_id}/checkpoints", response_model=Page)
def job_checkpoints(
    job_id: str,
    principal: Editor,
    request: Request,
    jobs: Annotated[JobsService, Depends(service)],
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Page:
    with jobs.sessions() as session:
        find_job(session, request, principal, job_id)
        rows = session.scalars(
            select(JobCheckpointRow)
            .where(JobCheckpointRow.job_id == job_id)
            .order_by(JobCheckpointRow.step.desc())
        ).all()
        return paginate([CheckpointObject.of(r) for r in rows], after, limit)


def change(
    jobs: JobsService, request: Request, principal: Principal, job_id: str, action: str
) -> JobObject:
    """Ask the worker to cancel or pause a job, or put a paused job back in the queue."""
    with jobs.sessions() as session:
        row = find_job(session, request, principal, job_id)
        if action == "resume":
            if row.status != "paused":
                raise ApiError(
                    409, f"Job {job_id} is {row.status}, not paused", param="fine_tuning_job_id"
                )
            store.set_status(session, job_id, "queued", requested=None)
            store.add_event(session, job_id, "Resume requested; job queued")
        elif row.status in store.FINISHED:
            raise ApiError(
                409, f"Job {job_id} has already {row.status}", param="fine_tuning_job_id"
            )
        elif row.status == "running":
            row.requested = action
            store.add_event(session, job_id, f"{action.capitalize()} requested")
        else:
            status = "cancelled" if action == "cancel" else "paused"
            store.set_status(session, job_id, status)
            store.add_event(session, job_id, f"Job {status}")
        session.commit()
        session.refresh(row)
        return JobObject.of(row)


def find(session: Session, table, row_id: str, param: str):
    row = session.get(table, row_id)
    if row is None:
        raise ApiError(404, f"No such object: {row_id}", code="not_found", param=param)
    return row


def paginate(items: list, after: str | None, limit: int) -> Page:
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return Page(data=items[:limit], has_more=len(items) > limit)
