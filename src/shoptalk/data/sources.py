"""`read_sources()`: every `sources.*` key of shoptalk.yaml -> canonical records.

    records = read_sources(root, cfg.sources)   # data check, the dataset stage

| key           | files                                                   | records      |
| ------------- | ------------------------------------------------------- | ------------ |
| docs          | .md .markdown .txt .html .htm .pdf .docx                | Chunk        |
| faq           | .csv .tsv .xlsx .jsonl .json (question/answer columns)  | Conversation |
| conversations | .jsonl .json (OpenAI, ShareGPT, Alpaca), LLaMA-Factory  | Conversation |
|               | dataset_info.json, .csv support-chat exports            | (Preference) |
| preferences   | .jsonl .json preference pairs, LLaMA-Factory ranking    | Preference   |
| questions     | .jsonl question files (domain, unanswerable, style)     | Question     |
| style         | .md .markdown .txt .html .htm .pdf .docx (tone guides)  | Chunk (rules) |

The index stage reads documents one file at a time (to skip unchanged ones)
through the same listing and readers: `listed_files`, `read_document_file` and
`declared_groups` (who may read a document: see `documents.document_groups`).

Each entry is a file or a folder, relative to the project root or absolute.
Folders are walked recursively in sorted order, skipping hidden files and
folders (so `.shoptalk/` is never read back in). Files are read in sorted order
and records keep their order within a file, so the same sources always give
the same records in the same order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from shoptalk import progress
from shoptalk.config import RagSettings, Sources
from shoptalk.data.chat_export import CHAT_EXPORT_SUFFIXES, read_chat_export
from shoptalk.data.documents import (
    DOCUMENT_SUFFIXES,
    document_groups,
    folder_acl,
    markdown_groups,
    read_document,
    report,
    source_path,
)
from shoptalk.data.faq import FAQ_SUFFIXES, read_faq
from shoptalk.data.formats import CONVERSATION_SUFFIXES, read_conversations
from shoptalk.data.llamafactory import read_llamafactory
from shoptalk.data.preferences import read_preference_sources
from shoptalk.data.questions import read_questions
from shoptalk.data.read_docx import DOCX_SUFFIXES, read_docx
from shoptalk.data.read_html import HTML_SUFFIXES, html_groups, read_html
from shoptalk.data.read_pdf import PDF_SUFFIXES, read_pdf
from shoptalk.errors import SourceError
from shoptalk.records import Chunk, Conversation, Preference, Question

logger = logging.getLogger(__name__)

LLAMAFACTORY_INFO = "dataset_info.json"

DOCUMENT_READERS: dict[str, Callable[[Path, Path], list[Chunk]]] = {
    **dict.fromkeys(DOCUMENT_SUFFIXES, read_document),
    **dict.fromkeys(HTML_SUFFIXES, read_html),
    **dict.fromkeys(PDF_SUFFIXES, read_pdf),
    **dict.fromkeys(DOCX_SUFFIXES, read_docx),
}
SUFFIXES = {
    "docs": tuple(DOCUMENT_READERS),
    "style": tuple(DOCUMENT_READERS),
    "faq": FAQ_SUFFIXES,
    "conversations": CONVERSATION_SUFFIXES + CHAT_EXPORT_SUFFIXES,
}
# Files people put under the wrong key, or formats with a better-supported twin.
_HINTS = {
    ".doc": "save it as .docx in Word",
    ".xls": "save it as .xlsx in Excel, or as CSV",
    ".rtf": "save it as .docx",
    ".odt": "save it as .docx",
    ".pptx": "export the slides as PDF",
    ".png": "an image: OCR is not supported, give the text as .md, .txt or a PDF with text",
    ".jpg": "an image: OCR is not supported, give the text as .md, .txt or a PDF with text",
    ".jpeg": "an image: OCR is not supported, give the text as .md, .txt or a PDF with text",
}


class Ingested(BaseModel, extra="forbid"):
    chunks: list[Chunk] = Field(default_factory=list)
    faq: list[Conversation] = Field(default_factory=list)
    conversations: list[Conversation] = Field(default_factory=list)
    preferences: list[Preference] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
    # Style material: read for its rules (data.style), never indexed or trained on as facts.
    style: list[Chunk] = Field(default_factory=list)


def read_sources(
    root: Path,
    sources: Sources,
    errors: list[SourceError] | None = None,
    withheld: frozenset[Path] = frozenset(),
) -> Ingested:
    """Read every file listed under every `sources.*` key but the `withheld` ones (resolved).

    With `errors=None` the first problem raises; with a list, every problem is
    appended to it and the good records are kept (skip-and-report).
    """
    result = Ingested()
    documents = listed_files(root, sources.docs, "docs", errors)
    for path in progress.track(documents, "reading documents"):
        if path.resolve() not in withheld:
            result.chunks += read_document_file(path, root, errors)
    for path in listed_files(root, sources.faq, "faq", errors):
        if path.resolve() not in withheld:
            result.faq += read_faq(path, root, errors)
    for path in listed_files(root, sources.conversations, "conversations", errors):
        if path.resolve() in withheld:
            continue
        if path.name == LLAMAFACTORY_INFO:
            chats, preferences = read_llamafactory(path, root, errors)
            result.conversations += chats
            result.preferences += preferences
        elif path.suffix.lower() in CHAT_EXPORT_SUFFIXES:
            result.conversations += read_chat_export(path, root, errors)
        else:
            result.conversations += read_conversations(path, root, errors)
    result.preferences += read_preference_sources(root, sources.preferences, errors)
    for path in listed_files(root, sources.style, "style", errors):
        result.style += read_document_file(path, root, errors)
    for entry in sources.questions:  # files only, as the eval stage reads them
        result.questions += read_questions(_resolve(root, entry), errors)
    return result


def read_document_file(path: Path, root: Path, errors: list[SourceError] | None) -> list[Chunk]:
    """The reader for the document's suffix, its SourceError reported like the others'."""
    try:
        return DOCUMENT_READERS[path.suffix.lower()](path, root)
    except SourceError as err:
        report(err, errors)
        return []


def declared_groups(path: Path) -> list[str] | None:
    """The groups a document names itself (front matter, `<meta name="groups">`); None when
    it names none or its format cannot (PDF, DOCX, plain text)."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return markdown_groups(path)
    if suffix in HTML_SUFFIXES:
        return html_groups(path)
    return None


def source_groups(path: Path, root: Path, rag: RagSettings) -> list[str]:
    """Who may read a source file (none = every key): the rule of docs/permissions.md.

    The one rule for the index, the dataset (`train.groups`) and the console's
    source list, so a file is never readable on one path and hidden on another.
    """
    return document_groups(
        declared_groups(path),
        source_path(path, root),
        folder_acl(path, root),
        rag.access,
        rag.folder_groups,
    )


def may_read(groups: list[str], holder: list[str]) -> bool:
    """Whether someone holding the groups `holder` may read what `groups` restricts."""
    return not groups or bool(set(groups) & set(holder))


def _resolve(root: Path, entry: str) -> Path:
    return Path(entry) if Path(entry).is_absolute() else root / entry


def listed_files(
    root: Path,
    entries: list[str],
    key: str,
    errors: list[SourceError] | None,
) -> list[Path]:
    """The files the entries under `sources.<key>` name, each once, in sorted order."""
    suffixes = SUFFIXES[key]
    found: dict[Path, Path] = {}
    for entry in entries:
        path = _resolve(root, entry)
        if path.is_dir():
            files = _walk(path, suffixes, llamafactory=key == "conversations")
        elif not path.exists():
            message = f"file or folder not found (listed under sources.{key} in shoptalk.yaml)"
            report(SourceError(path, None, message), errors)
            continue
        elif path.suffix.lower() not in suffixes:
            report(SourceError(path, None, _unsupported(path, key)), errors)
            continue
        else:
            files = [path]
        for file in files:
            found.setdefault(file.resolve(), file)
    return sorted(found.values(), key=lambda p: source_path(p, root))


def _unsupported(path: Path, key: str) -> str:
    """Which suffixes `sources.<key>` takes, and where this file belongs if elsewhere."""
    suffix = path.suffix.lower()
    message = f"expected a file ending in {', '.join(SUFFIXES[key])} under sources.{key}"
    message += f", found {path.suffix or 'no suffix'!r}"
    # A document is knowledge first: style material takes the same files, it is not suggested.
    elsewhere = [
        other for other, accepted in SUFFIXES.items() if suffix in accepted and other != "style"
    ]
    if elsewhere and key not in elsewhere:
        message += f" (list it under sources.{' or sources.'.join(elsewhere)})"
    elif suffix in _HINTS:
        message += f" ({_HINTS[suffix]})"
    return message


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
