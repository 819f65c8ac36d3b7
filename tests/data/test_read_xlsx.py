import datetime as dt
import logging
import sys
from pathlib import Path

import openpyxl
import pytest

from shoptalk.data.faq import read_faq
from shoptalk.data.read_xlsx import read_sheets
from shoptalk.errors import MissingExtraError, SourceError


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A workbook with one sheet per entry, rows written from A1 (None leaves a cell empty)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def pairs(conversations):
    return [(c.messages[0].content, c.messages[1].content) for c in conversations]


CHINESE_FAQ = [
    ["客服常见问题（2024 版）", None, None],  # a title row above the header
    [None, None, None],
    ["编号", "问题", "答案"],
    [1, "怎么退货？", "七天内在订单页点击“退货”。"],
    [2, "运费谁付？", None],  # the error row: no answer
    [None, None, None],
    [3, "几点开门？", 9],  # a number typed into Excel is a float: shown as 9, not 9.0
]


def test_chinese_header_error_row_and_sheet_in_source(tmp_path):
    path = workbook(tmp_path / "faq" / "faq.xlsx", {"常见问题": CHINESE_FAQ})
    errors: list[SourceError] = []

    faq = read_faq(path, tmp_path, errors)

    assert pairs(faq) == [("怎么退货？", "七天内在订单页点击“退货”。"), ("几点开门？", "9")]
    assert [c.source for c in faq] == ["faq/faq.xlsx[常见问题]:4", "faq/faq.xlsx[常见问题]:7"]
    assert all(c.kind == "faq" for c in faq)
    [error] = errors
    assert (error.path, error.line) == (f"{path}[常见问题]", 5)
    assert str(error) == f"{path}[常见问题]:5: expected a non-empty '答案', found an empty string"


def test_the_first_error_raises_without_an_errors_list(tmp_path):
    path = workbook(tmp_path / "faq.xlsx", {"Sheet1": CHINESE_FAQ})

    with pytest.raises(SourceError, match=r"faq\.xlsx\[Sheet1\]:5: expected a non-empty '答案'"):
        read_faq(path, tmp_path)


def test_all_sheets_are_read_when_each_has_the_header(tmp_path):
    path = workbook(
        tmp_path / "faq.xlsx",
        {
            "Shipping": [["Question", "Answer"], ["Ship abroad?", "Yes, EU only."]],
            "Returns": [["q", "a"], ["Return window?", "30 days."]],
            "Empty": [],
        },
    )

    faq = read_faq(path, tmp_path)

    assert pairs(faq) == [("Ship abroad?", "Yes, EU only."), ("Return window?", "30 days.")]
    assert [c.source for c in faq] == ["faq.xlsx[Shipping]:2", "faq.xlsx[Returns]:2"]


def test_only_the_first_sheet_when_another_is_not_a_faq(tmp_path, caplog):
    path = workbook(
        tmp_path / "faq.xlsx",
        {
            "FAQ": [["question", "answer"], ["Open on Sunday?", "No."]],
            "Notes": [["todo", "owner"], ["translate", "Ann"]],
        },
    )

    with caplog.at_level(logging.WARNING):
        faq = read_faq(path, tmp_path)

    assert [c.source for c in faq] == ["faq.xlsx[FAQ]:2"]
    assert "reading only the first sheet 'FAQ'" in caplog.text


def test_first_sheet_without_a_header_names_the_sheet_and_row(tmp_path):
    path = workbook(tmp_path / "faq.xlsx", {"Data": [[None], ["id", "text"], ["1", "hello"]]})

    with pytest.raises(SourceError) as info:
        read_faq(path, tmp_path)

    assert (info.value.path, info.value.line) == (f"{path}[Data]", 2)
    assert info.value.detail.endswith("found columns ['id', 'text']")


def test_cells_read_as_a_person_sees_them(tmp_path):
    path = workbook(
        tmp_path / "book.xlsx",
        {"S": [["when", "amount", "ok"], [dt.datetime(2024, 5, 1), 3.5, True]]},
    )

    [sheet] = read_sheets(path)

    assert sheet == ("S", [(1, ["when", "amount", "ok"]), (2, ["2024-05-01", "3.5", "True"])])


def test_old_excel_file_is_a_clear_error(tmp_path):
    path = tmp_path / "faq.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)

    with pytest.raises(SourceError, match="an old Excel 97-2003 file or a password-protected one"):
        read_faq(path, tmp_path)


def test_missing_openpyxl_names_the_pip_command(tmp_path, monkeypatch):
    path = workbook(tmp_path / "faq.xlsx", {"FAQ": [["q", "a"], ["Q", "A"]]})
    monkeypatch.setitem(sys.modules, "openpyxl", None)

    with pytest.raises(MissingExtraError, match="pip install openpyxl"):
        read_faq(path, tmp_path)
