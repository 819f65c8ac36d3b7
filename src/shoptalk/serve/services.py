"""What the API's routes share: the key store, the limiter, the audit log, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from shoptalk.config import ServeSettings
from shoptalk.registry.db import open_registry
from shoptalk.registry.keys import KeyStore
from shoptalk.serve.audit import AuditLog
from shoptalk.serve.limits import InProcessLimiter, Limiter, RedisLimiter


@dataclass
class Services:
    keys: KeyStore
    limiter: Limiter
    audit: AuditLog
    settings: ServeSettings

    async def close(self) -> None:
        await self.limiter.close()


def registry(settings: ServeSettings, state_dir: Path) -> sessionmaker[Session]:
    """The registry database: `serve.database_url`, or SQLite in the project's state folder."""
    return open_registry(settings.database_url, state_dir)


def build_services(settings: ServeSettings, state_dir: Path) -> Services:
    sessions = registry(settings, state_dir)
    limiter = RedisLimiter(settings.redis_url) if settings.redis_url else InProcessLimiter()
    return Services(
        keys=KeyStore(sessions),
        limiter=limiter,
        audit=AuditLog(sessions, store_prompts=settings.store_prompts),
        settings=settings,
    )
