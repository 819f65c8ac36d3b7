"""The ingest entry point: the source lists of shoptalk.yaml -> canonical records.

    sources = ingest(root, docs=["docs/"], faq=["faq.csv"], conversations=["chats/"])

Each entry is a file or a folder, relative to the project root or absolute.
Folders are walked recursively in sorted order, skipping hidden files and
folders (so `.shoptalk/` is never read back in). Files are read in sorted order
and records keep their order within a file, so the same sources always give
the same records in the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import BaseModel, Field

from shoptalk.data.documents import DOCUMENT_SUFFIXES, read_document, report, source_path
from shoptalk.data.faq import FAQ_SUFFIXES, read_faq
from shoptalk.data.formats import CONVERSATION_SUFFIXES, read_conversations, read_llamafactory
from shoptalk.errors import SourceError
from shoptalk.records import Chunk, Conversation, Preference

logger = logging.getLogger(__name__)

LLAMAFACTORY_INFO = "dataset_info.json"


class Ingested(BaseModel, extra="forbid"):
    chunks: list[Chunk] = Field(default_factory=list)
    faq: list[Conversation] = Field(default_factory=list)
    conversations: list[Conversation] = Field(default_factory=list)
    preferences: list[Preference] = Field(default_factory=list)


def ingest(
    root: Path,
    docs: list[str],
    faq: list[str],
    conversations: list[str],
    errors: list[SourceError] | None = None,
) -> Ingested:
    """Read every source listed under `sources.docs/faq/conversations`.

    With `errors=None` the first problem raises; with a list, every problem is
    appended to it and the good records are kept (skip-and-report).
    """
    result = Ingested()
    for path in _files(root, docs, "docs", DOCUMENT_SUFFIXES, errors):
        result.chunks += _read_document(path, root, errors)
    for path in _files(root, faq, "faq", FAQ_SUFFIXES, errors):
        result.faq += read_faq(path, root, errors)
    for path in _files(root, conversations, "conversations", CONVERSATION_SUFFIXES, errors):
        if path.name == LLAMAFACTORY_INFO:
            chats, preferences = read_llamafactory(path, root, errors)
            result.conversations += chats
            result.preferences += preferences
        else:
            result.conversations += read_conversations(path, root, errors)
    return result


def _read_document(path: Path, root: Path, errors: list[SourceError] | None) -> list[Chunk]:
    """`read_document`, its SourceError reported the way the other readers report theirs."""
    try:
        return read_document(path, root)
    except SourceError as err:
        report(err, errors)
        return []


def _files(
    root: Path,
    entries: list[str],
    key: str,
    suffixes: tuple[str, ...],
    errors: list[SourceError] | None,
) -> list[Path]:
    """The files the entries under `sources.<key>` name, each once, in sorted order."""
    found: dict[Path, Path] = {}
    for entry in entries:
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if path.is_dir():
            files = _walk(path, suffixes, llamafactory=key == "conversations")
        elif not path.exists():
            message = f"file or folder not found (listed under sources.{key} in shoptalk.yaml)"
            report(SourceError(path, None, message), errors)
            continue
        elif path.suffix.lower() not in suffixes:
            expected = f"expected a file ending in {', '.join(suffixes)} under sources.{key}"
            found = repr(path.suffix or "no suffix")
            report(SourceError(path, None, f"{expected}, found {found}"), errors)
            continue
        else:
            files = [path]
        for file in files:
            found.setdefault(file.resolve(), file)
    return sorted(found.values(), key=lambda p: source_path(p, root))


def _walk(folder: Path, suffixes: tuple[str, ...], llamafactory: bool) -> list[Path]:
    """Supported files under `folder`, recursively, hidden ones skipped.

    A folder holding a LLaMA-Factory `dataset_info.json` is read through it
    alone: its data files are listed there, with the columns that explain them.
    """
    files, unsupported = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if llamafactory and LLAMAFACTORY_INFO in filenames:
            files.append(Path(dirpath) / LLAMAFACTORY_INFO)
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            if name.startswith((".", "~$")):  # hidden files and Office lock files
                continue
            supported = Path(name).suffix.lower() in suffixes
            (files if supported else unsupported).append(Path(dirpath) / name)
    if unsupported:
        logger.warning(
            "%s: skipping %d files that are not %s: %s",
            folder,
            len(unsupported),
            ", ".join(suffixes),
            ", ".join(p.relative_to(folder).as_posix() for p in unsupported[:5]),
        )
    return files
