"""Qdrant as the vector search of the index, for collections too large for one process.

    rag:
      qdrant_url: http://127.0.0.1:6333     # a server; or a folder for Qdrant's local mode

Qdrant mirrors the vectors with each chunk's groups (see `vector_store` for
what a row is and when it is replaced); searches filter by the caller's groups
inside Qdrant, before its ranking.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.errors import MissingExtraError
from shoptalk.rag.vector_store import row_key
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np
    from qdrant_client import QdrantClient

# Qdrant point ids are UUIDs or integers: a row key maps to one UUID, always the same.
_NAMESPACE = uuid.UUID("6f0c3a52-4d2e-4b8e-9a51-2f4f6c0d9e11")
_BATCH = 256


def point_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


class QdrantStore:
    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    @classmethod
    def connect(
        cls, url: str, root: Path, collection: str, key_env: str = "QDRANT_API_KEY"
    ) -> QdrantStore:
        """A server by http(s) URL (its key from `key_env` if set), else local mode in a folder."""
        try:
            from qdrant_client import QdrantClient
        except ImportError as err:
            raise MissingExtraError(
                "rag.qdrant_url needs the Qdrant client: pip install 'shoptalk[qdrant]'"
            ) from err
        if url.startswith(("http://", "https://")):
            client = QdrantClient(url=url, api_key=os.environ.get(key_env))
        else:
            client = QdrantClient(path=str(root / url))
        return cls(client, collection)

    def sync(self, chunks: list[Chunk], vectors: np.ndarray, embedding_keys: list[str]) -> int:
        from qdrant_client import models

        if not self.client.collection_exists(self.collection):
            size = models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.COSINE)
            self.client.create_collection(self.collection, vectors_config=size)
        keys = [row_key(c, k) for c, k in zip(chunks, embedding_keys, strict=True)]
        wanted = {point_id(key): row for row, key in enumerate(keys)}
        present = self._point_ids()
        stale = sorted(present - set(wanted))
        if stale:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=stale))
        missing = [pid for pid in wanted if pid not in present]
        for start in range(0, len(missing), _BATCH):
            points = [
                models.PointStruct(
                    id=pid,
                    vector=vectors[wanted[pid]].tolist(),
                    payload=_payload(chunks[wanted[pid]], keys[wanted[pid]]),
                )
                for pid in missing[start : start + _BATCH]
            ]
            self.client.upsert(self.collection, points=points)
        return len(missing)

    def search(
        self, vector: np.ndarray, groups: list[str] | None, limit: int
    ) -> list[tuple[str, float]]:
        from qdrant_client import models

        allowed = None
        if groups is not None:
            conditions = [models.FieldCondition(key="public", match=models.MatchValue(value=True))]
            if groups:
                conditions.append(
                    models.FieldCondition(key="acl", match=models.MatchAny(any=groups))
                )
            allowed = models.Filter(should=conditions)
        found = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=allowed,
            limit=limit,
            with_payload=True,
        )
        return [(p.payload["chunk_id"], float(p.score)) for p in found.points]

    def row_keys(self) -> set[str]:
        return {payload.get("row_key", "") for payload in self._scroll(with_payload=True).values()}

    def close(self) -> None:
        self.client.close()  # local mode allows one client per folder: the server opens its own

    def _point_ids(self) -> set[str]:
        return set(self._scroll(with_payload=False))

    def _scroll(self, with_payload: bool) -> dict[str, dict]:
        points: dict[str, dict] = {}
        offset = None
        while True:
            page, offset = self.client.scroll(
                self.collection, limit=1024, offset=offset, with_payload=with_payload
            )
            points |= {str(p.id): p.payload or {} for p in page}
            if offset is None:
                return points


def _payload(chunk: Chunk, key: str) -> dict:
    # "public" marks chunks everyone may read: Qdrant cannot match an empty list.
    return {"chunk_id": chunk.id, "row_key": key, "acl": chunk.acl, "public": not chunk.acl}
