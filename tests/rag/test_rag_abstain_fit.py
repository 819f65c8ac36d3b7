"""The abstention rule is fitted at index time on the project's own FAQ, and written beside it."""

from __future__ import annotations

import json

import pytest
from rag_fakes import FAQ_ROWS, fake_embedder, write_faq_project

from shoptalk.artifacts import ABSTAIN_RULE
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, load_rule
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index


@pytest.fixture
def few_rows(monkeypatch):
    # The test FAQ is a handful of rows; a project's needs MIN_ROWS of each kind.
    monkeypatch.setattr("shoptalk.rag.abstain_fit.MIN_ROWS", 2)


def _indexed(root):
    project = Project.open(root)
    embedder = fake_embedder()
    report = index_project(project, embedder)
    assert "abstention" in report.summary()  # the index stage says which rule it wrote
    return project, open_index(project, embedder), embedder


def test_the_index_stage_fits_the_rule_on_the_projects_faq_and_writes_it(tmp_path, few_rows):
    project, index, _ = _indexed(write_faq_project(tmp_path / "p"))
    written = json.loads((project.index / ABSTAIN_RULE).read_text(encoding="utf-8"))
    fit = written["fit"]
    assert fit["fitted"] and fit["answerable"] >= 2 and fit["unanswerable"] >= 2
    # Only rows another chunk also states are answerable without their own row.
    assert fit["answerable"] <= len(FAQ_ROWS) - 1
    assert fit["false_refusal"] <= fit["max_false_refusal"] == 0.05
    assert index.rule == load_rule(project.index / ABSTAIN_RULE)
    assert index.rule.weights != DEFAULT_RULE.weights


def test_the_fit_is_deterministic(tmp_path, few_rows):
    first, _, _ = _indexed(write_faq_project(tmp_path / "a"))
    second, _, _ = _indexed(write_faq_project(tmp_path / "b"))
    read = [json.loads((p.index / ABSTAIN_RULE).read_text()) for p in (first, second)]
    assert read[0] == read[1]


def test_the_fit_never_reads_the_evaluation_questions(tmp_path, few_rows):
    asked = json.dumps({"question": "Who runs the Oslo depot?", "must_include": ["Ingrid"]})
    root = write_faq_project(tmp_path / "p", questions=asked + "\n")
    project, _, _ = _indexed(root)
    before = (project.index / ABSTAIN_RULE).read_text()
    (root / "questions.jsonl").write_text(asked.replace("Oslo", "Bergen") + "\n")
    _, _, embedder = _indexed(root)
    assert (project.index / ABSTAIN_RULE).read_text() == before
    assert embedder.model.embedded == []  # nothing changed that the fit reads: not refitted


def test_too_few_rows_keep_the_default_rule_and_say_so(tmp_path):
    project, index, _ = _indexed(write_faq_project(tmp_path / "p", rows=FAQ_ROWS[:2]))
    assert index.rule.weights == DEFAULT_RULE.weights
    assert index.rule.fit is not None and not index.rule.fit.fitted
