"""Word documents (.docx) -> one `Chunk` per heading section.

    chunks = read_docx(Path("docs/policy.docx"), root=Path("."))

Paragraphs styled Heading 1-6 (or a style based on one; "Title" above them)
split the document and make the heading path, as `#` lines do in Markdown.
A section's `source` is `policy.docx#<its heading>`; text before the first
heading is `policy.docx` alone. Tables become `| a | b |` rows, list paragraphs
`- ` lines. Page headers, footers, comments and text boxes are not read. Needs
python-docx, imported when a document is read.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from shoptalk.data.documents import (
    Block,
    check_office_file,
    folder_acl,
    join_blocks,
    make_chunk,
    open_heading,
    source_path,
)
from shoptalk.data.tables import markdown_table
from shoptalk.errors import MissingExtraError, SourceError
from shoptalk.records import Chunk

DOCX_SUFFIXES = (".docx",)

_HEADING_STYLE = re.compile(r"heading ([1-6])")
_CONTENT_TYPE = re.compile(r"content type is '([^']+)'")
_Section = tuple[list[str], str, list[Block]]


def read_docx(path: Path, root: Path) -> list[Chunk]:
    """One chunk per heading section with text, in document order."""
    document = _open(path)
    relpath = source_path(path, root)
    acl = folder_acl(path, root)
    chunks = []
    for headings, title, blocks in _sections(document):
        if blocks:
            source = f"{relpath}#{title}" if title else relpath
            chunks.append(make_chunk(source, join_blocks(blocks), headings, acl))
    return chunks


def _open(path: Path) -> Any:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError as err:
        raise MissingExtraError(
            f"{path}: reading .docx documents needs python-docx: pip install python-docx"
        ) from err
    check_office_file(path, "a Word .docx document", "Word", ".docx")
    try:
        return docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as err:
        # ValueError: a zip of another kind, e.g. an .xlsx renamed to .docx
        content_type = _CONTENT_TYPE.search(str(err))
        found = f"a file of type {content_type.group(1)}" if content_type else f"{err}"
        raise SourceError(path, None, f"expected a Word .docx document, found {found}") from err


def _sections(document: Any) -> list[_Section]:
    """(heading path, own heading, blocks) per section; the first has no heading."""
    from docx.table import Table

    sections: list[_Section] = [([], "", [])]
    stack: list[tuple[int, str]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            if rows := markdown_table(_table_rows(item)):
                sections[-1][2].append(("\n".join(rows), None))
            continue
        text = item.text.strip()
        if not text:
            continue
        level = heading_level(item.style)
        if level is not None:
            stack = open_heading(stack, level, " ".join(text.split()))
            sections.append(([t for _, t in stack], stack[-1][1], []))
        elif _is_list_item(item):
            sections[-1][2].append((f"- {text}", "list"))
        else:
            sections[-1][2].append((text, None))
    return sections


def heading_level(style: Any) -> int | None:
    """1-6 for Heading 1-6 or a style based on one, 0 for Title, else None."""
    for _ in range(10):  # base styles chain; a cycle in a damaged file must not hang us
        if style is None:
            return None
        name = (style.name or "").casefold()
        if match := _HEADING_STYLE.fullmatch(name):
            return int(match.group(1))
        if name == "title":
            return 0
        style = getattr(style, "base_style", None)
    return None


def _is_list_item(paragraph: Any) -> bool:
    """A list style, or numbering set on the paragraph itself (python-docx has no API for it)."""
    name = (paragraph.style.name or "").casefold() if paragraph.style is not None else ""
    properties = getattr(paragraph._p, "pPr", None)
    return name.startswith("list") or getattr(properties, "numPr", None) is not None


def _table_rows(table: Any) -> list[list[str]]:
    """Cell texts per row; a cell spanning columns is named once, nested tables flattened."""
    rows = []
    for row in table.rows:
        cells = row.cells  # one per grid column: a merged cell repeats
        rows.append(
            [
                "" if i and cell._tc is cells[i - 1]._tc else _cell_text(cell)
                for i, cell in enumerate(cells)
            ]
        )
    return rows


def _cell_text(cell: Any) -> str:
    from docx.table import Table

    parts = []
    for item in cell.iter_inner_content():
        if isinstance(item, Table):
            parts += [" ".join(row) for row in _table_rows(item)]
        else:
            parts.append(item.text)
    return " ".join(" ".join(parts).split())
