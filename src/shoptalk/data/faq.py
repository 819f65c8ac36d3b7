"""FAQ sheets (CSV/TSV, JSONL/JSON) -> one question/answer `Conversation` per row.

    faq = read_faq(Path("faq.csv"), root=Path("."))

Column names are matched case-insensitively against QUESTION_KEYS / ANSWER_KEYS,
so an Excel sheet headed 问题,答案 works as well as question,answer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from shoptalk.data.documents import decode_text, report, source_path
from shoptalk.data.formats import (
    ANSWER_KEYS,
    QUESTION_KEYS,
    find_key,
    messages_id,
    qa_messages,
    qa_pair,
    read_json_rows,
)
from shoptalk.errors import SourceError
from shoptalk.records import Conversation

FAQ_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


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
        rows = _table_rows(path) if suffix in (".csv", ".tsv") else read_json_rows(path, errors)
        for line, where, row in rows:
            try:
                messages = qa_messages(*qa_pair(row))
            except ValueError as err:
                report(SourceError(path, line, f"{where}{err}"), errors)
                continue
            source = f"{relpath}:{line}"
            records.append(
                Conversation(
                    id=messages_id(source, messages), messages=messages, source=source, kind="faq"
                )
            )
    except SourceError as err:  # the file as a whole: binary, no header, broken CSV
        report(err, errors)
    return records


_HEADER_EXPECTED = (
    f"expected a header with a question column (one of {', '.join(QUESTION_KEYS)}) "
    f"and an answer column (one of {', '.join(ANSWER_KEYS)})"
)


def _table_rows(path: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(line where the row starts, "", {question column: cell, answer column: cell}).

    The csv module joins quoted multi-line cells, so the starting line is the
    line after the one the previous row ended on.
    """
    text = decode_text(path, "text file")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, text))
    columns: list[tuple[str, int]] | None = None
    end_of_previous = 0
    try:
        for cells in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and the all-empty rows spreadsheets leave behind
            if columns is None:
                columns = _qa_columns(path, line, cells)
                continue
            yield line, "", {name: (cells[i] if i < len(cells) else "") for name, i in columns}
    except csv.Error as err:
        raise SourceError(path, reader.line_num, f"expected valid CSV, found {err}") from err
    if columns is None:
        raise SourceError(path, 1, f"{_HEADER_EXPECTED}, found an empty file")


def _qa_columns(path: Path, line: int, header: list[str]) -> list[tuple[str, int]]:
    """[(name, index)] of the question and answer columns of `header`."""
    question, answer = find_key(header, QUESTION_KEYS), find_key(header, ANSWER_KEYS)
    if question is None or answer is None:
        found = [cell.strip() for cell in header]
        raise SourceError(path, line, f"{_HEADER_EXPECTED}, found columns {found}")
    return [(question, header.index(question)), (answer, header.index(answer))]


def _delimiter(path: Path, text: str) -> str:
    """Tab for .tsv; for .csv whichever of , ; tab the header uses most (Excel varies by locale)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = next((line for line in text.split("\n") if line.strip()), "")
    return max((",", ";", "\t"), key=header.count)
