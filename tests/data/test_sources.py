import json
import shutil
from pathlib import Path

import pytest

from shoptalk.config import Sources
from shoptalk.data.sources import Ingested, read_sources
from shoptalk.errors import SourceError

PEER_DATA = Path(__file__).resolve().parents[3] / "shared" / "peer-data" / "llamafactory"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "docs" / "b.md", "# Shipping\nWe ship daily.\n")
    write(tmp_path / "docs" / "a" / "returns.md", "# Returns\n## Window\n30 days.\n")
    write(tmp_path / "docs" / "notes.txt", "Opening hours: 9-17.\n")
    write(tmp_path / "docs" / "logo.svg", "<svg/>")  # not a document: skipped with a warning
    write(tmp_path / "docs" / ".drafts" / "secret.md", "# Secret\nnot ready\n")
    write(tmp_path / ".shoptalk" / "cache.md", "# Cache\nour own output\n")
    write(tmp_path / "faq.csv", "question,answer\nOpen on Sunday?,No.\n")
    chat = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    write(tmp_path / "chats" / "support.jsonl", json.dumps(chat) + "\n")
    return tmp_path


def test_read_sources_reads_every_kind_of_source_in_sorted_order(project):
    result = read_sources(
        project, Sources(docs=["docs"], faq=["faq.csv"], conversations=["chats/"])
    )

    assert isinstance(result, Ingested)
    assert [c.source for c in result.chunks] == [
        "docs/a/returns.md#Window",
        "docs/b.md#Shipping",
        "docs/notes.txt:1",
    ]
    assert result.chunks[0].headings == ["Returns", "Window"]
    assert result.chunks[0].acl == ["docs/a"]
    assert [c.source for c in result.faq] == ["faq.csv:2"]
    assert [c.source for c in result.conversations] == ["chats/support.jsonl:1"]
    assert result.preferences == []


def test_hidden_folders_and_shoptalk_output_are_never_read(project):
    result = read_sources(project, Sources(docs=["."], faq=[], conversations=[]))

    sources = [c.source for c in result.chunks]
    assert not any(".drafts" in s or ".shoptalk" in s for s in sources)
    assert sources == ["docs/a/returns.md#Window", "docs/b.md#Shipping", "docs/notes.txt:1"]


def test_same_sources_give_the_same_records(project):
    first = read_sources(
        project, Sources(docs=["docs/b.md", "docs"], faq=["faq.csv"], conversations=["chats"])
    )
    second = read_sources(
        project, Sources(docs=["docs", "docs/b.md"], faq=["faq.csv"], conversations=["chats"])
    )

    assert first == second
    assert len(first.chunks) == 3  # docs/b.md listed twice is read once


def test_missing_source_names_the_yaml_key(project):
    with pytest.raises(SourceError) as info:
        read_sources(project, Sources(docs=[], faq=["faq/missing.csv"], conversations=[]))

    assert info.value.path == str(project / "faq" / "missing.csv")
    assert info.value.detail == (
        "file or folder not found (listed under sources.faq in shoptalk.yaml)"
    )


def test_unsupported_suffix_lists_the_supported_ones(project):
    with pytest.raises(SourceError) as info:
        read_sources(project, Sources(docs=["docs/logo.svg"], faq=[], conversations=[]))

    assert ".md, .markdown, .txt" in info.value.detail
    assert "'.svg'" in info.value.detail


def test_skip_and_report_across_files(project):
    write(project / "faq.csv", "question,answer\nOpen on Sunday?,No.\nAnd Monday?,\n")
    (project / "docs" / "scan.md").write_bytes(b"\x00\x01binary")
    errors: list[SourceError] = []

    result = read_sources(
        project, Sources(docs=["docs", "gone"], faq=["faq.csv"], conversations=["chats"]), errors
    )

    assert len(result.chunks) == 3 and len(result.faq) == 1 and len(result.conversations) == 1
    assert sorted((Path(e.path).name, e.line) for e in errors) == [
        ("faq.csv", 3),
        ("gone", None),
        ("scan.md", None),
    ]


def test_llamafactory_folder_is_read_through_its_dataset_info(tmp_path):
    if not PEER_DATA.is_dir():
        pytest.skip(f"peer data not found at {PEER_DATA}")
    shutil.copytree(PEER_DATA, tmp_path / "lf")

    by_folder = read_sources(tmp_path, Sources(docs=[], faq=[], conversations=["lf"]))
    by_file = read_sources(
        tmp_path, Sources(docs=[], faq=[], conversations=["lf/dataset_info.json"])
    )

    assert len(by_folder.conversations) == 999 + 1000 + 91 + 300
    assert len(by_folder.preferences) == 300
    assert by_folder == by_file
