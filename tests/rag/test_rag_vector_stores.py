"""One contract for every vector search server that mirrors the index: Qdrant and pgvector.

Qdrant runs in its local mode (a folder); pgvector in a PostgreSQL started for
these tests on 127.0.0.1 (`postgres_server`). Each test skips, saying what to
install, when its server is not there.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from postgres_server import find_postgres, running_postgres
from rag_fakes import HANDBOOK, fake_embedder, write_rag_project

from shoptalk.project import Project
from shoptalk.rag.connect import open_vector_store
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.store import load_index
from shoptalk.rag.vector_store import VectorStore, row_key

_tables = itertools.count()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    bin_dir = find_postgres(extension="vector")
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL with the pgvector extension: install Debian's "
            "postgresql-<version>-pgvector (trixie and later) or the dev requirements (pgserver)"
        )
    with running_postgres(bin_dir) as url:
        yield url


@pytest.fixture(params=["qdrant", "pgvector"])
def server(request) -> dict[str, str]:
    """The `rag:` settings that select the server."""
    if request.param == "qdrant":
        pytest.importorskip("qdrant_client")
        return {"qdrant_url": "qdrant"}
    url = request.getfixturevalue("postgres_url")
    return {"pgvector_url": url, "pgvector_table": f"chunks_{next(_tables)}"}


def mirrored(project: Project) -> VectorStore:
    store = open_vector_store(project.config.rag, project.root)
    assert store is not None
    return store


def expected_rows(project: Project) -> set[str]:
    stored = load_index(project.state / "index")
    return {row_key(c, k) for c, k in zip(stored.chunks, stored.embedding_keys, strict=True)}


def test_the_server_holds_exactly_the_current_chunks(tmp_path, server):
    root = write_rag_project(tmp_path / "p", **server)
    project = Project.open(root)
    index_project(project, fake_embedder())
    store = mirrored(project)
    try:
        assert store.row_keys() == expected_rows(project)
        stored = load_index(project.state / "index")
        assert store.sync(stored.chunks, stored.vectors, stored.embedding_keys) == 0, (
            "an up-to-date server is not written to"
        )
    finally:
        store.close()

    (root / "docs" / "handbook.md").write_text(HANDBOOK.replace("47 days", "30 days"))
    (root / "docs" / "legal.md").unlink()
    index_project(project, fake_embedder())
    store = mirrored(project)
    try:
        assert store.row_keys() == expected_rows(project), "no stale row"
        assert len(store.row_keys()) == len(load_index(project.state / "index").chunks)
    finally:
        store.close()


def test_new_groups_replace_a_documents_rows(tmp_path, server):
    root = write_rag_project(tmp_path / "p", **server)
    index_project(Project.open(root), fake_embedder())
    # The handbook becomes readable by "ops" only; its text, so its chunk ids, stay the same.
    root = write_rag_project(
        tmp_path / "p", access={"docs/hr/*": ["hr"], "docs/handbook.md": ["ops"]}, **server
    )
    project = Project.open(root)
    index_project(project, fake_embedder())
    store = mirrored(project)
    try:
        assert store.row_keys() == expected_rows(project)
        query = fake_embedder().encode(["Oslo depot opens"])[0]
        found = {chunk_id for chunk_id, _ in store.search(query, [], 10)}
        handbook = {
            c.id for c in load_index(project.state / "index").chunks if "handbook" in c.source
        }
        assert found and not found & handbook, "the server filters by the new groups"
        assert handbook <= {chunk_id for chunk_id, _ in store.search(query, ["ops"], 10)}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("groups", "forbidden"), [([], ("docs/hr/", "docs/legal")), (["hr"], ("docs/legal",))]
)
def test_search_filters_by_groups_before_ranking(tmp_path, server, groups, forbidden):
    project = Project.open(write_rag_project(tmp_path / "p", **server))
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
        query = embedder.encode(["Harbor Freight dispute settles"])[0]
        only_public = index.vector_store.search(query, groups, 1)
        assert only_public, "one readable chunk, however far, beats no answer"
        assert not index.stored.chunks[index.rows[only_public[0][0]]].source.startswith(forbidden)
    finally:
        index.vector_store.close()
