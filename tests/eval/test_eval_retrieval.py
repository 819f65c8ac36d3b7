"""hit@k and MRR in the scorecard: the rank of the chunk that holds a question's key fact."""

from __future__ import annotations

import numpy as np

from shoptalk.config import RagSettings
from shoptalk.eval.questions import Suite
from shoptalk.eval.retrieval import retrieval_scores
from shoptalk.rag.retrieve import RagIndex
from shoptalk.rag.store import StoredIndex
from shoptalk.records import Chunk, DomainQuestion, UnanswerableQuestion

CHUNKS = [
    Chunk(id="a", text="Claims are reviewed on Mondays.", source="docs/claims.md#Review"),
    Chunk(id="b", text="The claim window is 47 days.", source="docs/claims.md#Window"),
    Chunk(id="c", text="The claim window of partners is 47 days too.", source="docs/partners.md"),
    Chunk(id="d", text="The Oslo depot opens at 06:00.", source="docs/depots.md#Oslo"),
]


class KeywordEmbedder:
    """Every text embeds as which of three words it holds: enough to rank four chunks."""

    name = "keywords"

    def encode(self, texts: list[str]) -> np.ndarray:
        words = ("claim", "window", "oslo")
        vectors = np.array([[float(w in t.lower()) for w in words] for t in texts]) + 1e-3
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def index(top_k: int) -> RagIndex:
    embedder = KeywordEmbedder()
    vectors = embedder.encode([c.text for c in CHUNKS])
    stored = StoredIndex(CHUNKS, vectors, [c.id for c in CHUNKS])
    return RagIndex(stored, embedder, RagSettings(top_k=top_k))


def question(text: str, source: str | None, must_include: list[str]) -> DomainQuestion:
    return DomainQuestion(question=text, must_include=must_include, source=source)


SUITE = Suite(
    name="documents",
    kind="domain",
    path="documents.jsonl",
    questions=[
        # The key fact is in two documents: only the question's source counts.
        question("How long is the claim window?", "docs/claims.md", ["47 days"]),
        question("When does the Oslo depot open?", "docs/depots.md", ["06:00"]),
        # Not about an indexed document, or no key fact to look for: not counted.
        question("How long is the claim window?", "faq.csv", ["47 days"]),
        question("Anything about claims?", "docs/claims.md", []),
    ],
)


def test_hit_at_k_and_mrr_count_the_key_fact_chunk_of_the_source_document():
    scores = retrieval_scores(index(top_k=5), [SUITE])
    assert scores is not None and scores.kind == "retrieval" and scores.n == 2
    claim_hits = index(5).search("How long is the claim window?", None, 10).hits
    claim_rank = 1 + [h.chunk.id for h in claim_hits].index("b")
    assert scores.base["hit@5"] == 1.0
    assert scores.base["mrr"] == (1 / claim_rank + 1.0) / 2
    assert scores.tuned == scores.base, "retrieval does not depend on the model"
    assert scores.diff == {"hit@5": [0.0, 0.0, 0.0], "mrr": [0.0, 0.0, 0.0]}


def test_hit_at_k_uses_the_chunks_the_model_reads():
    scores = retrieval_scores(index(top_k=1), [SUITE])
    hits = index(1).search("How long is the claim window?", None, 10).hits
    claim_first = hits[0].chunk.id == "b"
    assert scores.base["hit@1"] == (float(claim_first) + 1.0) / 2


def test_suites_without_questions_about_documents_have_no_retrieval_scores():
    unanswerable = Suite(
        name="unanswerable",
        kind="unanswerable",
        path="u.jsonl",
        questions=[UnanswerableQuestion(question="What is the CEO's salary?")],
    )
    assert retrieval_scores(index(5), [unanswerable]) is None


def test_a_faq_rows_source_names_its_file():
    from shoptalk.eval.retrieval import source_file

    assert source_file("faq.csv:12") == "faq.csv"
    assert source_file("faq.xlsx[FAQ]:7") == "faq.xlsx"
    assert source_file("docs/a.md#Pay: 2024") == "docs/a.md"
