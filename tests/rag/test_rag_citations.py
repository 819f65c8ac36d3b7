from __future__ import annotations

from shoptalk.rag.citations import check_citations, find_span, numbers_in
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


LEAVE = Chunk(
    id="c4",
    text="| Leave type | Allowance | Notes |\n|---|---|---|\n"
    "| Sick leave | 11 days per year | Separate from PTO |\n"
    "| Jury duty | Up to 15 days at full pay | Give a copy of the summons to your manager |\n"
    "| Volunteer days | 2 days per year | Booked in Perch |\n",
    source="docs/employee_handbook.md#Other leave",
)
LEAVE_ZH = Chunk(
    id="c5",
    text="| 假期 | 天数 |\n|---|---|\n| 病假 | 每年11天 |\n| 陪审假 | 最多15天，全薪 |\n",
    source="docs/handbook_zh.md#假期",
)
FEES = Chunk(
    id="c6",
    text="The relocation allowance is £1200 per move. 退货运费为 75天内免费。"
    "Write to claims@kestrel.example for help.",
    source="docs/fees.md#Fees",
)


def test_a_value_from_one_row_and_a_subject_from_another_is_not_checked():
    wrong = check_citations("You get 11 days of paid jury duty per year [1].", [LEAVE])
    assert wrong.citations == [] and wrong.dropped == 1
    right = check_citations(
        "You get 11 days of sick leave per year [1]. Jury duty is paid for up to 15 days [1].",
        [LEAVE],
    )
    assert right.dropped == 0
    assert [c.quote.split("|")[1].strip() for c in right.citations] == ["Sick leave", "Jury duty"]
    # Not cited at all: no row is offered as its support either.
    assert check_citations("You get 11 days of paid jury duty per year.", [LEAVE]).citations == []


def test_a_chinese_value_from_another_row_is_not_checked():
    assert check_citations("陪审假每年11天【1】。", [LEAVE_ZH]).dropped == 1
    right = check_citations("陪审假最多15天【1】。", [LEAVE_ZH])
    assert right.dropped == 0 and "陪审假" in right.citations[0].quote


def test_values_compare_as_written_in_either_form():
    for claim in (
        "The relocation allowance is £1,200 per move [1].",
        "The relocation allowance is £ 1200 per move [1].",
        "退货运费为75 天内免费【1】。",
        "退货运费为７５天内免费【1】。",  # full-width digits
    ):
        checked = check_citations(claim, [FEES])
        assert checked.dropped == 0 and len(checked.citations) == 1, claim
    assert check_citations("The relocation allowance is £1,300 per move [1].", [FEES]).dropped == 1


def test_a_name_code_or_email_the_cited_chunk_lacks_is_not_checked():
    assert check_citations("Ingrid Solberg runs the Bergen depot [1].", [DEPOT]).dropped == 1
    assert check_citations("Ingrid Solberg runs the Oslo depot [1].", [DEPOT]).dropped == 0
    assert check_citations("Write to help@kestrel.example for help [1].", [FEES]).dropped == 1
    assert check_citations("Write to claims@kestrel.example for help [1].", [FEES]).dropped == 0
    assert check_citations('Cold freight ships on "tier KX-450" [1].', [FEES]).dropped == 1


def test_amounts_in_wan_and_yi_are_multiplied_out():
    assert numbers_in("注册资本1.2万元，年营收3亿") == {"12000", "300000000"}
    assert numbers_in("注册资本12,000元") == {"12000"}
    # 千 also opens units (千克, 千米): left as written.
    assert numbers_in("每箱5千克") == {"5"}
