from __future__ import annotations

from shoptalk.rag.citations import check_citations, find_span
from shoptalk.records import Chunk

CLAIMS = Chunk(
    id="c1",
    text="Customers have 47 days from delivery to file a freight claim.\n"
    "Claims over $5,000 are reviewed every Monday.",
    source="docs/handbook.md#Claims",
    headings=["Handbook", "Claims"],
)
DEPOT = Chunk(
    id="c2",
    text="Ingrid Solberg runs the Oslo depot. The depot opens at 06:00.",
    source="docs/handbook.md#Depots",
    headings=["Handbook", "Depots"],
)
RETURNS = Chunk(
    id="c3", text="退货期限是75天。请在期限内提交申请！", source="docs/returns_zh.md#退货期限"
)
CHUNKS = [CLAIMS, DEPOT, RETURNS]


def test_a_quoted_span_found_in_the_cited_chunk_is_kept_in_the_chunks_own_words():
    checked = check_citations('You have "47 days  from Delivery" to file [1].', CHUNKS)
    assert checked.dropped == 0
    (citation,) = checked.citations
    assert (citation.number, citation.chunk_id, citation.kind) == (1, "c1", "cited")
    assert citation.quote == "47 days from delivery"
    assert (citation.source, citation.heading) == ("docs/handbook.md#Claims", "Claims")


def test_a_quote_the_cited_chunk_does_not_hold_is_dropped_and_counted():
    checked = check_citations('The depot "opens at 07:00" [2]. Claims take "60 days" [1].', CHUNKS)
    assert checked.citations == [] and checked.dropped == 2


def test_a_marker_pointing_at_no_chunk_is_dropped():
    checked = check_citations("Ingrid Solberg runs the Oslo depot [7].", CHUNKS)
    assert checked.dropped == 1 and checked.citations == []


def test_a_citation_without_quote_needs_a_supporting_sentence_in_its_chunk():
    right = check_citations("Ingrid Solberg runs the Oslo depot [2].", CHUNKS)
    assert [c.quote for c in right.citations] == ["Ingrid Solberg runs the Oslo depot."]
    wrong_chunk = check_citations("Ingrid Solberg runs the Oslo depot [1].", CHUNKS)
    assert wrong_chunk.citations == [] and wrong_chunk.dropped == 1


def test_uncited_key_sentences_get_their_supporting_span():
    checked = check_citations(
        "Sure! You have 47 days from delivery to file a claim. The Oslo depot opens at 06:00.",
        CHUNKS,
    )
    assert [(c.chunk_id, c.kind, c.number) for c in checked.citations] == [
        ("c1", "supported", None),
        ("c2", "supported", None),
    ]
    assert checked.citations[0].quote == CLAIMS.text.splitlines()[0]
    assert checked.citations[1].quote == "The depot opens at 06:00."


def test_a_sentence_with_a_wrong_number_has_no_support():
    checked = check_citations("You have 45 days from delivery to file a freight claim.", CHUNKS)
    assert checked.citations == []


def test_chinese_answers_are_checked_too():
    checked = check_citations("退货期限是75天【3】。", CHUNKS)
    assert [(c.chunk_id, c.quote) for c in checked.citations] == [("c3", "退货期限是75天。")]
    assert check_citations("退货期限是30天【3】。", CHUNKS).dropped == 1


def test_several_markers_in_one_bracket():
    text = 'Claims: "47 days from delivery" [1, 2].'
    checked = check_citations(text, CHUNKS)
    assert [c.chunk_id for c in checked.citations] == ["c1"] and checked.dropped == 1


def test_find_span_ignores_case_and_whitespace_only():
    assert find_span("OSLO   depot", DEPOT.text) == "Oslo depot"
    assert find_span("Oslo depots are", DEPOT.text) is None


def test_markers_after_the_full_stop_cite_the_sentence_before_them():
    checked = check_citations("Ingrid Solberg runs the Oslo depot. [2]", CHUNKS)
    assert [(c.number, c.chunk_id) for c in checked.citations] == [(2, "c2")]
    assert checked.dropped == 0
