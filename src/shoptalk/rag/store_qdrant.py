"""Qdrant as the vector search of the index, for collections too large for one process.

    rag:
      qdrant_url: http://127.0.0.1:6333     # a server; or a folder for Qdrant's local mode

The embedded files in `.shoptalk/index/` stay the record of what is indexed
(chunks, manifest, and the vectors as the embedding cache); Qdrant mirrors the
vectors with each chunk's groups, and after every `shoptalk index` holds exactly
the current chunks: points of changed or deleted documents are deleted, new
ones upserted, nothing else is touched. Searches filter by the caller's groups
inside Qdrant, before its ranking.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.errors import MissingExtraError
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np
    from qdrant_client import QdrantClient

# Qdrant point ids are UUIDs or integers: a chunk's id maps to one UUID, always the same.
_NAMESPACE = uuid.UUID("6f0c3a52-4d2e-4b8e-9a51-2f4f6c0d9e11")
_BATCH = 256


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, chunk_id))


def connect(url: str, root: Path, key_env: str = "QDRANT_API_KEY") -> QdrantClient:
    """A server by http(s) URL (its key from `key_env` if set), else local mode in a folder."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as err:
        raise MissingExtraError(
            "rag.qdrant_url needs the Qdrant client: pip install 'shoptalk[qdrant]'"
        ) from err
    if url.startswith(("http://", "https://")):
        return QdrantClient(url=url, api_key=os.environ.get(key_env))
    return QdrantClient(path=str(root / url))


def sync(client: QdrantClient, collection: str, chunks: list[Chunk], vectors: np.ndarray) -> int:
    """Make `collection` hold exactly `chunks`; returns how many points were written."""
    from qdrant_client import models

    if not client.collection_exists(collection):
        size = models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.COSINE)
        client.create_collection(collection, vectors_config=size)
    wanted = {point_id(c.id): row for row, c in enumerate(chunks)}
    present = _point_ids(client, collection)
    stale = sorted(present - set(wanted))
    if stale:
        client.delete(collection, points_selector=models.PointIdsList(points=stale))
    missing = [pid for pid in wanted if pid not in present]
    for start in range(0, len(missing), _BATCH):
        points = [
            models.PointStruct(
                id=pid,
                vector=vectors[wanted[pid]].tolist(),
                payload=_payload(chunks[wanted[pid]]),
            )
            for pid in missing[start : start + _BATCH]
        ]
        client.upsert(collection, points=points)
    return len(missing)


def _payload(chunk: Chunk) -> dict:
    # "public" marks chunks everyone may read: Qdrant cannot match an empty list.
    return {"chunk_id": chunk.id, "acl": chunk.acl, "public": not chunk.acl}


def _point_ids(client: QdrantClient, collection: str) -> set[str]:
    ids: set[str] = set()
    offset = None
    while True:
        points, offset = client.scroll(collection, limit=1024, offset=offset, with_payload=False)
        ids |= {str(p.id) for p in points}
        if offset is None:
            return ids


def search(
    client: QdrantClient, collection: str, vector: np.ndarray, groups: list[str] | None, limit: int
) -> list[tuple[str, float]]:
    """(chunk id, cosine similarity) of the nearest chunks `groups` may read, best first."""
    from qdrant_client import models

    allowed = None
    if groups is not None:
        conditions = [models.FieldCondition(key="public", match=models.MatchValue(value=True))]
        if groups:
            conditions.append(models.FieldCondition(key="acl", match=models.MatchAny(any=groups)))
        allowed = models.Filter(should=conditions)
    found = client.query_points(
        collection, query=vector.tolist(), query_filter=allowed, limit=limit, with_payload=True
    )
    return [(p.payload["chunk_id"], float(p.score)) for p in found.points]
