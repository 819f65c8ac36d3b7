"""One SQLAlchemy engine per database URL, tables created on first connect."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from shoptalk.artifacts import private_dir

# Modules that define tables on `Base`; imported before `create_all`.
TABLE_MODULES: list[str] = [
    "shoptalk.registry.keys",
    "shoptalk.registry.audit",
    "shoptalk.registry.models",
    "shoptalk.registry.jobs",
    "shoptalk.registry.evals",
]


class Base(DeclarativeBase):
    pass


# One engine (and connection pool) per URL in a process: the API, the console,
# the worker and the catalog share it instead of each opening their own.
_sessions: dict[str, sessionmaker[Session]] = {}
_sessions_lock = threading.Lock()


def default_url(state_dir: Path) -> str:
    """The embedded default: a SQLite file in the project's `.shoptalk/`, private (0600; SQLite
    gives its -wal and -shm files the same mode)."""
    private_dir(state_dir)
    database = state_dir / "shoptalk.db"
    if not database.exists():
        # Only when missing: closing any descriptor of the file drops every POSIX lock
        # this process holds on it, SQLite's included, and another process's checkpoint
        # could then reset the WAL under this one's open connections (writes were lost:
        # a worker's second job ended "failed" in one process and "succeeded" on disk).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    return f"sqlite:///{database}"


def connect(url: str) -> sessionmaker[Session]:
    """The session factory for `url` (one per process), every registry table created if missing."""
    with _sessions_lock:
        if url not in _sessions:
            for module in TABLE_MODULES:
                importlib.import_module(module)
            engine = create_engine(url, pool_pre_ping=True)
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(engine)
            _sessions[url] = sessionmaker(engine, expire_on_commit=False)
        return _sessions[url]


def open_registry(database_url: str | None, state_dir: Path) -> sessionmaker[Session]:
    """The registry database: `serve.database_url`, or SQLite in the project's state folder."""
    return connect(database_url or default_url(state_dir))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the server read while a CLI command writes; a busy timeout makes
    # concurrent writers wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
