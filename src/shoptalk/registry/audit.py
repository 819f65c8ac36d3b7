"""The audit log: one row per API request, and usage totals read from it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import DateTime, Float, Integer, String, Text, case, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shoptalk.registry.db import Base
from shoptalk.registry.keys import ApiKeyRow


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    route: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[int] = mapped_column(Integer)
    # Only filled when serve.store_prompts is on, and then PII-redacted.
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    completion: Mapped[str | None] = mapped_column(Text, default=None)


class UsageTotal(BaseModel):
    """Totals for one key or one model."""

    name: str  # the key's id or the model's name
    label: str | None = None  # the key's name, for people
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Usage(BaseModel):
    since: datetime | None
    by_key: list[UsageTotal]
    by_model: list[UsageTotal]


def usage_totals(sessions: sessionmaker[Session], since: datetime | None = None) -> Usage:
    """Requests, errors and tokens per key and per model, since a time (or ever)."""
    with sessions() as session:
        return Usage(
            since=since,
            by_key=_totals(session, [AuditRow.key_id, ApiKeyRow.name], since),
            by_model=_totals(session, [AuditRow.model], since),
        )


def _totals(session: Session, group: list, since: datetime | None) -> list[UsageTotal]:
    """Totals per value of `group` (an id, and for keys also their name)."""
    query = (
        select(
            *group,
            func.count(),
            func.sum(case((AuditRow.status >= 400, 1), else_=0)),
            func.sum(AuditRow.prompt_tokens),
            func.sum(AuditRow.completion_tokens),
        )
        .outerjoin(ApiKeyRow, ApiKeyRow.id == AuditRow.key_id)
        .group_by(*group)
        .order_by(*group)
    )
    if since is not None:
        query = query.where(AuditRow.time >= since)
    totals = []
    for row in session.execute(query):
        *names, requests, errors, prompt, completion = row
        totals.append(
            UsageTotal(
                name=names[0] or "-",
                label=names[1] if len(names) > 1 else None,
                requests=requests,
                errors=errors or 0,
                prompt_tokens=prompt or 0,
                completion_tokens=completion or 0,
            )
        )
    return totals
