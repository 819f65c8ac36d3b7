from __future__ import annotations

import json

import pytest
import yaml
from rag_fakes import HANDBOOK, fake_embedder, write_rag_project

from shoptalk.errors import SourceError
from shoptalk.project import Project
from shoptalk.rag.index import index_folder, index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.store import load_index


def test_first_index_embeds_every_chunk_and_records_sources(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    embedder = fake_embedder()
    report = index_project(project, embedder)
    stored = load_index(index_folder(project))
    assert report.documents == 4
    assert report.chunks == len(stored.chunks) == stored.vectors.shape[0] == report.embedded
    assert report.reused == report.removed == 0
    assert len(embedder.model.embedded) == report.embedded
    sources = {c.source for c in stored.chunks}
    assert {
        "docs/handbook.md#Claims",
        "docs/handbook.md#Depots",
        "docs/hr/pay.md#Payroll",
    } <= sources
    claims = next(c for c in stored.chunks if c.source == "docs/handbook.md#Claims")
    assert claims.headings == ["Handbook", "Claims"]


def test_groups_come_from_front_matter_then_access_globs_else_everyone(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    index_project(project, fake_embedder())
    acl = {c.source.split("#")[0]: c.acl for c in load_index(index_folder(project)).chunks}
    assert acl == {
        "docs/handbook.md": [],
        "docs/hr/pay.md": ["hr"],
        "docs/legal.md": ["legal"],
        "docs/returns_zh.md": [],
    }


def test_folder_groups_restrict_documents_to_their_folder(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p", access={}, folder_groups=True))
    index_project(project, fake_embedder())
    acl = {c.source.split("#")[0]: c.acl for c in load_index(index_folder(project)).chunks}
    assert acl["docs/hr/pay.md"] == ["docs/hr"] and acl["docs/handbook.md"] == ["docs"]
    # Its front matter names `legal`, a group its folder does not give: it cannot widen it.
    assert acl["docs/legal.md"] == ["docs"]


def test_unchanged_documents_embed_nothing_and_load_no_model(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    first = index_project(project, fake_embedder())
    lazy = fake_embedder()
    lazy._model = None  # any use of the model would now try to load "fake" and fail
    again = index_project(project, lazy)
    assert (again.embedded, again.reused, again.removed) == (0, first.chunks, 0)


def test_a_changed_document_replaces_its_chunks_and_only_they_are_embedded(tmp_path):
    root = write_rag_project(tmp_path / "p")
    project = Project.open(root)
    index_project(project, fake_embedder())
    edited = HANDBOOK.replace("47 days", "30 days")
    (root / "docs" / "handbook.md").write_text(edited, encoding="utf-8")
    embedder = fake_embedder()
    report = index_project(project, embedder)
    stored = load_index(index_folder(project))
    texts = "\n".join(c.text for c in stored.chunks)
    assert "30 days" in texts and "47 days" not in texts, "no stale chunk survives"
    assert report.embedded == 1 and report.removed == 1
    assert len(embedder.model.embedded) == 1 and "30 days" in embedder.model.embedded[0]
    assert report.reused == report.chunks - 1


def test_a_deleted_document_removes_its_chunks(tmp_path):
    root = write_rag_project(tmp_path / "p")
    project = Project.open(root)
    index_project(project, fake_embedder())
    (root / "docs" / "legal.md").unlink()
    report = index_project(project, fake_embedder())
    stored = load_index(index_folder(project))
    assert report.documents == 3 and report.removed == 1 and report.embedded == 0
    assert not any(c.source.startswith("docs/legal.md") for c in stored.chunks)
    assert not any("Harbor" in c.text for c in stored.chunks)
    manifest = json.loads((index_folder(project) / "manifest.json").read_text())
    assert "docs/legal.md" not in manifest["documents"]


def test_changed_chunk_settings_rechunk_everything_but_reuse_identical_texts(tmp_path):
    root = write_rag_project(tmp_path / "p")
    index_project(Project.open(root), fake_embedder())
    rechunked = Project.open(write_rag_project(root, chunk_tokens=40, overlap_tokens=0))
    report = index_project(rechunked, fake_embedder())
    assert report.reused > 0, "sections short enough to stay whole are not embedded again"
    assert report.embedded > 0


def test_personal_data_in_documents_is_redacted_in_the_index(tmp_path):
    root = write_rag_project(tmp_path / "p")
    (root / "docs" / "contacts.md").write_text(
        "# Contacts\n\nThe night lead is jane.doe@privatemail.example, phone 139-1234-5678.\n",
        encoding="utf-8",
    )
    project = Project.open(root)
    index_project(project, fake_embedder())
    written = "".join(p.read_text(errors="ignore") for p in index_folder(project).iterdir())
    assert "jane.doe@privatemail.example" not in written and "139-1234-5678" not in written
    assert "<EMAIL_1>" in written


def test_an_incomplete_index_is_rebuilt(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    first = index_project(project, fake_embedder())
    chunks_file = index_folder(project) / "chunks.jsonl"
    lines = chunks_file.read_text().splitlines()
    chunks_file.write_text("\n".join(lines[:-1]) + "\n")  # as if a crash cut it short
    assert load_index(index_folder(project)) is None
    report = index_project(project, fake_embedder())
    assert report.chunks == first.chunks and report.embedded == first.chunks


def test_a_bad_document_is_skipped_and_reported_on_every_run(tmp_path):
    root = write_rag_project(tmp_path / "p")
    config = (root / "shoptalk.yaml").read_text()
    (root / "shoptalk.yaml").write_text(config + "data:\n  on_error: skip\n")
    (root / "docs" / "broken.md").write_bytes(b"# Broken\n\x00\x01 binary")
    project = Project.open(root)
    first = index_project(project, fake_embedder())
    second = index_project(project, fake_embedder())
    assert first.documents == second.documents == 4
    assert len(first.skipped) == len(second.skipped) == 1 and "broken.md" in second.skipped[0]


def test_front_matter_groups_named_like_the_folder_restrict_the_document(tmp_path):
    # The listed folder is `hr/` itself, so the folder's group and the front matter's are both "hr".
    root = write_rag_project(tmp_path / "p")
    (root / "hr").mkdir()
    (root / "hr" / "pay.md").write_text("---\ngroups: [hr]\n---\n# Pay\nOn the 25th.\n")
    (root / "hr" / "open.md").write_text("# Canteen\nOpen at noon.\n")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["sources"]["docs"] = ["hr"]
    config["rag"]["access"] = {}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    index_project(project, fake_embedder())
    acl = {c.source.split("#")[0]: c.acl for c in load_index(index_folder(project)).chunks}
    assert acl == {"hr/pay.md": ["hr"], "hr/open.md": []}


def test_a_document_whose_groups_cannot_be_told_is_never_indexed_open(tmp_path):
    root = write_rag_project(tmp_path / "p")
    (root / "docs" / "salaries.md").write_text("---\ngroups: []\n---\n# Salaries\nSecret.\n")
    (root / "docs" / "board.html").write_text(
        '<meta name="groups" content=" "><h1>Board</h1><p>Secret too.</p>'
    )
    with pytest.raises(SourceError, match="board.html: <meta name=.groups.> names no group"):
        index_project(Project.open(root), fake_embedder())
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["data"] = {"on_error": "skip"}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    report = index_project(Project.open(root), fake_embedder())
    sources = {c.source for c in load_index(index_folder(Project.open(root))).chunks}
    assert not any("salaries" in s or "board" in s for s in sources)
    assert len(report.skipped) == 2


FAQ = """question,answer
How long is the claim window?,Customers have 47 days to file a claim.
Who approves refunds?,Refunds over $500 are approved by the support lead.
"""


def test_faq_rows_are_chunks_with_their_line_and_the_files_groups(tmp_path):
    root = write_rag_project(tmp_path / "p")
    (root / "faq.csv").write_text(FAQ, encoding="utf-8")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["sources"]["faq"] = ["faq.csv"]
    config["rag"]["access"]["faq.csv"] = ["support"]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    embedder = fake_embedder()
    index_project(project, embedder)
    rows = [c for c in load_index(index_folder(project)).chunks if c.source.startswith("faq")]
    assert [(c.source, c.headings, c.acl) for c in rows] == [
        ("faq.csv:2", ["How long is the claim window?"], ["support"]),
        ("faq.csv:3", ["Who approves refunds?"], ["support"]),
    ]
    assert rows[1].text == "Refunds over $500 are approved by the support lead."

    index = open_index(project, embedder)
    question = "Who approves refunds over $500?"
    assert index.search(question, ["support"]).hits[0].chunk.source == "faq.csv:3"
    for groups in ([], ["hr"]):
        found = index.search(question, groups, top_k=50).hits
        assert not any(h.chunk.source.startswith("faq") for h in found)
