import sys
from pathlib import Path

import docx
import openpyxl
import pytest
from docx.enum.style import WD_STYLE_TYPE

from shoptalk.data.read_docx import read_docx
from shoptalk.errors import MissingExtraError, SourceError


def save(document, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


def policy_document():
    document = docx.Document()
    document.add_paragraph("Read this before answering customers.")
    document.add_heading("Returns", level=1)
    document.add_paragraph("Unused items within 30 days.")
    document.add_paragraph("keep the receipt", style="List Bullet")
    document.add_paragraph("pack it well", style="List Bullet")
    document.add_heading("Fees", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, cells in zip(
        table.rows, [["plan", "fee"], ["basic", "5 | EUR"], ["pro", "free"]], strict=True
    ):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_paragraph("Fees are refunded for damaged goods.")
    document.add_heading("Contact", level=1)
    document.add_paragraph("support@example.com")
    return document


def test_heading_styles_split_the_document_and_tables_become_rows(tmp_path):
    path = save(policy_document(), tmp_path / "docs" / "policy.docx")

    chunks = read_docx(path, tmp_path)

    assert [c.source for c in chunks] == [
        "docs/policy.docx",  # before the first heading
        "docs/policy.docx#Returns",
        "docs/policy.docx#Fees",
        "docs/policy.docx#Contact",
    ]
    assert [c.headings for c in chunks] == [[], ["Returns"], ["Returns", "Fees"], ["Contact"]]
    assert chunks[1].text == "Unused items within 30 days.\n\n- keep the receipt\n- pack it well"
    assert chunks[2].text == (
        "| plan | fee |\n| --- | --- |\n| basic | 5 \\| EUR |\n| pro | free |\n\n"
        "Fees are refunded for damaged goods."
    )
    assert all(c.acl == ["docs"] for c in chunks)


def test_custom_heading_style_title_and_merged_cells(tmp_path):
    document = docx.Document()
    custom = document.styles.add_style("Company Heading", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 2"]
    document.add_paragraph("Staff handbook", style="Title")
    document.add_paragraph("Welcome.")
    document.add_paragraph("Holidays", style="Company Heading")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "period"
    table.cell(0, 2).text = "days"
    for cell, text in zip(table.rows[1].cells, ["summer", "July", "10"], strict=True):
        cell.text = text
    path = save(document, tmp_path / "handbook.docx")

    chunks = read_docx(path, tmp_path)

    assert [c.headings for c in chunks] == [["Staff handbook"], ["Staff handbook", "Holidays"]]
    assert chunks[1].source == "handbook.docx#Holidays"
    assert chunks[1].text == "| period |  | days |\n| --- | --- | --- |\n| summer | July | 10 |"


def test_old_word_file_and_other_zips_are_clear_errors(tmp_path):
    old = tmp_path / "old.docx"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    text = tmp_path / "text.docx"
    text.write_text("not a document")

    with pytest.raises(SourceError) as old_info:
        read_docx(old, tmp_path)
    with pytest.raises(SourceError) as text_info:
        read_docx(text, tmp_path)

    assert old_info.value.detail == (
        "expected a Word .docx document, found an old Word 97-2003 file or a "
        "password-protected one (open it in Word and save it as .docx without a password)"
    )
    assert (
        text_info.value.detail == "expected a Word .docx document (a zip archive), found other data"
    )


def test_an_excel_file_renamed_docx(tmp_path):
    path = tmp_path / "sheet.docx"
    openpyxl.Workbook().save(path)

    with pytest.raises(SourceError) as info:
        read_docx(path, tmp_path)

    assert info.value.detail == (
        "expected a Word .docx document, found a file of type "
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    )


def test_missing_python_docx_names_the_pip_command(tmp_path, monkeypatch):
    path = save(policy_document(), tmp_path / "policy.docx")
    monkeypatch.setitem(sys.modules, "docx", None)

    with pytest.raises(MissingExtraError, match="pip install python-docx"):
        read_docx(path, tmp_path)
