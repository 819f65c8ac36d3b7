"""The index stage: the project's documents and FAQ rows -> chunks + vectors in `.shoptalk/index/`.

    report = index_project(project)       # `shoptalk index DIR`, and a stage of `shoptalk build`

Incremental: a document whose bytes (and the settings) did not change keeps its
chunks and vectors without being read again; a changed one is re-read and its
old chunks replaced; a deleted one's chunks are removed. Vectors are reused by
the hash of the text they embed, so an edit to one section of a long document
embeds only that section's chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.artifacts import ABSTAIN_RULE, read_json
from shoptalk.config import RagSettings, ShoptalkConfig
from shoptalk.data.documents import content_id, source_path
from shoptalk.data.faq import read_faq
from shoptalk.data.pii import redact
from shoptalk.data.sources import listed_files, read_document_file, source_groups
from shoptalk.errors import SourceError
from shoptalk.modeling.embed import Embedder, load_embedder
from shoptalk.rag.abstain import AbstainRule, load_rule, save_rule
from shoptalk.rag.chunk import chunk_section, searchable_text
from shoptalk.rag.connect import open_vector_store
from shoptalk.rag.store import DocumentEntry, StoredIndex, load_index, save_index
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np

    from shoptalk.project import Project

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    documents: int
    chunks: int
    embedded: int
    reused: int
    removed: int
    skipped: list[str]
    folder: Path
    rule: AbstainRule | None = None  # the abstention rule written beside the index

    def summary(self) -> str:
        return (
            f"{self.documents} documents, {self.chunks} chunks: {self.embedded} embedded, "
            f"{self.reused} reused, {self.removed} removed{abstention_summary(self.rule)}"
        )


def index_folder(project: Project) -> Path:
    return project.index


def index_project(project: Project, embedder: Embedder | None = None) -> IndexReport:
    rag = project.config.rag
    embedder = embedder or load_embedder(rag.embedding_model, project.root, rag.batch_size)
    return build_index(project.config, project.root, index_folder(project), embedder)


def build_index(cfg: ShoptalkConfig, root: Path, folder: Path, embedder: Embedder) -> IndexReport:
    """Bring the index in `folder` up to date with `cfg.sources.docs`."""
    settings = index_settings(cfg, embedder)
    old = load_index(folder)
    if old is None or old.settings != settings:
        old_documents: dict[str, DocumentEntry] = {}
    else:
        old_documents = old.documents
    old_chunks = {c.id: c for c in old.chunks} if old else {}
    errors: list[SourceError] | None = [] if cfg.data.on_error == "skip" else None
    chunks: list[Chunk] = []
    documents: dict[str, DocumentEntry] = {}
    # The files `sources.docs` (and `sources.faq`) name, listed as read_sources() lists them.
    files = [(p, read_chunks) for p in listed_files(root, cfg.sources.docs, "docs", errors)]
    if cfg.rag.index_faq:
        files += [(p, faq_chunks) for p in listed_files(root, cfg.sources.faq, "faq", errors)]
    for path, reader in progress.track(files, "index: reading documents"):
        name = source_path(path, root)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        entry = old_documents.get(name)
        if entry is not None and entry.hash == digest:
            doc_chunks = [old_chunks[i] for i in entry.chunk_ids]
        else:
            failed_before = len(errors or [])
            doc_chunks = reader(path, root, cfg, embedder, errors)
            if len(errors or []) > failed_before:
                continue  # not recorded, so the next run reads it again and reports it again
        documents[name] = DocumentEntry(digest, [c.id for c in doc_chunks])
        chunks += doc_chunks
    chunks = list({c.id: c for c in chunks}.values())  # a section repeated word for word
    vectors, keys, embedded = _embed(chunks, old, embedder)
    old_keys = set(old.embedding_keys) if old else set()
    reused = sum(key in old_keys for key in keys)
    stored = StoredIndex(chunks, vectors, keys, documents, settings)
    save_index(folder, stored)
    _sync_vector_store(cfg.rag, root, chunks, vectors, keys)
    rule = fit_abstention(cfg, root, folder, stored, embedder)
    removed = len(set(old_chunks) - {c.id for c in chunks})
    # An error may quote a cell: stored and shown redacted, like the dataset stage's.
    skipped = [redact(str(e), cfg.data.pii).text for e in errors or []]
    result = IndexReport(
        len(documents), len(chunks), embedded, reused, removed, skipped, folder, rule
    )
    log.info(
        "index %s: %d documents, %d chunks, %d embedded, %d reused, %d removed",
        folder,
        result.documents,
        result.chunks,
        embedded,
        result.reused,
        removed,
    )
    return result


def abstention_summary(rule: AbstainRule | None) -> str:
    fit = rule.fit if rule else None
    if fit is None:
        return ""
    if not fit.fitted:
        return (
            f"; abstention: the default rule ({fit.answerable} answerable and "
            f"{fit.unanswerable} unanswerable FAQ questions are too few to fit one)"
        )
    return (
        f"; abstention rule fitted on {fit.answerable}+{fit.unanswerable} FAQ questions "
        f"(refuses {fit.false_refusal:.0%} of the answerable, {fit.refusal:.0%} of the others)"
    )


def fit_abstention(
    cfg: ShoptalkConfig, root: Path, folder: Path, stored: StoredIndex, embedder: Embedder
) -> AbstainRule:
    """Fit the abstention rule on the project's FAQ against this index; write it beside it.

    Refitted only when what it reads changed (the chunks, the FAQ, the retrieval settings),
    so an unchanged index loads no model. The FAQ rows are read as `faq_chunks` reads them
    (redacted alike); with `rag.index_faq` off no row is in the index to leave out.
    """
    from shoptalk.rag.abstain_fit import OwnQuestion, fit_index_rule, fit_key
    from shoptalk.rag.retrieve import RagIndex, load_reranker

    path = folder / ABSTAIN_RULE
    questions = []
    for faq in listed_files(root, cfg.sources.faq, "faq", []):
        for row in faq_chunks(faq, root, cfg, embedder, []):
            own = frozenset([row.id] if cfg.rag.index_faq else [])
            questions.append(OwnQuestion(row.headings[0], row.text, own))
    index = RagIndex(stored, embedder, cfg.rag, load_reranker(cfg.rag.reranker, root))
    key = fit_key(index, questions, json.dumps(cfg.rag.reranker))
    old = read_json(path) or {}
    if (old.get("fit") or {}).get("key") == key:
        return load_rule(path)
    rule = fit_index_rule(index, questions, cfg.rag.select.max_false_refusal, key)
    save_rule(rule, path)
    return rule


def index_settings(cfg: ShoptalkConfig, embedder: Embedder) -> dict:
    """Everything besides a document's bytes that decides its chunks: a change re-chunks all."""
    rag = cfg.rag
    # Through JSON and back, so it compares equal to the copy read from the manifest.
    return json.loads(
        json.dumps(
            {
                "embedding_model": embedder.name,
                "chunk": [rag.chunk_tokens, rag.overlap_tokens],
                "access": rag.access,
                "folder_groups": rag.folder_groups,
                "faq": rag.index_faq,
                "redact": cfg.data.redact_pii and cfg.data.pii.model_dump(mode="json"),
            },
            sort_keys=True,
        )
    )


def read_chunks(
    path: Path,
    root: Path,
    cfg: ShoptalkConfig,
    embedder: Embedder,
    errors: list[SourceError] | None,
) -> list[Chunk]:
    """One document as redacted, access-controlled, token-sized chunks."""
    sections = read_document_file(path, root, errors)
    if not sections:
        return []
    acl = source_groups(path, root, cfg.rag)
    chunks = []
    for section in sections:
        section = section.model_copy(update={"acl": acl})
        if cfg.data.redact_pii:
            # Retrieved text reaches API callers: it holds no more personal data than training.
            section = section.model_copy(update={"text": redact(section.text, cfg.data.pii).text})
        chunks += chunk_section(
            section, embedder.count_tokens, cfg.rag.chunk_tokens, cfg.rag.overlap_tokens
        )
    return chunks


def faq_chunks(
    path: Path,
    root: Path,
    cfg: ShoptalkConfig,
    embedder: Embedder,
    errors: list[SourceError] | None,
) -> list[Chunk]:
    """Each row of a FAQ file as one chunk: the answer under the question as its heading.

    The source is the row's (`faq.csv:12`), so a citation points at the line;
    the groups are the file's, by the same rule as a document's.
    """
    acl = source_groups(path, root, cfg.rag)
    chunks = []
    for row in read_faq(path, root, errors):
        question, answer = row.messages[0].content, row.messages[-1].content
        if cfg.data.redact_pii:
            question = redact(question, cfg.data.pii).text
            answer = redact(answer, cfg.data.pii).text
        chunk_id = content_id(row.source, question, answer)
        chunks.append(
            Chunk(id=chunk_id, text=answer, source=row.source, headings=[question], acl=acl)
        )
    return chunks


def _embed(
    chunks: list[Chunk], old: StoredIndex | None, embedder: Embedder
) -> tuple[np.ndarray, list[str], int]:
    """Vectors for `chunks`: reused from `old` by text hash, computed in batches otherwise."""
    import numpy as np

    texts = [searchable_text(c) for c in chunks]
    keys = [embedder.text_key(t) for t in texts]
    known = {key: row for row, key in enumerate(old.embedding_keys)} if old else {}
    # Identical texts (the same section in two documents) are embedded once.
    first_row: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in known:
            first_row.setdefault(key, i)
    # Like-length texts batched together pad least: sentence-transformers sorts only
    # within one call, and a document's short last chunks would pad to a full one.
    missing = sorted(first_row.values(), key=lambda i: len(texts[i]), reverse=True)
    # An up-to-date index takes its width from the stored vectors: no model is loaded.
    width = old.vectors.shape[1] if old is not None and not missing else embedder.dimensions
    vectors = np.zeros((len(chunks), width), dtype=np.float32)
    step = embedder.batch_size
    batches = [missing[start : start + step] for start in range(0, len(missing), step)]
    for rows in progress.track(batches, "index: embedding chunks", len(missing), size=len):
        vectors[rows] = embedder.encode([texts[i] for i in rows])
    for i, key in enumerate(keys):
        vectors[i] = old.vectors[known[key]] if key in known else vectors[first_row[key]]
    return vectors, keys, len(missing)


def _sync_vector_store(
    rag: RagSettings, root: Path, chunks: list[Chunk], vectors: np.ndarray, keys: list[str]
) -> None:
    """Bring Qdrant or pgvector, when `rag` names one, to hold exactly `chunks`."""
    store = open_vector_store(rag, root)
    if store is None:
        return
    try:
        written = store.sync(chunks, vectors, keys)
    finally:
        store.close()
    log.info("%s: %d rows written", type(store).__name__, written)
