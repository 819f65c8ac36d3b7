import logging
import sys
from pathlib import Path

import pytest
from pdf_fixture import pdf_bytes

from shoptalk.data.read_pdf import read_pdf
from shoptalk.errors import MissingExtraError, SourceError


def write_pdf(path: Path, pages: list[list[str] | None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pdf_bytes(pages))
    return path


def test_each_page_is_a_chunk_whose_source_names_the_page(tmp_path):
    path = write_pdf(
        tmp_path / "docs" / "handbook.pdf",
        [["Returns (all stores)", "You have 30 days."], ["Shipping", "We ship daily."]],
    )

    chunks = read_pdf(path, tmp_path)

    assert [c.source for c in chunks] == ["docs/handbook.pdf#page=1", "docs/handbook.pdf#page=2"]
    assert [c.text for c in chunks] == [
        "Returns (all stores)\nYou have 30 days.",
        "Shipping\nWe ship daily.",
    ]
    assert all(c.headings == ["handbook"] and c.acl == ["docs"] for c in chunks)
    assert len({c.id for c in chunks}) == 2


def test_pdf_without_a_text_layer_says_so(tmp_path):
    path = write_pdf(tmp_path / "scan.pdf", [None, None])

    with pytest.raises(SourceError) as info:
        read_pdf(path, tmp_path)

    assert info.value.path == str(path)
    message = info.value.detail
    assert message.startswith("expected a PDF with a text layer, found none on any of its 2 pages")
    assert "(a scanned PDF?)" in message and "OCR is not supported" in message


def test_scanned_pages_among_text_pages_are_a_warning(tmp_path, caplog):
    path = write_pdf(tmp_path / "mixed.pdf", [["Cover text"], None, ["Back page"]])

    with caplog.at_level(logging.WARNING):
        chunks = read_pdf(path, tmp_path)

    assert [c.source for c in chunks] == ["mixed.pdf#page=1", "mixed.pdf#page=3"]
    assert "1 pages have no text layer (scanned?): 2" in caplog.text


def test_a_file_that_is_not_a_pdf_and_a_truncated_one(tmp_path):
    text = tmp_path / "notes.pdf"
    text.write_text("just some text saved with the wrong name\n")
    data = pdf_bytes([["one"], ["two"]])
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(SourceError) as not_pdf:
        read_pdf(text, tmp_path)
    with pytest.raises(SourceError) as truncated:
        read_pdf(cut, tmp_path)

    assert not_pdf.value.path == str(text)
    assert not_pdf.value.detail == "expected a PDF document (a %PDF- header), found other data"
    assert truncated.value.detail.startswith(
        "expected a PDF document, found a damaged or truncated"
    )


def test_missing_pypdf_names_the_pip_command(tmp_path, monkeypatch):
    path = write_pdf(tmp_path / "a.pdf", [["text"]])
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail

    with pytest.raises(MissingExtraError, match="pip install pypdf"):
        read_pdf(path, tmp_path)
