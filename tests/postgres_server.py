"""A throwaway PostgreSQL on 127.0.0.1 for tests, from whichever build is installed.

    bin_dir = find_postgres(extension="vector")      # None: skip, saying what to install
    with running_postgres(bin_dir) as url:           # postgresql://shoptalk@127.0.0.1:<port>/postgres
        ...

Builds looked for: Debian's packages (/usr/lib/postgresql/<version>/bin), then
the one the `pgserver` wheel bundles (PostgreSQL 16 with pgvector), which is how
the tests get pgvector where Debian does not package it (bookworm).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_builds() -> list[Path]:
    """The `bin` folders of the PostgreSQL builds on this machine, Debian's newest first."""
    builds = [p.parent for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))][::-1]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "initdb").is_file():
            builds.append(bundled)
    return builds


def has_extension(bin_dir: Path, name: str) -> bool:
    found = subprocess.run(
        [bin_dir / "pg_config", "--sharedir"], capture_output=True, text=True, check=True
    )
    return (Path(found.stdout.strip()) / "extension" / f"{name}.control").is_file()


def find_postgres(extension: str | None = None) -> Path | None:
    """The first build (with `extension` installed, if named) or None."""
    for bin_dir in postgres_builds():
        if extension is None or has_extension(bin_dir, extension):
            return bin_dir
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_postgres(bin_dir: Path) -> Iterator[str]:
    """A new cluster in a temporary folder, trusting local connections, stopped on exit."""
    # PostgreSQL refuses to run as root: run it as the package's `postgres` user
    # in a folder that user owns.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="shoptalk-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    initdb = [bin_dir / "initdb", "-D", data, "-U", "shoptalk", "--auth=trust", "-E", "UTF8"]
    subprocess.run([*as_postgres, *initdb], check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    ctl = [*as_postgres, bin_dir / "pg_ctl", "-D", data, "-l", folder / "log"]
    subprocess.run([*ctl, "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://shoptalk@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
