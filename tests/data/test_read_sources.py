"""Every reader through `read_sources`: suffixes registered, misplaced files pointed home."""

import json
import shutil
from pathlib import Path

import docx
import openpyxl
import pytest
from pdf_fixture import pdf_bytes

from shoptalk.config import Sources
from shoptalk.data.faq import read_faq
from shoptalk.data.formats import read_conversations
from shoptalk.data.sources import read_sources
from shoptalk.errors import SourceError

CHAT_EXPORT = "conversation_id,role,text\nc1,customer,Hi\nc1,agent,Hello\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "docs" / "a.md", "# Hours\n9-17.\n")
    write(tmp_path / "docs" / "b.html", "<title>Shipping</title><p>Daily.</p><footer>x</footer>")
    write(tmp_path / "docs" / "c.pdf", pdf_bytes([["Page one"], ["Page two"]]))
    document = docx.Document()
    document.add_heading("Warranty", level=1)
    document.add_paragraph("Two years.")
    document.save(str(tmp_path / "docs" / "d.docx"))
    book = openpyxl.Workbook()
    book.active.append(["问题", "答案"])
    book.active.append(["几点开门？", "九点。"])
    book.save(tmp_path / "faq.xlsx")
    write(tmp_path / "chats" / "export.csv", CHAT_EXPORT)
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    write(tmp_path / "chats" / "more.jsonl", json.dumps(chat) + "\n")
    return tmp_path


def test_every_new_format_is_read_from_its_folder(project):
    result = read_sources(
        project, Sources(docs=["docs"], faq=["faq.xlsx"], conversations=["chats"])
    )

    assert [c.source for c in result.chunks] == [
        "docs/a.md#Hours",
        "docs/b.html#Shipping",
        "docs/c.pdf#page=1",
        "docs/c.pdf#page=2",
        "docs/d.docx#Warranty",
    ]
    assert [c.source for c in result.faq] == ["faq.xlsx[Sheet]:2"]
    assert [c.source for c in result.conversations] == ["chats/export.csv:2", "chats/more.jsonl:1"]


@pytest.mark.parametrize(
    ("key", "name", "hint"),
    [
        ("docs", "faq.xlsx", "(list it under sources.faq)"),
        ("docs", "chats/export.csv", "(list it under sources.faq or sources.conversations)"),
        ("faq", "docs/c.pdf", "(list it under sources.docs)"),
        ("docs", "old.doc", "(save it as .docx in Word)"),
        ("faq", "old.xls", "(save it as .xlsx in Excel, or as CSV)"),
    ],
)
def test_unsupported_suffix_says_where_the_file_belongs(project, key, name, hint):
    write(project / "old.doc", b"\xd0\xcf\x11\xe0")
    write(project / "old.xls", b"\xd0\xcf\x11\xe0")
    sources = {"docs": [], "faq": [], "conversations": []} | {key: [name]}

    with pytest.raises(SourceError) as info:
        read_sources(project, Sources(**sources))

    accepted = {
        "docs": ".md, .markdown, .txt, .html, .htm, .pdf, .docx",
        "faq": ".csv, .tsv, .xlsx, .jsonl, .json",
    }[key]
    suffix = Path(name).suffix
    assert info.value.detail == (
        f"expected a file ending in {accepted} under sources.{key}, found '{suffix}' {hint}"
    )


def test_faq_rejects_a_chat_export_and_points_to_conversations(project):
    path = project / "chats" / "export.csv"

    with pytest.raises(SourceError) as info:
        read_faq(path, project)

    assert info.value.line == 1
    assert info.value.detail.endswith(
        "found a support-chat export (columns ['conversation_id', 'role', 'text']): "
        "list it under sources.conversations in shoptalk.yaml, not sources.faq"
    )


def test_bad_files_of_every_kind_are_collected_not_fatal(project):
    write(project / "docs" / "scan.pdf", pdf_bytes([None]))
    write(project / "docs" / "logo.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(project / "docs" / "broken.docx", "not a zip")
    write(project / "docs" / "bin.html", b"\x00\x01\x02")
    shutil.copy(project / "chats" / "export.csv", project / "faq.csv")
    errors: list[SourceError] = []

    result = read_sources(
        project,
        Sources(docs=["docs"], faq=["faq.xlsx", "faq.csv"], conversations=["chats"]),
        errors,
    )

    assert len(result.chunks) == 5 and len(result.faq) == 1 and len(result.conversations) == 2
    assert sorted(Path(e.path).name for e in errors) == [
        "bin.html",
        "broken.docx",
        "faq.csv",
        "logo.md",
        "scan.pdf",
    ]
    [logo] = [e for e in errors if e.path.endswith("logo.md")]
    assert logo.detail.startswith("expected a UTF-8 text document, found binary data")


def test_a_truncated_jsonl_line_still_names_the_line(tmp_path):
    row = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    )
    path = write(tmp_path / "chats.jsonl", f"{row}\n{row}\n{row[: len(row) // 2]}")  # cut off

    with pytest.raises(SourceError) as info:
        read_conversations(path, tmp_path)

    assert (info.value.path, info.value.line) == (str(path), 3)
    assert info.value.detail.startswith("expected a JSON object, found invalid JSON: ")
