"""Fit the abstention rule (`rag.abstain`) on the project's own FAQ, against its index.

    rule = fit_index_rule(index, questions, max_false_refusal=0.1, key=fit_key(index, questions))

Called by the index stage (`rag.index.fit_abstention`), which writes the rule beside
the index. Never fitted on evaluation questions: see `own_split` for the examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.rag.abstain import (
    DEFAULT_RULE,
    AbstainRule,
    Abstention,
    FitStats,
    corpus_idf,
    fit_rule,
    words,
)
from shoptalk.rag.citations import numbers_in
from shoptalk.rag.select import Passage, select_passages
from shoptalk.rag.store import ids_hash

if TYPE_CHECKING:
    from shoptalk.rag.retrieve import RagIndex
    from shoptalk.records import Chunk

log = logging.getLogger(__name__)

# Bump when the own split or the fit changes: a stored rule with another version is refitted.
FIT_VERSION = 4
# Fewer answerable (or unanswerable) rows than this: the fit is noise, DEFAULT_RULE is used.
MIN_ROWS = 10
# A chunk "states" a row's answer when it holds this IDF-weighted share of the answer's terms
# (positives need one); the negatives leave out every chunk holding even NEAR of them.
STATES = 0.5
NEAR = 0.35


@dataclass
class OwnQuestion:
    """A question of the project's own data, its answer, and the chunk(s) that are the row itself."""

    question: str
    answer: str
    own: frozenset[str]  # chunk ids left out even for the answerable example (the row itself)


def own_split(
    index: RagIndex, questions: Sequence[OwnQuestion]
) -> tuple[list[dict[str, float]], list[bool]]:
    """Signals of own questions whose selected passages state the answer, and do not.

    Answerable: retrieval blind to the row itself (asked verbatim it answers itself, far
    easier than any user's question), kept when the passages the model would read state
    the row's answer (`states`). Unanswerable: the same question with every chunk holding
    NEAR of the answer's weighted terms also left out, kept when its passages do not state
    it. A question whose passages miss an answer the index holds is neither: it says
    nothing of whether passages that answer look answered.
    """
    idf = corpus_idf(index.stored.chunks)

    def passages(question: str, excluded: set[str]) -> list[Passage]:
        found = index.search(question, None, None, excluded=excluded)
        if not found.found or not found.hits:
            return []
        return select_passages(question, found.hits, index.embedder, index.settings.select)

    with remembering(index):  # each row re-reads the same sentences
        return _own_rows(index, questions, idf, passages)


def _own_rows(index, questions, idf, passages) -> tuple[list[dict[str, float]], list[bool]]:
    held = chunk_words(index.stored.chunks)
    abstention = Abstention(DEFAULT_RULE, idf)
    values: list[dict[str, float]] = []
    labels: list[bool] = []
    for item in progress.track(list(questions), "index: fitting the abstention rule"):
        weight = answer_weights(item.answer, idf)
        share = [weighted_share(weight, have) for have in held]
        ids = [c.id for c in index.stored.chunks]
        if not any(s >= STATES and i not in item.own for i, s in zip(ids, share, strict=True)):
            continue  # only the row itself says it: not answerable without it
        read = passages(item.question, set(item.own))
        if states(item.answer, read, idf):
            values.append(abstention.signals(item.question, read))
            labels.append(True)
        near = {i for i, s in zip(ids, share, strict=True) if s >= NEAR}
        read = passages(item.question, set(item.own) | near)
        if not states(item.answer, read, idf):
            values.append(abstention.signals(item.question, read))
            labels.append(False)
    return values, labels


@contextmanager
def remembering(index: RagIndex) -> Iterator[None]:
    """`index` embeds each text once while inside: many questions over the same chunks."""
    index.embedder, own_embedder = _Remembering(index.embedder), index.embedder
    try:
        yield
    finally:
        index.embedder = own_embedder


class _Remembering:
    """The index's embedder, each text embedded once: the fit selects sentences of the same
    chunks for every question (several times faster on a CPU)."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, object] = {}

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)

    def encode(self, texts: list[str]):
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self.embedder.encode(missing), strict=True))
        if not texts:
            return self.embedder.encode([])
        return np.stack([self.vectors[t] for t in texts])


def chunk_words(chunks: Sequence[Chunk]) -> list[set[str]]:
    """Each chunk's words, its headings included: what a share of an answer is counted in."""
    return [set(words(f"{' '.join(c.headings)}\n{c.text}")) for c in chunks]


def answer_weights(answer: str, idf: dict[str, float]) -> dict[str, float]:
    unseen = max(idf.values(), default=1.0) + 1.0
    return {t: idf.get(t, unseen) for t in set(words(answer))}


def weighted_share(weight: dict[str, float], have: set[str]) -> float:
    """The share of `weight` (word -> weight, `answer_weights`) whose words `have` holds."""
    total = sum(weight.values())
    return sum(w for t, w in weight.items() if t in have) / total if total else 0.0


def states(answer: str, passages: Sequence[Passage], idf: dict[str, float]) -> bool:
    """The passages together hold STATES of the answer's weighted terms and all its numbers."""
    if not passages:
        return False
    text = "\n".join(f"{p.heading}\n{p.text}" for p in passages)
    wanted = answer_weights(answer, idf)
    return weighted_share(wanted, set(words(text))) >= STATES and numbers_in(answer) <= numbers_in(
        text
    )


def fit_index_rule(
    index: RagIndex, questions: Sequence[OwnQuestion], max_false_refusal: float, key: str = ""
) -> AbstainRule:
    """The rule fitted on `own_split`, with its statistics; DEFAULT_RULE's when too few rows."""
    values, labels = own_split(index, questions)
    positives = sum(labels)
    negatives = len(labels) - positives
    fitted = positives >= MIN_ROWS and negatives >= MIN_ROWS
    rule = fit_rule(values, labels, max_false_refusal) if fitted else DEFAULT_RULE
    refused = [rule.refuses(v) for v in values]
    on_pos = [r for r, y in zip(refused, labels, strict=True) if y]
    on_neg = [r for r, y in zip(refused, labels, strict=True) if not y]
    stats = FitStats(
        answerable=positives,
        unanswerable=negatives,
        false_refusal=round(sum(on_pos) / len(on_pos), 4) if on_pos else 0.0,
        refusal=round(sum(on_neg) / len(on_neg), 4) if on_neg else 0.0,
        max_false_refusal=max_false_refusal,
        fitted=fitted,
        key=key,
    )
    log.info("abstention rule: %s", stats.model_dump_json())
    return rule.model_copy(update={"fit": stats})


def fit_key(index: RagIndex, questions: Sequence[OwnQuestion], extra: str = "") -> str:
    """What the fit reads: the chunks, the own questions, the retrieval and selection settings."""
    h = hashlib.sha256(f"v{FIT_VERSION}\n{ids_hash(index.stored.chunks)}\n{extra}".encode())
    h.update(index.settings.shaping_dump().encode())
    h.update(index.embedder.name.encode())
    for item in questions:
        h.update(json.dumps([item.question, item.answer, sorted(item.own)]).encode())
    return h.hexdigest()[:16]
