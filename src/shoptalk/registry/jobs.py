"""Uploaded files and fine-tuning jobs: the persistent queue behind the jobs API.

A job's row is the truth about it: the server writes what was asked (queued,
cancel or pause requested), the worker writes what happened (running, events,
checkpoints, succeeded/failed). Neither holds state in memory that a restart
would lose.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shoptalk.registry.db import Base

# Statuses, in OpenAI's words; `paused` is ours (OpenAI has it for some jobs).
ACTIVE = ("validating_files", "queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    filename: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(String(40))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class JobRow(Base):
    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(300))
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40), default=None)
    method: Mapped[dict] = mapped_column(JSON)
    suffix: Mapped[str | None] = mapped_column(String(64), default=None)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    job_metadata: Mapped[dict | None] = mapped_column("metadata", JSON, default=None)
    status: Mapped[str] = mapped_column(String(20), default="validating_files", index=True)
    # What the server asked the worker to do with a running job: cancel or pause.
    requested: Mapped[str | None] = mapped_column(String(20), default=None)
    error: Mapped[dict | None] = mapped_column(JSON, default=None)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(300), default=None)
    run_path: Mapped[str | None] = mapped_column(Text, default=None)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    worker_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # What training really used ("auto" resolved), from the run's plan; OpenAI's names.
    hyperparameters_used: Mapped[dict | None] = mapped_column(JSON, default=None)
    estimated_finish: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    result_files: Mapped[list | None] = mapped_column(JSON, default=None)
    # The groups a key must hold to be served the job's model and checkpoints: those of
    # the keys that uploaded its files (what they could read, they could put in them),
    # plus any the job named. None: the owner's scope (admin) only, for a file uploaded
    # by a key that reads everything or was deleted, and for jobs made before this column.
    model_groups: Mapped[list | None] = mapped_column(JSON, default=None)


class BuildRow(Base):
    """A build of the served project or of one made in the console, started there or by
    `shoptalk build` (origin 'cli', run by that command's own process); or a plan of one
    (kind 'plan': what a build would train, with time and memory, in `result`)."""

    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The built project's folder; None on rows written before the console made
    # projects, which were all builds of the served project.
    project_root: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    requested: Mapped[str | None] = mapped_column(String(20), default=None)
    stage: Mapped[str | None] = mapped_column(String(20), default=None)
    run_path: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[dict | None] = mapped_column(JSON, default=None)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    worker_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    origin: Mapped[str | None] = mapped_column(String(10), default="console")
    # 'build' or 'plan'; None on rows written before plans were queued (all builds).
    kind: Mapped[str | None] = mapped_column(String(10), default="build")
    result: Mapped[dict | None] = mapped_column(JSON, default=None)


class JobEventRow(Base):
    """Events of fine-tuning jobs and of builds (`job_id` holds either id)."""

    __tablename__ = "fine_tuning_job_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    level: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class JobCheckpointRow(Base):
    __tablename__ = "fine_tuning_job_checkpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(300), unique=True)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


# Columns added since the tables were first released: (table, column). All nullable,
# so adding them is the whole migration.
ADDED_COLUMNS = [
    (BuildRow, "project_root"),
    (BuildRow, "origin"),
    (BuildRow, "kind"),
    (BuildRow, "result"),
    (JobRow, "hyperparameters_used"),
    (JobRow, "estimated_finish"),
    (JobRow, "result_files"),
    (JobRow, "model_groups"),
]


def add_missing_columns(sessions: sessionmaker[Session]) -> None:
    """Bring a registry made by an older shoptalk up to date.

    `create_all` creates missing tables but never adds columns to existing ones.
    """
    engine = sessions.kw["bind"]
    for table, name in ADDED_COLUMNS:
        where = table.__tablename__
        if name in column_names(engine, where):
            continue
        kind = table.__table__.columns[name].type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {where} ADD COLUMN {name} {kind}"))
        except DBAPIError:
            # Another process (a replica, the worker) added it first.
            if name not in column_names(engine, where):
                raise


def column_names(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def builds_of(root: str, served: bool, kind: str = "build") -> ColumnElement[bool]:
    """A filter for the builds (or plans: `kind`) of the project at `root`.

    Rows without a root predate projects made in the console: the served project's;
    rows without a kind predate queued plans: builds.
    """
    mine = BuildRow.project_root == root
    where = or_(mine, BuildRow.project_root.is_(None)) if served else mine
    of_kind = BuildRow.kind == kind
    if kind == "build":
        of_kind = or_(of_kind, BuildRow.kind.is_(None))
    return and_(where, of_kind)


def add_event(
    session: Session,
    job_id: str,
    message: str,
    level: str = "info",
    data: dict | None = None,
    kind: str = "message",
) -> None:
    session.add(
        JobEventRow(
            id=new_id("ftevent"),
            job_id=job_id,
            level=level,
            type=kind,
            message=message,
            data=json.loads(json.dumps(data)) if data is not None else None,
        )
    )


def table_of(job_id: str) -> type[JobRow] | type[BuildRow]:
    """Builds and plans are `BuildRow`s (ids build-…, plan-…); fine-tuning jobs `JobRow`s."""
    return JobRow if job_id.startswith("ftjob-") else BuildRow


def set_status(session: Session, job_id: str, status: str, **fields) -> None:
    if status in FINISHED:
        fields.setdefault("finished_at", now())
    table = table_of(job_id)
    session.execute(update(table).where(table.id == job_id).values(status=status, **fields))


def claim_next(session: Session, pid: int) -> JobRow | BuildRow | None:
    """Take the oldest queued job or build for this worker; None if there is none.

    The conditional UPDATE is the lock: of two workers racing for one job, only
    one sees its row change.
    """
    queued = [
        *session.scalars(select(JobRow).where(JobRow.status == "queued")),
        *session.scalars(select(BuildRow).where(BuildRow.status == "queued")),
    ]
    for job in sorted(queued, key=lambda j: j.created_at):
        table = type(job)
        taken = session.execute(
            update(table)
            .where(table.id == job.id, table.status == "queued")
            .values(status="running", worker_pid=pid, requested=None)
        )
        session.commit()
        if taken.rowcount == 1:
            session.refresh(job)
            return job
    return None
