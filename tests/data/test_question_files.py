"""Question files read as records: every problem reported at once; key facts of an answer."""

from __future__ import annotations

import pytest

from shoptalk.data.questions import key_facts, read_questions
from shoptalk.errors import SourceError
from shoptalk.records import DomainQuestion, UnanswerableQuestion


def test_with_an_error_list_every_bad_line_is_reported_and_good_ones_kept(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "How long?", "answer": "47 days"}\n'
        "not json\n"
        '{"question": "q", "must_include": "47 days"}\n'
        '{"question": "What is the CEO\'s salary?"}\n',
        encoding="utf-8",
    )
    errors: list[SourceError] = []
    questions = read_questions(path, errors)
    assert [type(q) for q in questions] == [DomainQuestion, UnanswerableQuestion]
    assert questions[0].must_include == ["47 days"] and questions[1].line == 4
    assert [e.line for e in errors] == [2, 3]


def test_a_missing_or_empty_file_is_one_error(tmp_path):
    errors: list[SourceError] = []
    assert read_questions(tmp_path / "gone.jsonl", errors) == []
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    assert read_questions(tmp_path / "empty.jsonl", errors) == []
    assert ["not found" in e.detail or "empty" in e.detail for e in errors] == [True, True]


@pytest.mark.parametrize(
    ("answer", "facts"),
    [
        ("Returns are accepted within 47 days of purchase.", ["47 days"]),
        ("The KX-220 ships with a two-year warranty.", ["KX-220"]),
        ("退货期限为75天。", ["75天"]),
        ("退货期限为 75 天，请保留发票。", ["75 天"]),
        ("The repair costs $1,250 plus a 3.5% fee.", ["$1,250", "3.5%"]),
        ("价格是1,250元，型号A4。", ["1,250元", "A4"]),
        ("Delivery takes 3-5 business days.", ["3-5 business days"]),
        ("Please email help@acme.com or ask Maria Chen.", ["Maria Chen", "help@acme.com"]),
        # "Maria" may be capitalized only because it opens the sentence.
        ("Maria Chen handles refunds at Acme Home Goods.", ["Acme Home Goods"]),
        ("We were founded in 1998 by two friends.", ["1998"]),
        ("Our store sells handmade furniture.", ["furniture"]),
        ("本店支持七天无理由退货。", ["七天"]),
        ("我们提供免费送货服务，营业时间是周一到周五。", ["营业时间"]),
        ("", []),
    ],
)
def test_key_facts(answer, facts):
    assert key_facts(answer) == facts
