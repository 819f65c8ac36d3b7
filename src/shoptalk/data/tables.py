"""Tables shared by the readers: CSV rows with their line numbers, Markdown table rows.

for line, cells in csv_rows(Path("faq.csv")): ...
text = markdown_table([["plan", "days"], ["basic", "14"]])
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from shoptalk.data.documents import decode_text
from shoptalk.errors import SourceError


def csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line where the row starts, cells) for each row with a non-blank cell.

    The csv module joins quoted multi-line cells, so the starting line is the
    line after the one the previous row ended on.
    """
    text = decode_text(path, "text file")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, text))
    rows: list[tuple[int, list[str]]] = []
    end_of_previous = 0
    try:
        for cells in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if any(cell.strip() for cell in cells):  # not the all-empty rows spreadsheets leave
                rows.append((line, cells))
    except csv.Error as err:
        raise SourceError(path, reader.line_num, f"expected valid CSV, found {err}") from err
    return rows


def _delimiter(path: Path, text: str) -> str:
    """Tab for .tsv; for .csv whichever of , ; tab the header uses most (Excel varies by locale)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = next((line for line in text.split("\n") if line.strip()), "")
    return max((",", ";", "\t"), key=header.count)


def markdown_table(rows: list[list[str]]) -> list[str]:
    """`| a | b |` lines, the first row taken as the header; short rows padded."""
    rows = [[_cell(cell) for cell in row] for row in rows if any(c.strip() for c in row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join(["---"] * width) + " |")
    return lines


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row: keep both inside it.
    return " ".join(text.split()).replace("|", "\\|")
