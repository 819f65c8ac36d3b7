"""Excel workbooks (.xlsx) -> the text of every visible sheet, row by row.

    for sheet in read_sheets(Path("faq.xlsx")): print(sheet.name, sheet.rows[:2])

Only reads cells; what the rows mean (a FAQ header, its aliases) is the caller's
business (see faq.py). Needs openpyxl, imported here only when a workbook is read.
"""

from __future__ import annotations

import datetime as dt
import logging
import zipfile
from pathlib import Path
from typing import NamedTuple

from shoptalk.data.documents import check_office_file
from shoptalk.errors import MissingExtraError, SourceError

logger = logging.getLogger(__name__)


class Sheet(NamedTuple):
    name: str
    rows: list[tuple[int, list[str]]]  # (1-based row number, cell texts); empty rows left out


def read_sheets(path: Path) -> list[Sheet]:
    """The visible worksheets of `path`, in workbook order, with formulas as their last values."""
    try:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException
    except ImportError as err:
        raise MissingExtraError(
            f"{path}: reading .xlsx sheets needs openpyxl: pip install openpyxl"
        ) from err
    check_office_file(path, "an Excel .xlsx workbook", "Excel", ".xlsx")
    try:
        # read_only streams the sheet XML; data_only gives a formula's cached value.
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise SourceError(path, None, f"expected an Excel .xlsx workbook, found {err}") from err
    try:
        sheets = []
        for worksheet in workbook.worksheets:
            if worksheet.sheet_state != "visible":
                logger.info("%s: skipping hidden sheet %r", path, worksheet.title)
                continue
            worksheet.reset_dimensions()  # a wrong <dimension> tag would cut rows off
            rows = [
                (number, [cell_text(value) for value in values])
                for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1)
            ]
            rows = [(number, cells) for number, cells in rows if any(c.strip() for c in cells)]
            sheets.append(Sheet(worksheet.title, rows))
    finally:
        workbook.close()  # read-only workbooks keep the file open until closed
    return sheets


def cell_text(value: object) -> str:
    """A cell as the text a person sees: 3 not 3.0, dates without a midnight time."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)
