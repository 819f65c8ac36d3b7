"""FAQ sheets (CSV/TSV, XLSX, JSONL/JSON) -> one question/answer `Conversation` per row.

    faq = read_faq(Path("faq.csv"), root=Path("."))

Column names are matched case-insensitively against QUESTION_KEYS / ANSWER_KEYS,
so an Excel sheet headed 问题,答案 works as well as question,answer. The header
is the first row that has both, within the first few non-empty rows (sheets
often open with a title). A workbook is read from its first sheet, or from all
of its sheets when every one of them has such a header; a row of sheet "FAQ" is
named `faq.xlsx[FAQ]:7`, in errors and in `source` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from shoptalk.data.chat_export import chat_columns
from shoptalk.data.documents import report, source_path
from shoptalk.data.formats import (
    ANSWER_KEYS,
    QUESTION_KEYS,
    find_key,
    messages_id,
    qa_messages,
    qa_pair,
    read_json_rows,
)
from shoptalk.data.read_xlsx import Sheet, read_sheets
from shoptalk.data.tables import csv_rows
from shoptalk.errors import SourceError
from shoptalk.records import Conversation

logger = logging.getLogger(__name__)

FAQ_SUFFIXES = (".csv", ".tsv", ".xlsx", ".jsonl", ".json")
HEADER_SEARCH = 5  # non-empty rows looked at for the header

# (label, line, where, row): label "[Sheet]" for a workbook sheet, else "".
_FaqRows = Iterator[tuple[str, int, str, dict]]
_Rows = list[tuple[int, list[str]]]
_Columns = list[tuple[str, int]]


def read_faq(path: Path, root: Path, errors: list[SourceError] | None = None) -> list[Conversation]:
    """Every row of a FAQ file as a two-turn conversation (kind "faq")."""
    suffix = path.suffix.lower()
    if suffix not in FAQ_SUFFIXES:
        expected = f"expected a FAQ file ending in {', '.join(FAQ_SUFFIXES)}"
        report(SourceError(path, None, f"{expected}, found {suffix or 'no suffix'!r}"), errors)
        return []
    relpath = source_path(path, root)
    records: list[Conversation] = []
    try:
        for label, line, where, row in _rows(path, suffix, errors):
            try:
                messages = qa_messages(*qa_pair(row))
            except ValueError as err:
                report(SourceError(f"{path}{label}", line, f"{where}{err}"), errors)
                continue
            source = f"{relpath}{label}:{line}"
            records.append(
                Conversation(
                    id=messages_id(source, messages), messages=messages, source=source, kind="faq"
                )
            )
    except SourceError as err:  # the file or sheet as a whole: binary, no header, broken CSV
        report(err, errors)
    return records


def _rows(path: Path, suffix: str, errors: list[SourceError] | None) -> _FaqRows:
    if suffix == ".xlsx":
        for sheet in _faq_sheets(path, read_sheets(path)):
            yield from _table_rows(f"[{sheet.name}]", f"{path}[{sheet.name}]", sheet.rows, "sheet")
    elif suffix in (".csv", ".tsv"):
        rows = csv_rows(path)
        yield from _table_rows("", str(path), _fields_as_in_header(path, rows, errors), "file")
    else:
        for line, where, row in read_json_rows(path, errors):
            yield "", line, where, row


def _faq_sheets(path: Path, sheets: list[Sheet]) -> list[Sheet]:
    """All non-empty sheets when each has a FAQ header, else the first (whose errors then show)."""
    filled = [sheet for sheet in sheets if sheet.rows]
    if not filled:
        found = "only empty sheets" if sheets else "no visible sheet"
        raise SourceError(path, None, f"{_HEADER_EXPECTED} on its first sheet, found {found}")
    headed = [sheet.name for sheet in filled if _find_header(sheet.rows) is not None]
    if len(headed) == len(filled):
        return filled
    if len(filled) > 1:
        logger.warning(
            "%s: reading only the first sheet %r: not every sheet has a question/answer "
            "header (these do: %s)",
            path,
            filled[0].name,
            ", ".join(headed) or "none",
        )
    return filled[:1]


_HEADER_EXPECTED = (
    f"expected a header with a question column (one of {', '.join(QUESTION_KEYS)}) "
    f"and an answer column (one of {', '.join(ANSWER_KEYS)})"
)


def _fields_as_in_header(path: Path, rows: _Rows, errors: list[SourceError] | None) -> _Rows:
    """The rows of a CSV file without those holding more fields than its header.

    Such a row almost always has an unquoted comma in a cell: `Do you ship
    abroad?,Yes, to 40 countries.` would otherwise train on the answer "Yes".
    Trailing empty fields (a spreadsheet's stray commas) are not counted.
    """
    header = _find_header(rows)
    if header is None:
        return rows  # _table_rows says what is missing
    width = len(rows[header[0]][1])
    kept = rows[: header[0] + 1]
    for line, cells in rows[header[0] + 1 :]:
        fields = len(cells)
        while fields > width and not cells[fields - 1].strip():
            fields -= 1
        if fields > width:
            message = (
                f"expected at most {width} fields as in the header, found {fields}: a cell "
                'holding a comma must be in double quotes, e.g. "Yes, to 40 countries."'
            )
            report(SourceError(path, line, message), errors)
            continue
        kept.append((line, cells))
    return kept


def _table_rows(label: str, where: str, rows: _Rows, what: str) -> _FaqRows:
    """The rows after the header as {question column: cell, answer column: cell}."""
    header = _find_header(rows)
    if header is None:
        raise _no_header(where, rows, what)
    index, columns = header
    for line, cells in rows[index + 1 :]:
        yield label, line, "", {name: (cells[i] if i < len(cells) else "") for name, i in columns}


def _find_header(rows: _Rows) -> tuple[int, _Columns] | None:
    """(index in `rows`, [(name, column)]) of the question/answer header, if one is near the top."""
    for index, (_, cells) in enumerate(rows[:HEADER_SEARCH]):
        question, answer = find_key(cells, QUESTION_KEYS), find_key(cells, ANSWER_KEYS)
        if question is not None and answer is not None:
            return index, [(question, cells.index(question)), (answer, cells.index(answer))]
    return None


def _no_header(where: str, rows: _Rows, what: str) -> SourceError:
    if not rows:
        return SourceError(where, 1, f"{_HEADER_EXPECTED}, found an empty {what}")
    line, cells = rows[0]
    found = [cell.strip() for cell in cells]
    if chat_columns(cells) is not None:
        return SourceError(
            where,
            line,
            f"{_HEADER_EXPECTED}, found a support-chat export (columns {found}): "
            "list it under sources.conversations in shoptalk.yaml, not sources.faq",
        )
    return SourceError(where, line, f"{_HEADER_EXPECTED}, found columns {found}")
