"""The embedded registry (SQLite) is shared by the server, its worker and the trainer
processes: opening it must never release another connection's locks."""

from __future__ import annotations

import os
import stat

from shoptalk.registry.db import default_url


def test_the_database_file_is_created_private_once_and_never_reopened(tmp_path, monkeypatch):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it,
    SQLite's too: a second `default_url` (each registry user calls it) must not touch an
    existing file, or another process's checkpoint resets the WAL under open connections
    (a worker's second job was lost that way: "failed" in one process, "succeeded" on disk)."""
    url = default_url(tmp_path / "state")
    database = tmp_path / "state" / "shoptalk.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    opened = []
    real_open = os.open
    monkeypatch.setattr(
        os, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k)
    )
    assert default_url(tmp_path / "state") == url
    assert opened == []
