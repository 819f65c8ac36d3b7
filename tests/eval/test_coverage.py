"""Per-fact coverage: one question per fact of the documents and FAQ, recall per document,
English and Chinese, a capped deterministic sample, coverage.json reused when unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoptalk.artifacts import DatasetArtifact, write_jsonl
from shoptalk.eval import coverage as cov
from shoptalk.eval.coverage import (
    Coverage,
    collect_facts,
    coverage_section,
    fact_of,
    measure_coverage,
    sample_facts,
)
from shoptalk.project import Project
from shoptalk.records import Conversation, Message


def record(kind: str, question: str, answer: str, source: str) -> Conversation:
    return Conversation(
        id=f"{kind}-{question}",
        messages=[
            Message(role="user", content=question),
            Message(role="assistant", content=answer),
        ],
        source=source,
        kind=kind,
    )


RECORDS = [
    record(
        "doc_qa",
        "Claims are accepted within how many days?",
        "Claims are accepted within 47 days of delivery.",
        "docs/claims.md#Window",
    ),
    # A second question for the same sentence: the fact is counted once.
    record(
        "doc_qa",
        "Quick question: claims are accepted within how many days?",
        "Claims are accepted within 47 days of delivery.",
        "docs/claims.md#Window",
    ),
    record(
        "doc_qa", "冷库温度是多少度？", "冷库温度保持在4度，退货期限为75天。", "docs/仓库.md#冷库"
    ),
    record(
        "faq", "Who runs the Oslo depot?", "The Oslo depot is run by Ingrid Solberg.", "faq.csv:3"
    ),
    record("paraphrase", "Hi! Who runs the Oslo depot?", "Ingrid Solberg runs it.", "faq.csv:3"),
    record("chat", "Who are you?", "I am the assistant.", "chats.jsonl:1"),
]


def test_each_fact_once_with_the_key_facts_its_question_does_not_give_away():
    facts = collect_facts_of(RECORDS)
    assert [(f.document, f.kind) for f in facts] == [
        ("docs/claims.md", "document"),
        ("docs/仓库.md", "document"),
        ("faq.csv", "faq"),
    ]
    claims, chinese, faq = facts
    assert claims.key_facts == ["47 days"]
    assert claims.question == "Claims are accepted within how many days?"
    assert "75天" in chinese.key_facts
    # "Oslo depot" is in the question: only the name is the fact.
    assert faq.key_facts == ["Ingrid Solberg"]


def test_a_record_of_another_kind_carries_no_fact():
    assert fact_of(RECORDS[-1]) is None and fact_of(RECORDS[-2]) is None


def collect_facts_of(records: list[Conversation], tmp: Path | None = None) -> list:
    class Data:
        def conversations(self, split: str) -> list[Conversation]:
            return records if split == "train" else []

    return collect_facts(Data())  # type: ignore[arg-type]


def test_the_sample_is_capped_per_document_and_the_same_every_time():
    many = [
        record(
            "doc_qa", f"Rule {i}: how many days?", f"Rule {i} allows {10 + i} days.", f"docs/{d}.md"
        )
        for d in ("a", "b")
        for i in range(20)
    ]
    facts = collect_facts_of(many)
    picked = sample_facts(facts, 5, seed=7)
    assert [f.document for f in picked].count("docs/a.md") == 5
    assert [f.document for f in picked].count("docs/b.md") == 5
    assert picked == sample_facts(facts, 5, seed=7)
    assert picked != sample_facts(facts, 5, seed=8)
    assert sample_facts(facts, None, seed=7) == facts


@pytest.fixture
def project(tmp_path) -> Project:
    (tmp_path / "shoptalk.yaml").write_text(
        "name: T\neval:\n  coverage:\n    max_facts_per_document: 4\n", encoding="utf-8"
    )
    return Project.open(tmp_path)


def test_coverage_is_measured_written_shown_and_reused(project, tmp_path, monkeypatch):
    dataset = DatasetArtifact(path=tmp_path / "data", hash="h")
    dataset.path.mkdir()
    write_jsonl(dataset.split_file("train"), RECORDS)
    asked: list[list[str]] = []

    def fake_answers(project, assistant, suites, rag, phase):
        assert phase == "eval: coverage answers", "a build's log shows its progress"
        (suite,) = suites
        asked.append([q.prompt_text for q in suite.questions])
        # Recalls the claim window and the Chinese fact, not the depot's manager.
        replies = ["Within 47 days.", "退货期限是 75 天，温度4度。", "I don't know."]
        return {suite.name: replies}, {}

    monkeypatch.setattr(cov, "load_assistant", lambda *a: object())
    monkeypatch.setattr(cov, "answer_suites", fake_answers)
    monkeypatch.setattr(cov, "has_index", lambda p: False)
    run = project.run("run-x")
    found = measure_coverage(project, run, "base", dataset)
    assert found is not None and not found.rag
    assert [f.closed_book_recall for f in found.facts] == [1.0, 1.0, 0.0]
    assert all(f.rag is None for f in found.facts)
    written = Coverage.model_validate_json(project.eval_of("run-x").coverage.read_text())
    assert written == found
    assert written.facts_total == {"docs/claims.md": 1, "docs/仓库.md": 1, "faq.csv": 1}
    # Unchanged inputs: the file is reused, the model not asked again.
    assert measure_coverage(project, run, "base", dataset) == found
    assert len(asked) == 1
    html = coverage_section(found)
    assert "docs/仓库.md: closed book 1/1" in html and "faq.csv: closed book 0/1" in html
    assert "<mark>47 days</mark>" in html


def test_coverage_can_be_turned_off(project, tmp_path):
    off = Project(project.root, project.config.model_copy(deep=True))
    off.config.eval.coverage.enabled = False
    dataset = DatasetArtifact(path=tmp_path / "data", hash="h")
    assert measure_coverage(off, off.run("run-x"), "base", dataset) is None
