"""Scoring answers into a scorecard, its JSON shape, atomic writes and the table."""

from __future__ import annotations

import json
import os

import pytest
from rich.console import Console

from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import (
    Scorecard,
    build_scorecard,
    read_scorecard,
    render_table,
    score_suite,
    write_scorecard,
)
from shoptalk.records import DomainQuestion, StyleQuestion, UnanswerableQuestion


def domain_suite() -> Suite:
    questions = [
        DomainQuestion(
            question="How long is the return window?",
            answer="47 days",
            must_include=["47 days", "receipt"],
            file="faq.jsonl",
            line=1,
            source="faq.csv:3",
        ),
        DomainQuestion(question="退货期限？", answer="今天天气不错", must_include=["75天"], line=2),
        DomainQuestion(question="Model?", must_include=["KX-220"], line=3),  # no reference
    ]
    return Suite(name="faq", kind="domain", questions=questions, path="faq.jsonl")


def unanswerable_suite() -> Suite:
    questions = [UnanswerableQuestion(question=q, line=i) for i, q in enumerate(["a?", "b?"], 1)]
    return Suite(name="unanswerable", kind="unanswerable", questions=questions, path="u.jsonl")


def style_suite() -> Suite:
    questions = [StyleQuestion(prompt="Greet", must_include=["Acme"], regex=["^Hi"], line=1)]
    return Suite(name="tone", kind="style", questions=questions, path="tone.jsonl")


def test_score_suite_domain_hand_values():
    base = ["It is 47 days.", "我不知道", "The KX-220."]
    tuned = ["47 days with a receipt.", "退货期限为 75 天", "kx-220"]
    scores, results = score_suite(domain_suite(), base, tuned)
    assert (scores.n, scores.kind) == (3, "domain")
    assert list(scores.base) == [
        "key_fact_recall",
        "strict_accuracy",
        "rouge_l",
        "token_f1",
        "bleu",
        "false_refusal_rate",
        "corpus_bleu",
    ]
    # An answerable question refused ("我不知道") is a false refusal.
    assert scores.base["false_refusal_rate"] == pytest.approx(1 / 3)
    assert scores.tuned["false_refusal_rate"] == 0.0
    # recall per question: base 1/2, 0, 1; tuned 1, 1, 1.
    assert scores.base["key_fact_recall"] == pytest.approx(0.5)
    assert scores.tuned["key_fact_recall"] == pytest.approx(1.0)
    assert scores.base["strict_accuracy"] == pytest.approx(1 / 3)
    assert scores.tuned["strict_accuracy"] == pytest.approx(1.0)
    # ROUGE-L only over the two questions with a reference answer:
    # "it is 47 days" vs "47 days": LCS 2, P 2/4, R 1 -> F 2/3;
    # "我不知道" vs "今天天气不错": LCS 不, P 1/4, R 1/6 -> F 1/5.
    assert scores.base["rouge_l"] == pytest.approx((2 / 3 + 1 / 5) / 2)
    assert scores.diff["key_fact_recall"][0] == pytest.approx(0.5)
    # BLEU, like ROUGE-L, only over the questions with a reference; corpus BLEU
    # sums the n-gram counts of both: "47 days" (2 unigrams, 1 bigram) is inside
    # the tuned answer, "退货期限为 75 天" shares nothing with "今天天气不错" but 天.
    assert scores.tuned["corpus_bleu"] == pytest.approx(0.0)  # no 3-gram matches at all
    assert scores.tuned["bleu"] > 0
    mean, low, high = scores.diff["corpus_bleu"]
    assert low <= mean <= high
    assert all(len(d) == 3 for d in scores.diff.values())
    first = results[0]
    assert (first.suite, first.reference, first.source, first.file, first.line) == (
        "faq",
        "47 days",
        "faq.csv:3",
        "faq.jsonl",
        1,
    )
    assert [(r.base_score, r.tuned_score) for r in results] == [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0)]


def test_score_suite_unanswerable_and_style():
    scores, results = score_suite(
        unanswerable_suite(), ["Paris.", "我不知道"], ["I don't know", "没有相关信息"]
    )
    assert scores.base == {"refusal_rate": 0.5}
    assert scores.tuned == {"refusal_rate": 1.0}
    assert results[0].must_include == [] and results[0].reference is None
    scores, results = score_suite(style_suite(), ["Hello from Acme"], ["Hi! Acme here."])
    assert (scores.base, scores.tuned) == ({"style_pass_rate": 0.0}, {"style_pass_rate": 1.0})
    assert results[0].prompt == "Greet"


def test_score_suite_rejects_a_wrong_number_of_answers():
    with pytest.raises(ValueError, match="3 questions but 2 base"):
        score_suite(domain_suite(), ["a", "b"], ["a", "b", "c"])


def make_card() -> Scorecard:
    answers = {
        "faq": (["?", "?", "?"], ["47 days receipt", "75天", "KX-220"]),
        "unanswerable": (["Paris", "Rome"], ["I don't know", "我不知道"]),
        "tone": (["Hi Acme"], ["Hello"]),
    }
    suites = [domain_suite(), unanswerable_suite(), style_suite()]
    return build_scorecard("run-1", "SmolLM2-135M-Instruct", suites, answers)


def test_build_scorecard_requires_answers_for_every_suite():
    with pytest.raises(ValueError, match="tone"):
        build_scorecard("r", "m", [style_suite()], {})


def test_scorecard_json_shape_round_trips(tmp_path):
    card = make_card()
    card.timing["generate_s"] = 1.5
    path = tmp_path / "evals" / "run-1" / "scorecard.json"
    write_scorecard(card, path)
    text = path.read_text(encoding="utf-8")
    assert "我不知道" in text  # ensure_ascii=False
    data = json.loads(text)
    assert {"run_id", "base_model", "created", "suites", "questions", "timing"} <= set(data)
    assert data["created"].endswith("+00:00")
    faq = data["suites"]["faq"]
    assert faq["n"] == 3 and faq["kind"] == "domain"
    assert isinstance(faq["base"]["key_fact_recall"], float)
    assert data["suites"]["unanswerable"]["tuned"] == {"refusal_rate": 1.0}
    assert len(data["suites"]["tone"]["diff"]["style_pass_rate"]) == 3
    assert len(data["questions"]) == 6
    assert read_scorecard(path) == card


def test_write_scorecard_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "scorecard.json"
    write_scorecard(make_card(), path)
    write_scorecard(make_card(), path)  # overwrite in place
    assert os.listdir(tmp_path) == ["scorecard.json"]
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_scorecard(make_card(), path)
    assert os.listdir(tmp_path) == ["scorecard.json"]  # no temp file left behind
    assert path.read_bytes() == before


def test_render_table_has_a_row_per_suite_metric_and_colours_real_changes():
    card = make_card()
    table = render_table(card)
    # domain metrics with BLEU, false refusals and corpus BLEU
    assert table.row_count == 7 + 1 + 1
    console = Console(record=True, width=160, color_system=None)
    console.print(table)
    text = console.export_text()
    for name in ("faq", "unanswerable", "tone", "key_fact_recall", "refusal_rate", "token_f1"):
        assert name in text
    change = table.columns[5]._cells
    metrics = table.columns[2]._cells
    styles = {
        m: str(c.spans[0].style) if c.spans else "" for m, c in zip(metrics, change, strict=True)
    }
    # unanswerable: base 0/2 refusals, tuned 2/2 -> every resample gains +1.
    assert styles["refusal_rate"] == "green"
    # tone: base passes (Hi ... Acme), tuned fails -> -1 in every resample.
    assert styles["style_pass_rate"] == "red"
    assert "+1.000 [+1.000, +1.000]" in text


def test_each_mode_reports_refusals_where_due_and_answerable_questions_refused(tmp_path):
    from shoptalk.eval.report import render_report
    from shoptalk.eval.scorecard import abstention_rates

    suites = [domain_suite(), unanswerable_suite()]
    rag = [s.model_copy(update={"name": f"{s.name}+rag"}) for s in suites]
    refused = "I could not find this in the documents. (Searched: docs/a.md#A.)"
    answers = {
        "faq": (["?", "?", "?"], ["47 days receipt", "75天", "KX-220"]),
        "unanswerable": (["Paris", "Rome"], ["I don't know", "我不知道"]),
        # With retrieval: one answerable question refused by base, all unanswerable ones.
        "faq+rag": ([refused, "47 days", "KX-220"], ["47 days", "75天", "KX-220"]),
        "unanswerable+rag": ([refused, refused], [refused, "Rome"]),
    }
    card = build_scorecard("run-1", "m", suites + rag, answers)
    card.abstention = abstention_rates(card)
    assert card.abstention["base+rag"] == pytest.approx(
        {"refusal": 1.0, "unanswerable": 2, "false_refusal": 1 / 3, "answerable": 3}
    )
    assert card.abstention["tuned+rag"]["refusal"] == 0.5
    assert card.abstention["tuned+rag"]["false_refusal"] == 0.0
    assert card.abstention["base"]["refusal"] == 0.0 and card.abstention["tuned"]["refusal"] == 1
    assert card.suites["faq+rag"].base["false_refusal_rate"] == pytest.approx(1 / 3)
    path = tmp_path / "scorecard.json"
    write_scorecard(card, path)
    assert json.loads(path.read_text())["abstention"]["base+rag"]["false_refusal"] == 1 / 3
    page = render_report(card)
    assert "<h2>Abstention</h2>" in page and "answerable questions refused" in page
    assert "<td>base+rag</td><td class=n>1.000 <span class=meta>(n=2)</span></td>" in page


def test_a_custom_refusal_answer_is_counted_as_a_refusal():
    from shoptalk.eval.scorecard import abstention_rates

    own = "Please ask the front desk."
    suites = [domain_suite(), unanswerable_suite()]
    answers = {
        "faq": (["?", "?", "?"], ["47 days receipt", own, "KX-220"]),
        "unanswerable": (["Paris", "Rome"], [own, "Rome"]),
    }
    card = build_scorecard("run-1", "m", suites, answers, own)
    card.abstention = abstention_rates(card, refusal=own)
    assert card.suites["unanswerable"].tuned["refusal_rate"] == 0.5
    assert card.suites["faq"].tuned["false_refusal_rate"] == pytest.approx(1 / 3)
    assert card.abstention["tuned"]["refusal"] == 0.5
    assert (
        build_scorecard("run-1", "m", suites, answers).suites["unanswerable"].tuned["refusal_rate"]
        == 0.0
    )
