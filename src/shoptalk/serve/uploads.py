"""What the server does with a client's file: its name checked, its bytes kept private.

Shared by the console's source uploads (`project_api`) and the Files API
(`jobs_api`).
"""

from __future__ import annotations

from pathlib import Path

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
