"""The HTML report: self-contained, escaped, facts highlighted, questions sorted by change."""

from __future__ import annotations

import os
from html.parser import HTMLParser

from shoptalk.eval.questions import Suite
from shoptalk.eval.report import find_spans, highlight, render_report, write_report
from shoptalk.eval.scorecard import Scorecard, build_scorecard
from shoptalk.records import DomainQuestion, UnanswerableQuestion


def make_card() -> Scorecard:
    faq = Suite(
        name="faq",
        kind="domain",
        path="faq.jsonl",
        questions=[
            DomainQuestion(question="退货期限？", answer="75天", must_include=["75天"], line=1),
            DomainQuestion(
                question="<script>alert(1)</script> window?",
                answer="47 days",
                must_include=["47 days", "receipt"],
                line=2,
            ),
            DomainQuestion(question="Model?", must_include=["KX-220"], line=3),
        ],
    )
    unknown = Suite(
        name="unanswerable",
        kind="unanswerable",
        path="u.jsonl",
        questions=[UnanswerableQuestion(question="CEO's shoe size?", line=1)],
    )
    answers = {
        # change per question: +1 (75 天), -0.5 (receipt lost), 0 (KX-220 both).
        "faq": (
            ["不知道", "47 days with a receipt", "KX-220"],
            ["退货期限为 75 天", "47 DAYS", "kx-220"],
        ),
        # refusal: base refuses, tuned answers -> -1, the biggest regression.
        "unanswerable": (["I don't know."], ["Size 44."]),
    }
    card = build_scorecard("run-7", "SmolLM2-135M-Instruct", [faq, unknown], answers)
    card.timing = {"base_seconds": 2.0, "tuned_seconds": 2.5, "questions_per_second": 1.78}
    return card


class Page(HTMLParser):
    """Collects tags, <mark> texts and the question table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.marks: list[str] = []
        self.rows: list[list[tuple[dict, str]]] = []
        self._in_mark = self._in_questions = False
        self._cell: tuple[dict, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "questions":
            self._in_questions = True
        elif tag == "tr" and self._in_questions and "data-suite" in attrs:
            self.rows.append([])
        elif tag == "td" and self._in_questions and self.rows:
            self._cell = (attrs, [])
        self._in_mark = self._in_mark or tag == "mark"

    def handle_endtag(self, tag):
        if tag == "mark":
            self._in_mark = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append((self._cell[0], "".join(self._cell[1])))
            self._cell = None
        elif tag == "table":
            self._in_questions = False

    def handle_data(self, data):
        if self._in_mark:
            self.marks.append(data)
        if self._cell is not None:
            self._cell[1].append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_report_is_self_contained_with_a_chart_per_suite():
    html = render_report(make_card())
    page = parse(html)
    assert page.tags.count("svg") == html.count("<svg") == 2
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.tags.count("script") == 1  # ours, inline
    for text in ("run-7", "SmolLM2-135M-Instruct", "questions per second", "1.78"):
        assert text in html
    # Each metric's change with its 95% interval is written beside the bars.
    assert "+1.000 [+1.000, +1.000]" not in html  # faq changes are mixed
    assert "-1.000 [-1.000, -1.000]" in html  # unanswerable refusal_rate


def test_report_escapes_every_text():
    html = render_report(make_card())
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; window?" in html
    assert "CEO&#x27;s shoe size?" in html


def test_found_keys_are_highlighted_across_case_and_whitespace():
    page = parse(render_report(make_card()))
    assert "75 天" in page.marks  # key "75天"
    assert "47 DAYS" in page.marks  # key "47 days"
    assert "kx-220" in page.marks and "KX-220" in page.marks
    assert "receipt" in page.marks  # base answer has it; tuned answer does not
    assert highlight("退货期限为 75 天。", ["75天"]) == "退货期限为 <mark>75 天</mark>。"
    assert highlight("a <b> 47  days", ["47 DAYS"]) == "a &lt;b&gt; <mark>47  days</mark>"


def test_find_spans_maps_folded_matches_back_to_the_raw_answer():
    assert find_spans("ＫＸ－２２０!", ["KX-220"]) == [(0, 6)]  # full-width, NFKC
    assert find_spans("Große Straße", ["STRASSE"]) == [(6, 12)]  # casefold ß -> ss
    assert find_spans("cafe\u0301 ok", ["café"]) == [(0, 5)]  # combining accent
    assert find_spans("aaa", ["aa", "a"]) == [(0, 3)]  # overlaps merged
    assert find_spans("KX 220", ["KX-220"]) == []  # punctuation is kept, like the metrics
    assert find_spans("anything", ["", "  "]) == []


def test_question_rows_are_sorted_by_change_with_regressions_first():
    page = parse(render_report(make_card()))
    changes = [float(row[8][0]["data-v"]) for row in page.rows]
    assert changes == sorted(changes)
    assert changes[0] == -1.0 and changes[-1] == 1.0
    first, last = page.rows[0], page.rows[-1]
    assert [cell for _, cell in first[:2]] == ["unanswerable", "CEO's shoe size?"]
    assert last[1][1] == "退货期限？" and last[3][1] == "75天"
    assert len(first) == 9  # no judge column when no question has a verdict


def test_judge_verdict_column_appears_when_results_carry_one():
    card = make_card()
    assert "<th>judge</th>" not in render_report(card)
    card.questions = [q.model_copy(update={"judge_verdict": "better"}) for q in card.questions]
    page = parse(render_report(card))
    assert all(len(row) == 10 and row[9][1] == "better" for row in page.rows)


def test_write_report_is_atomic(tmp_path):
    path = tmp_path / "evals" / "run-7" / "report.html"
    write_report(make_card(), path)
    write_report(make_card(), path)
    assert os.listdir(path.parent) == ["report.html"]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
