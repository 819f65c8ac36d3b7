from __future__ import annotations

import pytest
from rag_fakes import fake_embedder, write_rag_project

from shoptalk.errors import ShoptalkError
from shoptalk.project import Project
from shoptalk.rag.bm25 import BM25, terms
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import interleaved, open_index, reciprocal_rank


@pytest.fixture
def index(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    embedder = fake_embedder()
    index_project(project, embedder)
    return open_index(project, embedder)


def sources(result) -> list[str]:
    return [hit.chunk.source for hit in result.hits]


def test_the_chunk_with_the_fact_ranks_first(index):
    result = index.search("How many days do customers have to file a freight claim?")
    assert result.found and sources(result)[0] == "docs/handbook.md#Claims"
    result = index.search("退货期限是多少天？")
    assert sources(result)[0] == "docs/returns_zh.md#退货期限"


@pytest.mark.parametrize(
    ("groups", "visible"),
    [
        (None, {"handbook", "pay", "legal", "returns_zh"}),
        ([], {"handbook", "returns_zh"}),
        (["sales"], {"handbook", "returns_zh"}),
        (["hr"], {"handbook", "returns_zh", "pay"}),
        (["hr", "legal"], {"handbook", "returns_zh", "pay", "legal"}),
    ],
)
def test_retrieval_only_returns_documents_of_the_callers_groups(index, groups, visible):
    seen = set()
    for question in (
        "When are salaries paid?",
        "How much does the Harbor dispute settle for?",
        "Who runs the Oslo depot?",
        "overtime rate",
        "litigation open cases",
    ):
        seen |= {
            s.split("/")[-1].split(".")[0] for s in sources(index.search(question, groups, 10))
        }
    assert seen == visible


def test_a_restricted_chunk_is_not_returned_even_when_it_is_the_only_match(index):
    result = index.search("Harbor Freight dispute settlement $80,000", groups=["hr"], top_k=10)
    assert all("legal" not in s for s in sources(result))
    assert all("Harbor" not in hit.chunk.text for hit in result.hits)


def test_nothing_similar_enough_means_not_found(index):
    index.settings = index.settings.model_copy(update={"min_similarity": 0.9})
    assert not index.search("quantum chromodynamics lattice").found


def test_no_readable_document_means_not_found(tmp_path):
    root = write_rag_project(tmp_path / "p", access={"docs/*": ["staff"]})
    project = Project.open(root)
    embedder = fake_embedder()
    index_project(project, embedder)
    result = open_index(project, embedder).search("Who runs the Oslo depot?", groups=[])
    assert result.hits == [] and not result.found


def test_an_index_from_another_embedding_model_asks_to_reindex(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    index_project(project, fake_embedder())
    with pytest.raises(ShoptalkError, match="shoptalk index"):
        open_index(project)  # the config says "default", the index was built with "fake"


def test_open_index_without_an_index_says_how_to_build_one(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    with pytest.raises(ShoptalkError, match=r"run `shoptalk index"):
        open_index(project, fake_embedder())


def test_bm25_scores_words_chinese_included_and_honours_allowed():
    import numpy as np

    docs = ["the claim window is 47 days", "the oslo depot opens early", "退货期限是75天"]
    bm25 = BM25([terms(d) for d in docs])
    assert np.argmax(bm25.scores(terms("claim window"))) == 0
    assert np.argmax(bm25.scores(terms("退货期限"))) == 2
    assert bm25.scores(terms("退货期限"), np.array([True, True, False]))[2] == 0
    assert terms("KX-340 costs $1,200 (13.5%)") == ["kx-340", "costs", "1,200", "13.5%"]


def test_interleaving_reads_each_rankings_first_chunk_where_reciprocal_ranks_lose_it():
    # Chunk 9 is the embedding's first and absent from BM25 (a question in other words
    # than the document's); 1-4 both rankings hold in the middle.
    by_vector, by_words = [9, 1, 2, 3, 4], [5, 1, 2, 3, 4, 6]
    rows, scores = interleaved([by_vector, by_words])
    assert rows[:4] == [9, 5, 1, 2] and rows.count(1) == 1
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 9] and scores == sorted(scores, reverse=True)
    fused, _ = reciprocal_rank([by_vector, by_words])
    assert fused[:2] == [1, 2] and fused.index(9) > 2
    assert interleaved([[], by_words])[0] == by_words, "one ranking alone (Chinese) is kept"


def test_the_fusion_setting_chooses_how_rankings_meet(index):
    question = "How many days do customers have to file a freight claim?"
    first = index.search(question, None, top_k=3)
    index.settings.fusion = "rrf"
    fused = index.search(question, None, top_k=3)
    assert sources(first)[0] == sources(fused)[0] == "docs/handbook.md#Claims"
    assert [h.score for h in first.hits] == [1.0, 0.5, 1 / 3]
    assert all(h.score < 2 / 60 for h in fused.hits)


class KeywordReranker:
    """A stand-in cross-encoder: scores a pair by whether the chunk mentions a word."""

    def __init__(self, word: str) -> None:
        self.word = word

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [float(self.word in text) for _, text in pairs]


def test_a_reranker_reorders_the_fused_candidates(index):
    question = "Who reviews claims, and who runs the Oslo depot?"
    index.reranker = KeywordReranker("Solberg")
    result = index.search(question, None, top_k=2)
    assert result.hits[0].chunk.source == "docs/handbook.md#Depots"
    assert result.hits[0].score == 1.0
    index.reranker = KeywordReranker("Ruiz")
    assert index.search(question, None, top_k=2).hits[0].chunk.source == "docs/handbook.md#Claims"


def test_chinese_questions_rank_by_words_alone_with_the_english_only_default_model(tmp_path):
    from rag_fakes import HashingModel

    from shoptalk.modeling.embed import Embedder

    project = Project.open(write_rag_project(tmp_path / "p"))
    default = Embedder("default", "unused", model=HashingModel())
    index_project(project, default)
    index = open_index(project, default)
    chinese = index.search("退货期限是多少天？", None, top_k=10)
    assert chinese.found and sources(chinese) == ["docs/returns_zh.md#退货期限"]
    english = index.search("How long is the freight claim window?", None, top_k=10)
    assert len(english.hits) > 1, "English questions still fuse both rankings"
