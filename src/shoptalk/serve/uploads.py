"""What the server does with a client's file: its name checked, its bytes kept private.

Shared by the console's source uploads (`project_api`) and the Files API
(`jobs_api`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from shoptalk.serve.errors import ApiError

# File systems allow 255 bytes per name; the rest is room for " (12)" numbering.
MAX_NAME_BYTES = 200


def upload_name(raw: str | None, default: str) -> str:
    """The base name of an uploaded file (no folders), or a 400 naming the limit."""
    name = Path(raw or "").name or default
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise ApiError(
            400,
            f"The file name is {size} bytes long; at most {MAX_NAME_BYTES} are allowed. "
            "Rename the file and upload it again.",
            code="invalid_file_name",
            param="file",
        )
    return name


def save_upload(folder: Path, name: str, source: BinaryIO) -> Path:
    """The upload's bytes as `name` in `folder` (numbered if taken), private (0600).

    Written to a file of its own first, then linked under the first free name:
    a link never replaces a file, so concurrent uploads of one name each get
    their own file, and a name appears only once its bytes are all on disk.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(2**20):
                out.write(chunk)
        return link_unused(Path(tmp), folder / name)
    finally:
        Path(tmp).unlink(missing_ok=True)


def link_unused(tmp: Path, wanted: Path) -> Path:
    """Link `tmp` as `wanted`, or `wanted (1)`, `wanted (2)`...: the first name not taken."""
    target, n = wanted, 1
    while True:
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            target = wanted.with_name(f"{wanted.stem} ({n}){wanted.suffix}")
            n += 1
