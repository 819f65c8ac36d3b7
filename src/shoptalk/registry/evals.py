"""Evals, their runs and each run's output items: what the Evals API keeps.

An eval and a run are stored as the JSON OpenAI's API returns, beside the
columns the server filters and orders by. A run's row is the truth about it:
the API writes what was asked (queued, cancel), the server's eval runner what
happened (in_progress, one output item per data source item, the counts,
completed/failed). A run left active by a stopped server is resumed from its
first item without an output (`EvalStore.interrupted`).
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import JSON, DateTime, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shoptalk.registry.db import Base
from shoptalk.registry.jobs import FileRow

ACTIVE = ("queued", "in_progress")
FINISHED = ("completed", "failed", "canceled")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class EvalRow(Base):
    __tablename__ = "evals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    body: Mapped[dict] = mapped_column(JSON)  # name, data_source_config, testing_criteria, metadata
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created: Mapped[int] = mapped_column(Integer, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class EvalRunRow(Base):
    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    eval_id: Mapped[str] = mapped_column(String(40), index=True)
    body: Mapped[dict] = mapped_column(JSON)  # name, model, data_source, metadata
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    requested: Mapped[str | None] = mapped_column(String(20), default=None)  # cancel
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # result counts, usage
    error: Mapped[dict | None] = mapped_column(JSON, default=None)
    key_id: Mapped[str] = mapped_column(String(32))  # the key the run asks models as
    created: Mapped[int] = mapped_column(Integer, index=True)
    heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class EvalOutputItemRow(Base):
    __tablename__ = "eval_output_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    index: Mapped[int] = mapped_column(Integer)  # datasource_item_id
    status: Mapped[str] = mapped_column(String(10))  # pass, fail, error
    body: Mapped[dict] = mapped_column(JSON)  # datasource_item, results, sample
    created: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class EvalStore:
    """The Evals API's rows; every method is one short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def add_eval(self, body: dict, key_id: str) -> EvalRow:
        row = EvalRow(id=new_id("eval"), body=body, key_id=key_id, created=int(time.time()))
        with self.sessions.begin() as session:
            session.add(row)
        return row

    def get_eval(self, eval_id: str) -> EvalRow | None:
        with self.sessions() as session:
            return session.get(EvalRow, eval_id)

    def list_evals(self) -> list[EvalRow]:
        with self.sessions() as session:
            return list(session.scalars(select(EvalRow).order_by(EvalRow.created, EvalRow.id)))

    def update_eval(self, eval_id: str, changes: dict) -> EvalRow | None:
        with self.sessions.begin() as session:
            row = session.get(EvalRow, eval_id)
            if row is not None:
                row.body = {**row.body, **changes}
                row.updated_at = now()
            return row

    def delete_eval(self, eval_id: str) -> bool:
        with self.sessions.begin() as session:
            runs = list(session.scalars(select(EvalRunRow.id).where(EvalRunRow.eval_id == eval_id)))
            session.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.run_id.in_(runs)))
            session.execute(delete(EvalRunRow).where(EvalRunRow.eval_id == eval_id))
            return session.execute(delete(EvalRow).where(EvalRow.id == eval_id)).rowcount == 1

    def add_run(self, eval_id: str, body: dict, key_id: str) -> EvalRunRow:
        row = EvalRunRow(
            id=new_id("evalrun"), eval_id=eval_id, body=body, key_id=key_id,
            created=int(time.time()), summary={},
        )  # fmt: skip
        with self.sessions.begin() as session:
            session.add(row)
        return row

    def get_run(self, eval_id: str, run_id: str) -> EvalRunRow | None:
        with self.sessions() as session:
            row = session.get(EvalRunRow, run_id)
            return row if row is not None and row.eval_id == eval_id else None

    def get_run_any(self, run_id: str) -> EvalRunRow | None:
        with self.sessions() as session:
            return session.get(EvalRunRow, run_id)

    def list_runs(self, eval_id: str) -> list[EvalRunRow]:
        with self.sessions() as session:
            query = select(EvalRunRow).where(EvalRunRow.eval_id == eval_id)
            return list(session.scalars(query.order_by(EvalRunRow.created, EvalRunRow.id)))

    def delete_run(self, run_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id))
            session.execute(delete(EvalRunRow).where(EvalRunRow.id == run_id))

    def set_run(self, run_id: str, **fields) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(EvalRunRow).where(EvalRunRow.id == run_id).values(heartbeat=now(), **fields)
            )

    def begin_run(self, run_id: str) -> bool:
        """Mark a queued (or resumed) run in progress; False if it was canceled or finished."""
        with self.sessions.begin() as session:
            return (
                session.execute(
                    update(EvalRunRow)
                    .where(EvalRunRow.id == run_id, EvalRunRow.status.in_(ACTIVE))
                    .values(status="in_progress", heartbeat=now())
                ).rowcount
                == 1
            )

    def request_cancel(self, run_id: str) -> None:
        """Cancel a queued run at once; ask the runner to stop an in-progress one."""
        with self.sessions.begin() as session:
            session.execute(
                update(EvalRunRow)
                .where(EvalRunRow.id == run_id, EvalRunRow.status == "queued")
                .values(status="canceled")
            )
            session.execute(
                update(EvalRunRow)
                .where(EvalRunRow.id == run_id, EvalRunRow.status == "in_progress")
                .values(requested="cancel")
            )

    def file_path(self, file_id: str) -> str | None:
        """Where an uploaded file (`registry.jobs.FileRow`) is stored; None if unknown."""
        with self.sessions() as session:
            row = session.get(FileRow, file_id)
            return row.path if row is not None else None

    def add_item(self, row: EvalOutputItemRow) -> None:
        """Store an output item, unless its run was deleted while the item was graded."""
        with self.sessions.begin() as session:
            if session.get(EvalRunRow, row.run_id) is None:
                return
            session.add(row)
            session.execute(
                update(EvalRunRow).where(EvalRunRow.id == row.run_id).values(heartbeat=now())
            )

    def items(self, run_id: str) -> list[EvalOutputItemRow]:
        with self.sessions() as session:
            query = select(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id)
            return list(session.scalars(query.order_by(EvalOutputItemRow.index)))

    def interrupted(self, stale_after_s: float) -> list[EvalRunRow]:
        """Active runs whose runner has not written for `stale_after_s`: claimed for this one."""
        cutoff = now() - timedelta(seconds=stale_after_s)
        claimed = []
        with self.sessions() as session:
            query = select(EvalRunRow).where(EvalRunRow.status.in_(ACTIVE))
            for row in session.scalars(query):
                heartbeat = row.heartbeat.replace(tzinfo=row.heartbeat.tzinfo or timezone.utc)
                if heartbeat >= cutoff:
                    continue
                taken = session.execute(
                    update(EvalRunRow)
                    .where(EvalRunRow.id == row.id, EvalRunRow.heartbeat == row.heartbeat)
                    .values(heartbeat=now())
                )
                session.commit()
                if taken.rowcount == 1:
                    claimed.append(row)
        return claimed
