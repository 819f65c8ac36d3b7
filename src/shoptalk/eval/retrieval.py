"""Retrieval quality in the scorecard: does the index find the chunk that holds the answer?

For each domain question whose `source` names an indexed document or FAQ file, the key-fact
chunk is a chunk of that document holding every `must_include` phrase. hit@k is
the share of those questions with it in the top k (k = `rag.top_k`, what the
model reads); MRR the mean of 1/rank of its first appearance in the top
`DEPTH`, 0 when absent. Retrieval does not depend on the model: both sides of
the scorecard show the same numbers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import SuiteScores
from shoptalk.records import Chunk, DomainQuestion

if TYPE_CHECKING:
    from shoptalk.rag.retrieve import RagIndex

SUITE = "retrieval"
DEPTH = 10


def source_file(source: str) -> str:
    """The file of a chunk's source: `docs/a.md#Heading` -> `docs/a.md`, `faq.csv:12` -> `faq.csv`."""
    return re.sub(r"(\[[^\]]*\])?:\d+$", "", source.split("#")[0])


def holds_key_fact(chunk: Chunk, question: DomainQuestion) -> bool:
    text = chunk.text.lower()
    in_source = source_file(chunk.source) == question.source
    return in_source and all(phrase.lower() in text for phrase in question.must_include)


def key_fact_rank(index: RagIndex, question: DomainQuestion) -> int | None:
    """1-based rank of the first key-fact chunk in the top DEPTH, or None."""
    hits = index.search(question.question, None, DEPTH).hits
    return next((n for n, h in enumerate(hits, 1) if holds_key_fact(h.chunk, question)), None)


def retrieval_scores(index: RagIndex, suites: list[Suite]) -> SuiteScores | None:
    """hit@k and MRR over the suites' questions about indexed documents; None if there are none."""
    questions = [
        q
        for suite in suites
        for q in suite.questions
        if isinstance(q, DomainQuestion) and q.source and q.must_include
    ]
    documents = {source_file(c.source) for c in index.stored.chunks} if questions else set()
    questions = [q for q in questions if q.source in documents]
    if not questions:
        return None
    k = index.settings.top_k
    ranks = [key_fact_rank(index, q) for q in progress.track(questions, "eval: retrieval hit@k")]
    scores = {
        f"hit@{k}": sum(r is not None and r <= k for r in ranks) / len(ranks),
        "mrr": sum(1 / r for r in ranks if r is not None) / len(ranks),
    }
    same = {metric: [0.0, 0.0, 0.0] for metric in scores}
    return SuiteScores(n=len(ranks), kind=SUITE, base=scores, tuned=dict(scores), diff=same)
