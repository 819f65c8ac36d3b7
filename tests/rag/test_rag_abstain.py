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


# --- fitted at index time, used before generation ---------------------------------------

# FAQ rows whose answers the documents (rag_fakes) also state, and one only the FAQ holds.
FAQ_ROWS = [
    ("How long do customers have to file a claim?", "Customers have 47 days to file a claim."),
    ("Who looks at the big claims?", "Dr. Ana Ruiz reviews claims over $5,000 on Mondays."),
    ("Who is in charge of the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    ("When can I get into the depot?", "The depot opens at 06:00."),
    ("When do we get paid?", "Salaries are paid on the 25th of each month."),
    ("How is overtime paid?", "Overtime is paid at 1.5 times the hourly rate."),
    ("退货要在多少天内申请？", "退货期限是75天。"),
    ("What is the office wifi password?", "The guest wifi password is on the kitchen door."),
]


def _faq_project(root, rows=FAQ_ROWS, questions=None):
    import csv

    import yaml
    from rag_fakes import write_rag_project

    write_rag_project(root)
    with (root / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(rows)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["sources"]["faq"] = ["faq.csv"]
    if questions is not None:
        (root / "questions.jsonl").write_text(questions, encoding="utf-8")
        config["sources"]["questions"] = ["questions.jsonl"]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


@pytest.fixture
def few_rows(monkeypatch):
    # The test FAQ is a handful of rows; a project's needs MIN_ROWS of each kind.
    monkeypatch.setattr("shoptalk.rag.abstain.MIN_ROWS", 2)


def _indexed(root):
    from rag_fakes import fake_embedder

    from shoptalk.project import Project
    from shoptalk.rag.index import index_project
    from shoptalk.rag.retrieve import open_index

    project = Project.open(root)
    embedder = fake_embedder()
    index_project(project, embedder)
    return project, open_index(project, embedder), embedder


def test_the_index_stage_fits_the_rule_on_the_projects_faq_and_writes_it(tmp_path, few_rows):
    project, index, _ = _indexed(_faq_project(tmp_path / "p"))
    written = json.loads((project.index / ABSTAIN_RULE).read_text(encoding="utf-8"))
    fit = written["fit"]
    assert fit["fitted"] and fit["answerable"] >= 2 and fit["unanswerable"] >= 2
    # Only rows another chunk also states are answerable without their own row.
    assert fit["answerable"] <= len(FAQ_ROWS) - 1
    assert fit["false_refusal"] <= fit["max_false_refusal"] == 0.1
    assert index.rule == load_rule(project.index / ABSTAIN_RULE)
    assert index.rule.weights != DEFAULT_RULE.weights


def test_the_fit_is_deterministic(tmp_path, few_rows):
    first, _, _ = _indexed(_faq_project(tmp_path / "a"))
    second, _, _ = _indexed(_faq_project(tmp_path / "b"))
    read = [json.loads((p.index / ABSTAIN_RULE).read_text()) for p in (first, second)]
    assert read[0] == read[1]


def test_the_fit_never_reads_the_evaluation_questions(tmp_path, few_rows):
    asked = json.dumps({"question": "Who runs the Oslo depot?", "must_include": ["Ingrid"]})
    root = _faq_project(tmp_path / "p", questions=asked + "\n")
    project, _, _ = _indexed(root)
    before = (project.index / ABSTAIN_RULE).read_text()
    (root / "questions.jsonl").write_text(asked.replace("Oslo", "Bergen") + "\n")
    _, _, embedder = _indexed(root)
    assert (project.index / ABSTAIN_RULE).read_text() == before
    assert embedder.model.embedded == []  # nothing changed that the fit reads: not refitted


def test_too_few_rows_keep_the_default_rule_and_say_so(tmp_path):
    project, index, _ = _indexed(_faq_project(tmp_path / "p", rows=FAQ_ROWS[:2]))
    assert index.rule.weights == DEFAULT_RULE.weights
    assert index.rule.fit is not None and not index.rule.fit.fitted


def _no_model(*args, **kwargs):
    raise AssertionError("the model was asked though the passages do not answer")


@pytest.mark.parametrize(
    ("question", "answer", "refused"),
    [
        ("Do customers get gift vouchers, cashback coupons or loyalty points?", None, True),
        ("退货期限内可以换礼品卡或者积分吗？", None, True),
        ("How many days do customers have to file a freight claim?", "47 days [1].", False),
        ("退货期限是多少天？", "退货期限是75天[1]。", False),
    ],
)
def test_passages_that_do_not_answer_are_refused_before_generation(
    tmp_path, monkeypatch, question, answer, refused
):
    from shoptalk.rag.answer import NOT_FOUND, answer_with_citations
    from shoptalk.rag.bm25 import language

    _, index, _ = _indexed(_faq_project(tmp_path / "p"))
    reply = _no_model if refused else (lambda *args, **kwargs: [answer])
    monkeypatch.setattr("shoptalk.rag.answer.answer", reply)
    result = answer_with_citations(object(), index, question, None)
    if refused:
        assert result.status == "not_found" and not result.found
        assert result.message.startswith(NOT_FOUND[language(question)])
        # What was searched is named, in the message and the passages shown.
        assert result.retrieved and result.retrieved[0].source in result.message
    else:
        assert result.status == "verified" and result.message == answer
