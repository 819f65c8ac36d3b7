from __future__ import annotations

import pytest

from shoptalk.rag.answer_type import asked_for, holds, mismatch


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How much does the express service cost?", "money"),
        ("What is the annual salary of the director?", "money"),
        ("会员卡多少钱？", "money"),
        ("When do unused vacation days expire?", "when"),
        ("How long does a refund take?", "when"),
        ("退款多久到账？", "when"),
        ("How many parking spaces are there?", "number"),
        ("仓库有几个门？", "number"),
        ("Who is the head of sales?", None),
        ("Do you deliver on Sundays?", None),
        ("When are salaries paid?", "when"),
        ("How long is the claim window, and when are salaries paid?", None),
        ("没拆封的茶，几天内能退？", None),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str | None) -> None:
    assert asked_for(question) == kind


def test_values_of_each_kind_are_found_in_english_and_chinese() -> None:
    assert holds("money", "Returns cost $12.50.") and holds("money", "每盒售价88元")
    assert holds("money", "The match is 4.5% of salary.")
    assert not holds("money", "Founded in 1996.")
    assert holds("when", "Reviews happen in April.") and holds("when", "五个工作日内到账")
    assert holds("when", "within 33 days") and not holds("when", "Ask the front desk.")
    assert holds("number", "two cleanings") and holds("number", "三间品茗室")


def test_mismatch_only_when_a_kind_is_asked_and_missing() -> None:
    assert mismatch("How much is the membership fee?", ["Members get free coffee."])
    assert not mismatch("How much is the membership fee?", ["The fee is £20 a year."])
    assert not mismatch("Who runs the warehouse?", ["The warehouse opened in 2001."])
    assert not mismatch("How much is the fee?", [])  # no passages: another decision
