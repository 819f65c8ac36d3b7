"""What one stage hands to the next: folders on disk, described by small models.

Writing is atomic everywhere (temp file + rename), so a crash never leaves a
half-written artifact that a later run would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from shoptalk.records import Chunk, Conversation


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner may enter (0700 when created here)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_private(path: Path, mode: str = "a"):
    """`path` opened as text, created 0600: prompts, feedback and uploads are nobody else's."""
    return open(path, mode, encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600))


def write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    write_atomic(path, "".join(r.model_dump_json() + "\n" for r in records))


def read_jsonl(path: Path, model: type[BaseModel]) -> list:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [model.model_validate_json(line) for line in f if line.strip()]


class DatasetArtifact(BaseModel):
    """`.shoptalk/datasets/<hash>/`: train/val conversations, document text, held-out FAQ."""

    path: Path
    hash: str

    def conversations(self, split: str) -> list[Conversation]:
        return read_jsonl(self.path / f"{split}.jsonl", Conversation)

    def texts(self) -> list[Chunk]:
        return read_jsonl(self.path / "text.jsonl", Chunk)


class RunArtifact(BaseModel):
    """`.shoptalk/runs/<run-id>/`: the trained model in `final/` and its card."""

    path: Path
    run_id: str

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def is_adapter(self) -> bool:
        return (self.final / "adapter_config.json").is_file()
