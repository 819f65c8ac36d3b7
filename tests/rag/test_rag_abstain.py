from __future__ import annotations

import json

import pytest

from shoptalk.artifacts import ABSTAIN_RULE
from shoptalk.rag.abstain import (
    DEFAULT_RULE,
    coverage,
    fit_rule,
    load_rule,
    save_rule,
    signals,
    term_idf,
)
from shoptalk.rag.select import Passage
from shoptalk.records import Chunk

CORPUS = [
    "The warehouse ships parcels within two days of payment.",
    "Refunds are paid to the original card within fourteen days.",
    "The warehouse closes on public holidays.",
    "Support answers e-mail within one working day.",
]


def _passage(text: str, score: float = 0.5) -> Passage:
    return Passage(text, Chunk(id=text[:8], text=text, source="d.md"), score)


def test_rare_terms_weigh_more_than_common_ones() -> None:
    idf = term_idf(CORPUS)
    # "warehouse" is in two texts, "refunds" in one: covering the rare term counts more.
    assert coverage("warehouse refunds", "refunds", idf) > coverage(
        "warehouse refunds", "warehouse", idf
    )


def test_default_rule_refuses_absent_topic_and_answers_reworded_question() -> None:
    idf = term_idf(CORPUS)
    absent = signals("Do you sell gift vouchers?", [_passage(CORPUS[0])], idf)
    reworded = signals("How fast are refunds paid back?", [_passage(CORPUS[1])], idf)
    assert DEFAULT_RULE.refuses(absent)
    assert not DEFAULT_RULE.refuses(reworded)


def test_no_passages_is_refused() -> None:
    assert DEFAULT_RULE.refuses(signals("anything at all?", [], term_idf(CORPUS)))


def _examples() -> tuple[list[list[float]], list[bool]]:
    values = [[0.6 + 0.01 * i, 0.5 + 0.02 * i, 0.7] for i in range(10)]
    values += [[0.3 + 0.01 * i, 0.05 * i, 0.2] for i in range(10)]
    return values, [True] * 10 + [False] * 10


def test_fit_separates_and_keeps_false_refusals_within_bound() -> None:
    values, answerable = _examples()
    rule = fit_rule(values, answerable, max_false_refusal=0.1)
    refused = [rule.refuses(v) for v in values]
    assert sum(refused[:10]) <= 1  # at most 10% of the answerable ones
    assert sum(refused[10:]) >= 9


def test_fit_is_deterministic() -> None:
    values, answerable = _examples()
    assert fit_rule(values, answerable) == fit_rule(values, answerable)


def test_fit_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="answerable and unanswerable"):
        fit_rule([[0.1, 0.2, 0.3]], [True])


def test_rule_round_trips(tmp_path) -> None:
    values, answerable = _examples()
    rule = fit_rule(values, answerable)
    save_rule(rule, tmp_path / ABSTAIN_RULE)
    assert load_rule(tmp_path / ABSTAIN_RULE) == rule


def test_missing_rule_falls_back_to_default(tmp_path) -> None:
    assert load_rule(tmp_path / ABSTAIN_RULE) == DEFAULT_RULE


def test_broken_rule_names_its_file(tmp_path) -> None:
    path = tmp_path / ABSTAIN_RULE
    path.write_text(json.dumps({"weights": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match=ABSTAIN_RULE):
        load_rule(path)
