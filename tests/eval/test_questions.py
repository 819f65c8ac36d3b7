"""Question suites: the three kinds, suite naming, errors that name file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shoptalk.errors import SourceError
from shoptalk.eval.questions import load_suites, suite_from_faq
from shoptalk.records import DomainQuestion, StyleQuestion, UnanswerableQuestion


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_domain_suite_is_named_after_the_file_and_keeps_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "paraphrased.jsonl",
        [
            {"question": "How long do I have to return?", "must_include": ["47 days"]},
            "",
            {"question": "退货期限多久？", "answer": "75天", "must_include": ["75天"], "note": "x"},
        ],
    )
    [suite] = load_suites([path])
    assert (suite.name, suite.kind, suite.path) == ("paraphrased", "domain", str(path))
    first, second = suite.questions
    assert isinstance(first, DomainQuestion)
    assert (first.file, first.line, first.answer) == (str(path), 1, None)
    assert second.line == 3
    assert second.prompt_text == "退货期限多久？"
    assert second.model_extra == {"note": "x"}  # unknown keys kept, ignored


def test_answer_without_must_include_derives_key_facts(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"question": "Warranty?", "answer": "It is 2 years."}]
    )
    [suite] = load_suites([path])
    assert suite.questions[0].must_include == ["2 years"]


def test_unanswerable_by_expect_or_by_a_bare_question(tmp_path):
    path = write_jsonl(
        tmp_path / "unanswerable.jsonl",
        [{"question": "CEO's salary?", "expect": "refusal"}, {"question": "明年的价格？"}],
    )
    [suite] = load_suites([path])
    assert suite.kind == "unanswerable"
    assert all(isinstance(q, UnanswerableQuestion) for q in suite.questions)


def test_style_question_is_asked_as_its_prompt(tmp_path):
    row = {"prompt": "Say hi", "must_include": ["Acme"], "regex": ["^Hi"]}
    [suite] = load_suites([write_jsonl(tmp_path / "tone.jsonl", [row])])
    [question] = suite.questions
    assert isinstance(question, StyleQuestion)
    assert question.prompt_text == "Say hi"
    assert question.must_not_include == []


def test_mixed_file_splits_into_one_suite_per_kind(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"question": "q1", "must_include": ["a"]},
            {"prompt": "p1"},
            {"question": "q2", "expect": "refusal"},
            {"question": "q3", "must_include": ["b"]},
        ],
    )
    suites = load_suites([path])
    assert [(s.name, s.kind, len(s.questions)) for s in suites] == [
        ("mixed-domain", "domain", 2),
        ("mixed-style", "style", 1),
        ("mixed-unanswerable", "unanswerable", 1),
    ]
    assert [q.line for q in suites[0].questions] == [1, 4]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ([{"question": "ok", "must_include": ["a"]}, '{"question": "x",'], 2, "invalid JSON"),
        ([{"title": "x", "body": "y"}], 1, "found keys ['body', 'title']; expected 'question'"),
        ([{"question": "q", "must_include": "47 days"}], 1, "'must_include' must be a list"),
        ([{"question": "q", "must_include": [47]}], 1, "'must_include' must be a list"),
        ([{"prompt": "p", "regex": ["("]}], 1, "invalid regex"),
        ([{"question": "q", "expect": "answer"}], 1, "'expect' must be"),
        ([{"question": "", "expect": "refusal"}], 1, "'question' must be a non-empty string"),
        ([{"question": "q", "prompt": "p"}], 1, "both 'question' and 'prompt'"),
        (["[1, 2]"], 1, "expected a JSON object"),
        ([{"question": "q", "must_include": []}], 1, "needs a non-empty 'must_include'"),
    ],
)
def test_errors_name_file_and_line(tmp_path, rows, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SourceError, match=re.escape(message)) as info:
        load_suites([path])
    assert (info.value.path, info.value.line) == (str(path), line)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(SourceError, match="no questions") as info:
        load_suites([path])
    assert info.value.path == str(path)


def test_two_suites_with_one_name_are_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    row = [{"question": "q"}]
    paths = [write_jsonl(tmp_path / d / "same.jsonl", row) for d in ("a", "b")]
    with pytest.raises(SourceError, match="already used"):
        load_suites(paths)


def test_suite_from_faq_derives_must_include_and_points_at_the_row():
    suite = suite_from_faq(
        "heldout",
        [
            (
                "How long is the return window?",
                "Returns are accepted within 47 days.",
                "faq.csv:12",
            ),
            ("保修多久？", "KX-220 的保修期为一年。", "faq.csv:30"),
        ],
    )
    assert (suite.name, suite.kind, suite.path) == ("heldout", "domain", "faq.csv")
    first, second = suite.questions
    assert first.must_include == ["47 days"]
    assert (first.file, first.line, first.source) == ("faq.csv", 12, "faq.csv:12")
    assert second.must_include == ["一年", "KX-220"]
