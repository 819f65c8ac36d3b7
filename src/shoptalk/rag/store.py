"""The embedded index: three files in `.shoptalk/index/`, no server.

    chunks.jsonl    one `records.Chunk` per line
    vectors.npy     float32 (chunks x dimensions), row i embeds line i
    manifest.json   per document: its content hash and chunk ids; per chunk: its
                    embedding key; the settings the index was built with

Each file is written atomically and the manifest last; it records how many
chunks there are and a hash of their ids, so a crash between two files shows up
as a mismatch on loading (and `shoptalk index` simply rebuilds).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.artifacts import INDEX_MANIFEST, read_jsonl, write_json, write_jsonl
from shoptalk.errors import ShoptalkError
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np

FORMAT = 1


@dataclass
class DocumentEntry:
    hash: str
    chunk_ids: list[str]


@dataclass
class StoredIndex:
    chunks: list[Chunk]
    vectors: np.ndarray
    embedding_keys: list[str]
    documents: dict[str, DocumentEntry] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def ids_hash(chunks: list[Chunk]) -> str:
    return hashlib.sha256("\n".join(c.id for c in chunks).encode()).hexdigest()[:16]


def save_index(folder: Path, index: StoredIndex) -> None:
    import numpy as np

    write_jsonl(folder / "chunks.jsonl", index.chunks)
    buffer = io.BytesIO()
    np.save(buffer, index.vectors.astype(np.float32))
    _write_bytes(folder / "vectors.npy", buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "count": len(index.chunks),
        "ids_hash": ids_hash(index.chunks),
        "settings": index.settings,
        "documents": {
            path: {"hash": entry.hash, "chunk_ids": entry.chunk_ids}
            for path, entry in sorted(index.documents.items())
        },
        "embedding_keys": index.embedding_keys,
    }
    write_json(folder / INDEX_MANIFEST, manifest)


def load_index(folder: Path) -> StoredIndex | None:
    """The stored index, or None if there is none or it is incomplete."""
    import numpy as np

    manifest_path = folder / INDEX_MANIFEST
    if not manifest_path.is_file() or not (folder / "vectors.npy").is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    chunks = read_jsonl(folder / "chunks.jsonl", Chunk)
    vectors = np.load(folder / "vectors.npy")
    consistent = (
        manifest.get("format") == FORMAT
        and manifest["count"] == len(chunks) == vectors.shape[0] == len(manifest["embedding_keys"])
        and manifest["ids_hash"] == ids_hash(chunks)
    )
    if not consistent:
        return None
    documents = {
        path: DocumentEntry(entry["hash"], entry["chunk_ids"])
        for path, entry in manifest["documents"].items()
    }
    return StoredIndex(chunks, vectors, manifest["embedding_keys"], documents, manifest["settings"])


def index_exists(folder: Path) -> bool:
    """Whether `folder` holds an index (checked whole only when it is opened)."""
    return (folder / "manifest.json").is_file() and (folder / "vectors.npy").is_file()


def require_index(folder: Path, project_dir: Path) -> StoredIndex:
    index = load_index(folder)
    if index is None:
        raise ShoptalkError(
            f"No retrieval index in {folder} (or an incomplete one): "
            f"run `shoptalk index {project_dir}` first."
        )
    return index


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
