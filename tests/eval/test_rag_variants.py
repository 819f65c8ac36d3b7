"""base+RAG and tuned+RAG: each suite asked again with retrieved documents, or marked not run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from shoptalk.artifacts import RunArtifact
from shoptalk.eval import run as eval_run
from shoptalk.eval.questions import Suite
from shoptalk.eval.run import evaluate
from shoptalk.project import Project
from shoptalk.records import Chunk, DomainQuestion

from projects import write_project

pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = Suite(
    name="faq",
    kind="domain",
    path="faq.jsonl",
    questions=[
        DomainQuestion(question="How long is the claim window?", must_include=["47 days"]),
        DomainQuestion(question="What is the CEO's salary?", must_include=["secret"]),
    ],
)
NOT_FOUND = "I could not find that in our documents."


class FlatEmbedder:
    """Every text alike: sentence selection ranks by the question's words alone."""

    name = "flat"

    def encode(self, texts):
        return np.full((len(texts), 4), 0.5, dtype=np.float32)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


class FakeIndex:
    """Finds the claim-window section for claim questions and nothing for anything else."""

    def __init__(self) -> None:
        from shoptalk.config import RagSettings
        from shoptalk.rag.abstain import DEFAULT_RULE, Abstention

        self.questions: list[str] = []
        self.embedder = FlatEmbedder()
        self.settings = RagSettings()
        self.abstention = Abstention(DEFAULT_RULE, {})

    def search(self, question, groups, top_k, excluded=frozenset()):
        from shoptalk.rag.retrieve import Hit, Retrieval

        self.questions.append(question)
        if "claim" not in question:
            return Retrieval(hits=[], found=False)
        chunk = Chunk(id="c1", text="The claim window is 47 days.", source="handbook.md#Claims")
        return Retrieval(hits=[Hit(chunk=chunk, score=1.0, similarity=0.9)], found=True)


def project_and_run(tmp_path, tiny_model, rag: bool) -> tuple[Project, RunArtifact]:
    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["eval"]["rag"] = rag
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    run = RunArtifact(path=project.runs / "run-same", run_id="run-same")
    shutil.copytree(tiny_model, run.final)
    return project, run


def test_without_rag_the_scorecard_says_the_rag_variants_were_not_run(tmp_path, tiny_model):
    project, run = project_and_run(tmp_path, tiny_model, rag=False)
    card = evaluate(project, run, str(tiny_model), [SUITE])
    assert list(card.suites) == ["faq"]
    assert list(card.not_run) == ["base+RAG", "tuned+RAG"]
    assert "eval.rag is off" in card.not_run["base+RAG"]
    report = (project.evals / run.run_id / "report.html").read_text(encoding="utf-8")
    assert "base+RAG: not run" in report


def test_with_rag_on_but_no_index_the_scorecard_says_what_to_run(tmp_path, tiny_model):
    project, run = project_and_run(tmp_path, tiny_model, rag=True)
    card = evaluate(project, run, str(tiny_model), [SUITE])
    assert list(card.suites) == ["faq"]
    assert "shoptalk index" in card.not_run["tuned+RAG"]


def test_with_rag_both_models_answer_each_suite_again_from_the_same_documents(
    tmp_path, tiny_model, monkeypatch
):
    index = FakeIndex()
    monkeypatch.setattr("shoptalk.rag.retrieve.open_index", lambda project: index)
    monkeypatch.setattr("shoptalk.eval.run.has_index", lambda project: True)
    monkeypatch.setattr(
        "shoptalk.rag.answer.not_found_message", lambda question, sources=None: NOT_FOUND
    )
    asked, held = [], []
    real_answer = eval_run.answer

    def recording_answer(assistant, prompts, *args):
        asked.append(prompts)
        held.append(args[-1])  # what each prompt's numbers must come from (rag.copy_numbers)
        return real_answer(assistant, prompts, *args)

    monkeypatch.setattr("shoptalk.eval.run.answer", recording_answer)
    project, run = project_and_run(tmp_path, tiny_model, rag=True)
    card = evaluate(project, run, str(tiny_model), [SUITE])

    assert list(card.suites) == ["faq", "faq+rag"] and card.not_run == {}
    assert card.suites["faq+rag"].n == 2
    assert index.questions == [q.question for q in SUITE.questions], "retrieval runs once"
    # Each model: 2 plain prompts and 1 with documents (nothing found needs no generation).
    assert [len(p) for p in asked] == [3, 3]
    # The tuned model writes only the passages' numbers (rag.copy_numbers: tuned); the base
    # and every closed-book prompt write freely.
    assert held[0] == [None, None, None] and held[1][:2] == [None, None]
    assert any("47 days" in source for source in held[1][2])
    with_documents = asked[0][2]
    assert "The claim window is 47 days." in with_documents[-1]["content"]
    assert with_documents[0]["content"].startswith(project.config.system_prompt)
    assert with_documents[-1]["content"].startswith("Passages:\n[1] (handbook.md#Claims) ")
    rag_rows = [q for q in card.questions if q.suite == "faq+rag"]
    assert rag_rows[1].base_answer == rag_rows[1].tuned_answer == NOT_FOUND
    # Both questions are in a domain suite: the one not found counts as refused.
    assert card.abstention["tuned+rag"] == {"false_refusal": 0.5, "answerable": 2}
    # The tiny model's noise holds nothing the passage says: the passage is quoted instead.
    assert rag_rows[0].base_answer == '"The claim window is 47 days." [1]'
    rag_scores, closed_book = card.suites["faq+rag"], card.suites["faq"]
    assert rag_scores.base["repaired"] == rag_scores.tuned["repaired"] == 0.5
    assert rag_scores.base["key_fact_recall"] == 0.5
    assert set(rag_scores.diff) >= {"repaired", "unsupported_claims"}
    assert "unsupported_claims" in closed_book.base and "repaired" not in closed_book.base
