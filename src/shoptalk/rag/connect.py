"""The vector search server `rag` names, if any: Qdrant or pgvector.

Apart from the contract (`vector_store`), so the stores, which implement it,
and the code that picks one do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoptalk.config import RagSettings
    from shoptalk.rag.vector_store import VectorStore


def open_vector_store(rag: RagSettings, root: Path) -> VectorStore | None:
    """The server `rag` names, connected; None when the embedded index searches alone."""
    if rag.qdrant_url:
        from shoptalk.rag.store_qdrant import QdrantStore

        return QdrantStore.connect(rag.qdrant_url, root, rag.qdrant_collection, rag.qdrant_key_env)
    if rag.pgvector_url:
        from shoptalk.rag.store_pgvector import PgvectorStore

        return PgvectorStore.connect(rag.pgvector_url, rag.pgvector_table)
    return None
