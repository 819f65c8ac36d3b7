"""Sentence selection: the few sentences of the retrieved chunks that answer the question.

    passages = select_passages(question, retrieval.hits, index.embedder, settings.select)
    passages[0].text, passages[0].source, passages[0].score

A small model reads a short context far better than five 200-token chunks, and
a sentence that holds the fact can be quoted and checked. Each sentence of the
retrieved chunks (cut by `chunk.sentence_spans`, Chinese terminators included)
is scored by the cosine similarity of the question and the sentence under its
chunk's heading path (what the sentence is about when it is a table row or a
list item), plus `lexical_weight` times the share of the question's BM25 terms
(jieba words for Chinese) found in the sentence itself. The best
sentences are kept, best first, within a token budget. The choices and their
measured effect are in bench/RESULTS.md ("Sentence selection").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoptalk.config import SelectSettings
from shoptalk.rag.bm25 import language, terms
from shoptalk.rag.chunk import around, heading_line, sentence_spans
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np

    from shoptalk.modeling.embed import Embedder
    from shoptalk.rag.retrieve import Hit


@dataclass
class Passage:
    """One selected sentence (with its neighbours, if asked for), verbatim from its chunk."""

    text: str
    chunk: Chunk
    score: float

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def heading(self) -> str:
        return heading_line(self.chunk)

    def as_chunk(self) -> Chunk:
        """The passage as a chunk of its own: what a citation of it may quote."""
        return self.chunk.model_copy(update={"text": self.text})


@dataclass
class _Candidate:
    chunk: Chunk
    spans: list[tuple[int, int]]  # every sentence of the chunk
    index: int  # which of them


def candidates(chunks: Sequence[Chunk]) -> list[_Candidate]:
    """Every sentence with words of the chunks, once: overlapping chunks repeat sentences."""
    seen: set[str] = set()
    out = []
    for chunk in chunks:
        spans = sentence_spans(chunk.text)
        for i, (start, end) in enumerate(spans):
            text = chunk.text[start:end]
            if text in seen or not terms(text):
                continue  # a repeat, or a table rule "|---|---|"
            seen.add(text)
            out.append(_Candidate(chunk, spans, i))
    return out


def sentence_scores(
    question: str, found: list[_Candidate], embedder: Embedder, settings: SelectSettings
) -> np.ndarray:
    """Cosine of question and heading + sentence, plus the weighted share of question terms."""
    import numpy as np

    texts = [_text(c) for c in found]
    wanted = set(terms(question))
    # The sentence's own words: counting its heading's would favour every sentence under it.
    overlap = np.array(
        [len(wanted & set(terms(t))) / len(wanted) if wanted else 0.0 for t in texts],
        dtype=np.float32,
    )
    if embedder.name == "default" and language(question) == "zh":
        # The bundled embedding model knows no Chinese (as in retrieve.py): words only.
        return overlap
    query = embedder.encode([question])[0]
    vectors = embedder.encode([_headed(c) for c in found] if settings.with_heading else texts)
    return vectors @ query + settings.lexical_weight * overlap


def select_passages(
    question: str, hits: Sequence[Hit], embedder: Embedder, settings: SelectSettings
) -> list[Passage]:
    """The best sentences of the hits' chunks, best first, within `settings.max_tokens`."""
    found = candidates([hit.chunk for hit in hits])
    if not found:
        return []
    scores = sentence_scores(question, found, embedder, settings)
    order = sorted(range(len(found)), key=lambda i: -float(scores[i]))[: settings.sentences]
    passages = [
        Passage(_with_neighbours(found[i], settings.neighbours), found[i].chunk, float(scores[i]))
        for i in order
    ]
    return within_budget(passages, embedder, settings.max_tokens)


def within_budget(passages: list[Passage], embedder: Embedder, max_tokens: int) -> list[Passage]:
    """The passages, best first, while their tokens fit `max_tokens`; the best one always."""
    sizes = embedder.count_tokens([p.text for p in passages]) if passages else []
    kept, total = [], 0
    for passage, size in zip(passages, sizes, strict=True):
        if kept and total + size > max_tokens:
            break
        kept.append(passage)
        total += size
    return kept


def _text(candidate: _Candidate) -> str:
    start, end = candidate.spans[candidate.index]
    return candidate.chunk.text[start:end]


def _headed(candidate: _Candidate) -> str:
    heading = heading_line(candidate.chunk)
    return f"{heading}\n{_text(candidate)}" if heading else _text(candidate)


def _with_neighbours(candidate: _Candidate, neighbours: int) -> str:
    """The sentence and up to `neighbours` sentences each side of it, as the chunk writes them."""
    return around(candidate.chunk.text, candidate.spans, candidate.index, neighbours)
