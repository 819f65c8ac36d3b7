from __future__ import annotations

from rag_fakes import HashingModel

from shoptalk.rag.chunk import chunk_section, searchable_text, sentence_spans
from shoptalk.records import Chunk

count = HashingModel().tokenizer


def count_tokens(texts: list[str]) -> list[int]:
    return [len(ids) for ids in count(texts)["input_ids"]]


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_english_sentences_keep_abbreviations_numbers_and_initials_whole():
    text = (
        "Dr. Ruiz reviews claims at 9 a.m. every Monday. The surcharge is 13.5% (e.g. on KX-340). "
        "Ask J. Smith! Is it done? Yes.\n- a list item without a period\n| a | table |"
    )
    assert sentences(text) == [
        "Dr. Ruiz reviews claims at 9 a.m. every Monday.",
        "The surcharge is 13.5% (e.g. on KX-340).",
        "Ask J. Smith!",
        "Is it done?",
        "Yes.",
        "- a list item without a period",
        "| a | table |",
    ]


def test_chinese_sentences_split_on_full_width_terminators():
    text = "退货期限是75天。请在期限内提交申请！需要发票吗？需要；“好的。”然后结束"
    assert sentences(text) == [
        "退货期限是75天。",
        "请在期限内提交申请！",
        "需要发票吗？",
        "需要；",
        "“好的。”",
        "然后结束",
    ]


def section(text: str) -> Chunk:
    return Chunk(
        id="s", text=text, source="docs/a.md#Pay", headings=["Handbook", "Pay"], acl=["hr"]
    )


def test_long_section_is_cut_between_sentences_within_budget_with_overlap():
    body = " ".join(f"Sentence number {i} says the rate is {i} dollars." for i in range(40))
    chunks = chunk_section(section(body), count_tokens, max_tokens=60, overlap_tokens=12)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text in body, "a chunk is a verbatim slice of its section"
        assert chunk.text.endswith("dollars."), "never cut mid-sentence"
        assert count_tokens([searchable_text(chunk)])[0] <= 60
        assert (chunk.source, chunk.headings, chunk.acl) == (
            "docs/a.md#Pay",
            ["Handbook", "Pay"],
            ["hr"],
        )
    for before, after in zip(chunks, chunks[1:], strict=False):
        last_sentence = sentences(before.text)[-1]
        assert after.text.startswith(last_sentence), "the next chunk repeats the tail"
    assert len({c.id for c in chunks}) == len(chunks)
    covered = " ".join(c.text for c in chunks)
    assert all(f"number {i} " in covered for i in range(40))


def test_chinese_section_is_chunked_by_sentence():
    body = "".join(f"第{i}条规定退货期限是{i}天。" for i in range(30))
    chunks = chunk_section(section(body), count_tokens, max_tokens=50, overlap_tokens=0)
    assert len(chunks) > 2
    assert all(c.text.endswith("天。") and c.text in body for c in chunks)
    assert "".join(c.text for c in chunks) == body, "no overlap: the pieces add up to the section"


def test_short_section_stays_one_chunk_unchanged():
    short = section("Salaries are paid on the 25th.")
    assert chunk_section(short, count_tokens, max_tokens=200, overlap_tokens=40) == [short]


def test_a_sentence_longer_than_the_budget_is_still_cut():
    body = " ".join(["word"] * 300)
    chunks = chunk_section(section(body), count_tokens, max_tokens=50, overlap_tokens=0)
    assert len(chunks) >= 6 and all(count_tokens([c.text])[0] <= 50 for c in chunks)
