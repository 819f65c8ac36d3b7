"""A vector search server that mirrors the embedded index: Qdrant or pgvector, chosen by URL.

    rag:
      qdrant_url: http://127.0.0.1:6333                    # or a folder: Qdrant's local mode
      pgvector_url: postgresql://shoptalk@db.internal/rag  # or this: PostgreSQL + pgvector

The files in `.shoptalk/index/` stay the record of what is indexed; a server
only answers "which chunks are nearest to this vector, among those these groups
may read". After every `shoptalk index` it holds exactly one row per current
chunk: a row is named by its chunk, its embedding and its groups (`row_key`),
so a chunk whose embedding model or groups changed gets a new row and the old
one is deleted like the row of a deleted document. Nothing else is touched.

This module is the contract both stores implement; `connect.open_vector_store`
picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shoptalk.data.documents import content_id
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np


class VectorStore(Protocol):
    def sync(self, chunks: list[Chunk], vectors: np.ndarray, embedding_keys: list[str]) -> int:
        """Hold exactly these chunks; returns how many rows were written."""
        ...

    def search(
        self, vector: np.ndarray, groups: list[str] | None, limit: int
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the nearest chunks `groups` may read, best first."""
        ...

    def row_keys(self) -> set[str]:
        """The `row_key` of every row the server holds."""
        ...

    def close(self) -> None: ...


def row_key(chunk: Chunk, embedding_key: str) -> str:
    """Changes when the chunk's text, its embedding or its groups change."""
    return content_id(chunk.id, embedding_key, *sorted(chunk.acl))
