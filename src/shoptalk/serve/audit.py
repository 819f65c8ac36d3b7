"""One audit row per API request: who, which model, how many tokens, how long, what status.

Prompts and completions are kept only when `serve.store_prompts` is on, and
then with personal data and secrets (API keys included) replaced by
placeholders before they reach the database.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from shoptalk.data.pii import redact
from shoptalk.registry.audit import AuditRow, Usage, usage_totals


class AuditEntry(BaseModel):
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    key_id: str | None = Field(None, description="None when the request had no valid key")
    route: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    status: int
    prompt: str | None = None
    completion: str | None = None


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session], store_prompts: bool = False) -> None:
        self.sessions = sessions
        self.store_prompts = store_prompts

    def record(self, entry: AuditEntry) -> None:
        """Write one row; prompt and completion only if stored at all, and redacted."""
        row = AuditRow(**entry.model_dump(exclude={"prompt", "completion"}))
        if self.store_prompts:
            row.prompt = _redacted(entry.prompt)
            row.completion = _redacted(entry.completion)
        with self.sessions.begin() as session:
            session.add(row)

    def usage(self, since: datetime | None = None) -> Usage:
        return usage_totals(self.sessions, since)


def _redacted(text: str | None) -> str | None:
    return redact(text).text if text is not None else None
