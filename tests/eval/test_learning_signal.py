"""The scorecard tells a real gain from none: memorized facts give an interval above zero."""

from __future__ import annotations

import pytest
import yaml
from tiny_model import teach

from shoptalk.artifacts import RunArtifact
from shoptalk.eval.questions import Suite
from shoptalk.eval.run import evaluate
from shoptalk.eval.scorecard import Scorecard
from shoptalk.project import Project
from shoptalk.records import DomainQuestion

from projects import FAQ, write_project

pytestmark = pytest.mark.usefixtures("one_thread")

# The fact of each FAQ answer, as the scorecard looks for it.
FACTS = ["47 days", "Ingrid Solberg", "KX-450", "$18", "7:30", "claims@kestrel.example"]


def project_with_run(
    tmp_path, tiny_model, pairs: list[tuple[str, str]]
) -> tuple[Project, RunArtifact]:
    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["eval"]["max_new_tokens"] = 32
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    run = RunArtifact(path=project.runs / "run-taught", run_id="run-taught")
    teach(tiny_model, run.final, pairs, project.config.system_prompt, steps=150, lr=1e-2)
    return project, run


def faq_suite() -> Suite:
    questions = [
        DomainQuestion(question=q, answer=a, must_include=[fact])
        for (q, a), fact in zip(FAQ, FACTS, strict=True)
    ]
    return Suite(name="faq", kind="domain", questions=questions, path="faq.jsonl")


def test_memorized_facts_score_above_the_base_with_an_interval_above_zero(tmp_path, tiny_model):
    project, run = project_with_run(tmp_path, tiny_model, FAQ)
    card = evaluate(project, run, str(tiny_model), [faq_suite()])
    scores = card.suites["faq"]
    assert scores.base["key_fact_recall"] == 0.0
    assert scores.tuned["key_fact_recall"] >= 5 / 6
    mean, low, high = scores.diff["key_fact_recall"]
    assert 0 < low <= mean <= high, "the gain is real: its 95% interval excludes zero"


def test_nothing_learned_gives_an_interval_that_includes_zero(tmp_path, tiny_model):
    unrelated = [(q, "Sure, happy to help.") for q, _ in FAQ]
    project, run = project_with_run(tmp_path, tiny_model, unrelated)
    card = evaluate(project, run, str(tiny_model), [faq_suite()])
    scores = card.suites["faq"]
    assert all(q.tuned_answer.startswith("Sure") for q in card.questions), "it did learn that"
    for metric in ("key_fact_recall", "strict_accuracy"):
        mean, low, high = scores.diff[metric]
        assert low <= 0 <= high, metric


def test_unchanged_answers_are_reused_and_judged_by_the_current_gate(
    tmp_path, tiny_model, monkeypatch
):
    project, run = project_with_run(tmp_path, tiny_model, FAQ)
    card = evaluate(project, run, str(tiny_model), [faq_suite()])
    assert card.gate is not None and card.gate.passed and card.mode == "tuned"
    # A scorecard judged by an older gate: its answers stand, its verdict does not.
    stale = card.model_copy(update={"gate": card.gate.model_copy(update={"passed": False})})
    stored = project.eval_of(run.run_id).scorecard
    stored.write_text(stale.model_copy(update={"mode": "base"}).model_dump_json())

    def no_model(*args, **kwargs):
        raise AssertionError("unchanged inputs: no model is asked again")

    monkeypatch.setattr("shoptalk.eval.run.load_assistant", no_model)
    again = evaluate(project, run, str(tiny_model), [faq_suite()])
    assert again.gate == card.gate and again.mode == "tuned"
    assert Scorecard.model_validate_json(stored.read_text()).mode == "tuned"
    # Another version of shoptalk may answer or verify differently: it asks the model again.
    monkeypatch.setattr("shoptalk.__version__", "0.0.0-other")
    with pytest.raises(AssertionError, match="no model is asked again"):
        evaluate(project, run, str(tiny_model), [faq_suite()])
