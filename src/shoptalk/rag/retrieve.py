"""Hybrid retrieval: BM25 and vectors, fused (`rag.fusion`) and filtered by the caller's groups.

    index = open_index(project)
    result = index.search("How long is the claim window?", groups=["support"])
    result.found, [hit.chunk.source for hit in result.hits]

Permissions apply before ranking: a chunk the caller may not read gets no
score, so it can neither be returned nor push a readable chunk out of the top k.
`groups=None` is the project owner on the command line: no filter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from shoptalk.artifacts import ABSTAIN_RULE
from shoptalk.config import RagSettings
from shoptalk.data.clean import source_file
from shoptalk.errors import ShoptalkError
from shoptalk.modeling.embed import Embedder, load_embedder
from shoptalk.rag.abstain import (
    DEFAULT_RULE,
    AbstainRule,
    Abstention,
    corpus_idf,
    load_rule,
    own_words,
)
from shoptalk.rag.bm25 import BM25, language, terms
from shoptalk.rag.chunk import searchable_text
from shoptalk.rag.connect import open_vector_store
from shoptalk.rag.store import StoredIndex, require_index
from shoptalk.rag.vector_store import VectorStore
from shoptalk.records import Chunk

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from shoptalk.project import Project

# The usual RRF constant (Cormack et al. 2009): damps the weight of the very top ranks.
RRF_K = 60
# Candidates each ranking contributes to the fusion (and to the reranker).
CANDIDATES = 50
# Fused candidates a cross-encoder rescores: it reads each (question, chunk) pair in full.
RERANKED = 20


@dataclass
class Hit:
    chunk: Chunk
    score: float  # fused (or reranker) score; higher is better
    similarity: float  # cosine similarity of question and chunk


@dataclass
class Retrieval:
    hits: list[Hit]
    found: bool  # the best chunk is similar enough to answer from


def can_read(chunk: Chunk, groups: list[str] | None) -> bool:
    return groups is None or not chunk.acl or bool(set(chunk.acl) & set(groups))


class RagIndex:
    def __init__(
        self,
        stored: StoredIndex,
        embedder: Embedder,
        settings: RagSettings,
        reranker=None,
        vector_store: VectorStore | None = None,
        rule: AbstainRule | None = None,
        style_chunks: frozenset[str] = frozenset(),
        organization: str = "",
    ) -> None:
        self.stored = stored
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self.vector_store = vector_store  # Qdrant or pgvector, when rag names one
        self.rule = rule or DEFAULT_RULE  # fitted at index time (rag.abstain), else the default
        self.rows = {chunk.id: row for row, chunk in enumerate(stored.chunks)}
        # Chunks of the style material (a tone guide among the documents): rules for writing,
        # not facts to tell a customer; a draft does not read them (rag.answer.select_for).
        self.style_chunks = style_chunks
        self.organization = organization  # the config's `name`: no name the passages must hold

    @cached_property
    def abstention(self) -> Abstention:
        """When the selected passages do not answer: every answer path asks this (rag.abstain)."""
        coverage = self.settings.select.refuse_on_coverage
        return Abstention(
            self.rule,
            corpus_idf(self.stored.chunks),
            coverage=coverage,
            own_name=own_words(self.organization),
        )

    @cached_property
    def bm25(self) -> BM25:
        return BM25([terms(searchable_text(c)) for c in self.stored.chunks])

    def allowed(self, groups: list[str] | None) -> np.ndarray:
        import numpy as np

        return np.array([can_read(c, groups) for c in self.stored.chunks], dtype=bool)

    def search(
        self,
        question: str,
        groups: list[str] | None = None,
        top_k: int | None = None,
        excluded: set[str] | frozenset[str] = frozenset(),
    ) -> Retrieval:
        """The top k chunks `groups` may read, and whether the best is similar enough to use.

        `excluded` (chunk ids) are searched as if absent: the abstention fit asks questions
        with the chunks that answer them left out (rag.abstain).
        """
        import numpy as np

        top_k = top_k or self.settings.top_k
        allowed = self.allowed(groups)
        if excluded:
            allowed &= np.array([c.id not in excluded for c in self.stored.chunks], dtype=bool)
        if not allowed.any():
            return Retrieval([], False)
        query = self.embedder.encode([question])[0]
        similarity = self.stored.vectors @ query
        by_vector = self._by_vector(query, similarity, allowed, groups)
        by_words = _ranked(self.bm25.scores(terms(question), allowed), allowed, positive=True)
        if self.embedder.name == "default" and language(question) == "zh":
            # The bundled model knows no Chinese: its ranking is noise (bench/RESULTS.md).
            by_vector, found = [], bool(by_words)
        else:
            found = bool(by_vector) and similarity[by_vector[0]] >= self.settings.min_similarity
        fuse = interleaved if self.settings.fusion == "interleave" else reciprocal_rank
        rows, scores = fuse([by_vector, by_words])
        if self.reranker is not None:
            rows, scores = self._rerank(question, rows[:RERANKED])
        hits = [
            Hit(self.stored.chunks[r], s, float(similarity[r]))
            for r, s in zip(rows, scores, strict=True)
        ]
        return Retrieval(hits[:top_k], bool(found))

    def _by_vector(
        self,
        query: np.ndarray,
        similarity: np.ndarray,
        allowed: np.ndarray,
        groups: list[str] | None,
    ) -> list[int]:
        import numpy as np

        if self.vector_store is None:
            return _ranked(np.where(allowed, similarity, -np.inf), allowed)
        found = self.vector_store.search(query, groups, CANDIDATES)
        # The server filtered by groups already; the local check guards against a stale mirror.
        return [self.rows[i] for i, _ in found if i in self.rows and allowed[self.rows[i]]]

    def _rerank(self, question: str, rows: list[int]) -> tuple[list[int], list[float]]:
        texts = [searchable_text(self.stored.chunks[r]) for r in rows]
        scores = self.reranker.predict([(question, t) for t in texts])
        order = sorted(range(len(rows)), key=lambda i: -float(scores[i]))
        return [rows[i] for i in order], [float(scores[i]) for i in order]


def interleaved(rankings: list[list[int]]) -> tuple[list[int], list[float]]:
    """The rankings' rows taken in turn (first of each, then second of each, ...), once each.

    A chunk one ranking puts first is always among the first chunks read: with reciprocal
    ranks a chunk only the embedding finds (a user's scenario in other words than the
    document's) lost to chunks both rankings put in the middle (bench/RESULTS.md, Fusion).
    The score is 1 / position, for the order only.
    """
    turns = (row for tier in itertools.zip_longest(*rankings) for row in tier)
    rows = list(dict.fromkeys(row for row in turns if row is not None))
    return rows, [1.0 / (i + 1) for i in range(len(rows))]


def reciprocal_rank(rankings: list[list[int]]) -> tuple[list[int], list[float]]:
    """Rows by the sum of 1 / (RRF_K + rank) over the rankings, best first, with that sum."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
    rows = sorted(fused, key=lambda r: -fused[r])
    return rows, [fused[r] for r in rows]


def _ranked(scores: np.ndarray, allowed: np.ndarray, positive: bool = False) -> list[int]:
    """Rows of the best CANDIDATES allowed scores, best first (only scores > 0 if `positive`)."""
    import numpy as np

    keep = allowed & (scores > 0) if positive else allowed
    rows = np.flatnonzero(keep)
    best = rows[np.argsort(-scores[rows], kind="stable")[:CANDIDATES]]
    return best.tolist()


def open_index(project: Project, embedder: Embedder | None = None) -> RagIndex:
    """The project's index, ready to search (what `ask --rag` and the server use)."""
    settings = project.config.rag
    stored = require_index(project.index, project.root)  # rag.index.index_folder
    embedder = embedder or load_embedder(
        settings.embedding_model, project.root, settings.batch_size
    )
    built_with = stored.settings.get("embedding_model")
    if built_with != embedder.name:
        raise ShoptalkError(
            f"The index was built with the embedding model {built_with!r}, but questions would be "
            f"embedded with {embedder.name!r} (rag.embedding_model): "
            f"run `shoptalk index {project.root}` to rebuild it."
        )
    reranker = load_reranker(settings.reranker, project.root)
    rule = load_rule(project.index / ABSTAIN_RULE)
    store = open_vector_store(settings, project.root)
    style_files = set(project.style.get("files", []))
    style = frozenset(c.id for c in stored.chunks if source_file(c.source) in style_files)
    return RagIndex(stored, embedder, settings, reranker, store, rule, style, project.config.name)


def load_reranker(name: str | None, root: Path):
    """A sentence-transformers CrossEncoder, or None when `rag.reranker` is not set."""
    if name is None:
        return None
    from sentence_transformers import CrossEncoder

    from shoptalk.errors import ModelError

    location = str(root / name) if (root / name).is_dir() else name
    try:
        return CrossEncoder(location)
    except Exception as err:  # OSError, ValueError, HTTP errors: all mean "cannot load it"
        raise ModelError(f"rag.reranker: cannot load {name!r} as a cross-encoder: {err}") from err
