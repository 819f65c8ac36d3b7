"""The Qdrant mirror, in Qdrant's local mode (a folder, no server)."""

from __future__ import annotations

import pytest
from rag_fakes import HANDBOOK, fake_embedder, write_rag_project

from shoptalk.project import Project
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.store_qdrant import connect, point_id

pytest.importorskip("qdrant_client")


def points(project: Project) -> dict[str, str]:
    client = connect("qdrant", project.root)
    try:
        records, _ = client.scroll("shoptalk", limit=1000, with_payload=True)
    finally:
        client.close()
    return {str(r.id): r.payload["chunk_id"] for r in records}


def test_qdrant_holds_exactly_the_current_chunks(tmp_path):
    root = write_rag_project(tmp_path / "p", qdrant_url="qdrant")
    project = Project.open(root)
    index_project(project, fake_embedder())
    from shoptalk.rag.store import load_index

    stored = load_index(project.state / "index")
    assert points(project) == {point_id(c.id): c.id for c in stored.chunks}

    (root / "docs" / "handbook.md").write_text(HANDBOOK.replace("47 days", "30 days"))
    (root / "docs" / "legal.md").unlink()
    index_project(project, fake_embedder())
    stored = load_index(project.state / "index")
    assert points(project) == {point_id(c.id): c.id for c in stored.chunks}, "no stale point"


@pytest.mark.parametrize(
    ("groups", "forbidden"), [([], ("docs/hr/", "docs/legal")), (["hr"], ("docs/legal",))]
)
def test_qdrant_search_filters_by_groups(tmp_path, groups, forbidden):
    project = Project.open(write_rag_project(tmp_path / "p", qdrant_url="qdrant"))
    embedder = fake_embedder()
    index_project(project, embedder)
    index = open_index(project, embedder)
    try:
        for question in ("When are salaries paid?", "Harbor Freight dispute", "Oslo depot"):
            result = index.search(question, groups, top_k=10)
            assert result.hits
            assert not any(h.chunk.source.startswith(forbidden) for h in result.hits)
        everything = index.search("Harbor Freight dispute settles", None, top_k=10)
        assert everything.hits[0].chunk.source == "docs/legal.md#Open cases"
    finally:
        index.qdrant.close()
