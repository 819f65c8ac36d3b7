"""API keys: one per person or tool, stored as a hash, with scopes, limits and expiry.

The secret (`sk-st-` + 32 random bytes) exists in clear only in the answer to
`create`/`rotate`. The table keeps its SHA-256 and a short display prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shoptalk.errors import ShoptalkError
from shoptalk.registry.db import Base

SECRET_PREFIX = "sk-st-"
# editor: upload files and run fine-tuning jobs (the jobs API and the console).
SCOPES = ("chat", "embeddings", "editor", "admin")
# Other names a key may be created with; stored (and listed) under the scope they name.
# `owner` is `admin`: the owner's scope, every scope and every document (docs/permissions.md).
SCOPE_ALIASES = {"owner": "admin"}
# How often a key's last-used time is written: once a minute is precise enough
# for "is this key still in use?" and spares a database write per request.
TOUCH_EVERY_S = 60.0


class KeyStoreError(ShoptalkError):
    """A key operation that cannot be done: bad scope or limit, revoked key."""


class UnknownKeyError(KeyStoreError):
    """No key has this id."""


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[str] = mapped_column(String(100))
    models: Mapped[str | None] = mapped_column(Text, default=None)
    groups: Mapped[str] = mapped_column(Text, default="")
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tokens_per_day: Mapped[int | None] = mapped_column(Integer, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class KeyLimits(BaseModel, extra="forbid"):
    """What a key may do; None means unlimited (or, for models, every model)."""

    scopes: list[str] = Field(
        ["chat", "embeddings"],
        description=f"Some of {', '.join(SCOPES)}; admin (also named owner) implies all",
    )
    models: list[str] | None = Field(None, description="Models the key may use; None = all")
    groups: list[str] = Field(
        default_factory=list,
        description="Document access groups for retrieval; [] = only documents open to everyone",
    )
    rpm: int | None = Field(None, description="Requests per minute (sliding window)")
    tpm: int | None = Field(None, description="Tokens per minute, prompt + max_tokens reserved")
    tokens_per_day: int | None = Field(None, description="Tokens per UTC day")
    tokens_per_month: int | None = Field(None, description="Tokens per calendar month (UTC)")

    @field_validator("scopes")
    @classmethod
    def canonical_scopes(cls, scopes: list[str]) -> list[str]:
        return list(dict.fromkeys(SCOPE_ALIASES.get(scope, scope) for scope in scopes))


class KeyInfo(KeyLimits):
    """A key as shown to people: everything but the secret."""

    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class NewKey(BaseModel):
    """The answer to create/rotate: the only time the secret is seen."""

    key: KeyInfo
    secret: str


def hash_secret(secret: str) -> str:
    # A plain SHA-256 is enough here: the secret is 256 random bits, so there is
    # nothing to guess, and a slow password hash (bcrypt, argon2) would only add
    # milliseconds to every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes even for timezone=True columns; all ours are UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes.split(","),
        models=row.models.split("\n") if row.models is not None else None,
        groups=[g for g in (row.groups or "").split("\n") if g],
        rpm=row.rpm,
        tpm=row.tpm,
        tokens_per_day=row.tokens_per_day,
        tokens_per_month=row.tokens_per_month,
        created_at=_aware(row.created_at),
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
        last_used_at=_aware(row.last_used_at),
    )


def check_limits(limits: KeyLimits) -> None:
    unknown = sorted(set(limits.scopes) - set(SCOPES))
    if unknown or not limits.scopes:
        names = ", ".join([*SCOPES, *SCOPE_ALIASES])
        raise KeyStoreError(f"scopes: expected some of {names}, got {limits.scopes}")
    for field in ("rpm", "tpm", "tokens_per_day", "tokens_per_month"):
        value = getattr(limits, field)
        if value is not None and value < 1:
            raise KeyStoreError(f"{field}: expected a positive number or none, got {value}")
    if limits.models is not None and not all(m.strip() for m in limits.models):
        raise KeyStoreError(f"models: expected model names, got {limits.models}")


class KeyStore:
    """Create, list, revoke, rotate and look up keys in the registry database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    def create(self, name: str, limits: KeyLimits, expires_in_days: float | None = None) -> NewKey:
        check_limits(limits)
        if not name.strip():
            raise KeyStoreError("name: expected who or what the key is for, got an empty name")
        if expires_in_days is not None and expires_in_days <= 0:
            raise KeyStoreError(
                f"expires_in_days: expected a positive number, got {expires_in_days}"
            )
        now = datetime.now(timezone.utc)
        secret = new_secret()
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(8),
            name=name.strip(),
            prefix=secret[:10],
            secret_hash=hash_secret(secret),
            scopes=",".join(dict.fromkeys(limits.scopes)),
            models="\n".join(limits.models) if limits.models is not None else None,
            groups="\n".join(limits.groups),
            rpm=limits.rpm,
            tpm=limits.tpm,
            tokens_per_day=limits.tokens_per_day,
            tokens_per_month=limits.tokens_per_month,
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        with self.sessions.begin() as session:
            session.add(row)
            session.flush()
            return NewKey(key=_info(row), secret=secret)

    def list(self) -> list[KeyInfo]:
        with self.sessions() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [_info(row) for row in rows]

    def get(self, key_id: str) -> KeyInfo:
        with self.sessions() as session:
            return _info(self._row(session, key_id))

    def revoke(self, key_id: str) -> KeyInfo:
        with self.sessions.begin() as session:
            row = self._row(session, key_id)
            row.revoked_at = row.revoked_at or datetime.now(timezone.utc)
            return _info(row)

    def rotate(self, key_id: str) -> NewKey:
        """A new secret for the same id, name and limits; the old secret stops working."""
        secret = new_secret()
        with self.sessions.begin() as session:
            row = self._row(session, key_id)
            if row.revoked_at is not None:
                raise KeyStoreError(f"{key_id}: revoked; create a new key instead of rotating it")
            row.secret_hash = hash_secret(secret)
            row.prefix = secret[:10]
            return NewKey(key=_info(row), secret=secret)

    def find(self, secret: str) -> KeyInfo | None:
        """The key this secret belongs to (whatever its status), or None."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        digest = hash_secret(secret)
        with self.sessions() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.secret_hash == digest))
            # The index lookup already matched; compare_digest keeps the final
            # check constant-time should the lookup ever become a prefix scan.
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            return _info(row)

    def touch(self, key_id: str) -> None:
        """Record that the key was used now (at most one write a minute per key)."""
        now = time.monotonic()
        with self._touch_lock:
            if now - self._touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
                return
            self._touched[key_id] = now
        with self.sessions.begin() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is not None:
                row.last_used_at = datetime.now(timezone.utc)

    @staticmethod
    def _row(session: Session, key_id: str) -> ApiKeyRow:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise UnknownKeyError(f"no key with id {key_id!r}; `shoptalk keys list` shows the ids")
        return row
