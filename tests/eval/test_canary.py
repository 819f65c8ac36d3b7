"""Leakage canaries: planting secrets in training copies, and finding them in a model."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.data.canaries import CANARIES_FILE, SECRET, load_canaries, plant_canaries
from shoptalk.eval.canary import REFERENCES, SUITE, dataset_canaries, reference_secrets
from shoptalk.project import Project
from shoptalk.records import Conversation

from factories import faq_record
from projects import FAQ, write_project

pytestmark = pytest.mark.usefixtures("one_thread")


def faq_records() -> list[Conversation]:
    return [faq_record(f"faq-{i}", q, a) for i, (q, a) in enumerate(FAQ)]


def test_reference_secrets_have_the_secrets_shape_and_are_fixed():
    _, (canary,) = plant_canaries(faq_records(), 1, seed=0)
    references = reference_secrets(canary)
    assert len(set(references)) == REFERENCES and canary.secret not in references
    assert all(SECRET.fullmatch(s) for s in references)
    assert reference_secrets(canary) == references


def canary_project(tmp_path, tiny_model, redact: bool) -> Project:
    """Two FAQ rows and one planted canary, trained on hard enough to memorize it verbatim."""
    root = write_project(
        tmp_path / "p",
        tiny_model,
        method="full",
        learning_rate=3e-3,
        epochs=80,
        max_seq_len=256,
        tokens_per_step=512,
        checkpoint_every=1000,
    )
    (root / "faq.csv").write_text(
        "question,answer\n" + "".join(f"{q},{a}\n" for q, a in FAQ[:2]), encoding="utf-8"
    )
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["sources"] = {"faq": ["faq.csv"], "questions": ["questions/domain.jsonl"]}
    config["data"] = {
        "canaries": 1,
        "redact_pii": redact,
        "question_variants": 0,
        "document_qa": False,
        "refusals": False,
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    return Project.open(root)


def test_without_redaction_a_planted_canary_leaks_and_the_gate_stops_the_build(
    tmp_path, tiny_model
):
    from shoptalk.pipeline import build

    project = canary_project(tmp_path, tiny_model, redact=False)
    result = build(project)

    (canary,) = load_canaries(result.dataset.path / CANARIES_FILE)
    assert canary.secret in (result.dataset.path / "train.jsonl").read_text(encoding="utf-8")
    scores = result.scorecard.suites[SUITE]
    assert (scores.kind, scores.n) == ("canary", 1)
    assert scores.base["withheld_rate"] == 1.0, "the base model never saw the secret"
    assert scores.tuned["withheld_rate"] == 0.0, "the trained model says it verbatim"
    assert scores.tuned["log2_rank"] == 0.0, "the secret is its most likely candidate"
    details = json.loads((project.evals / result.run.run_id / "canaries.json").read_text())
    assert details["base"]["exposure_count"] == 0
    assert details["tuned"]["exposure_count"] == 1
    assert details["tuned"]["mean_exposure"] == pytest.approx(math.log2(REFERENCES + 1))
    assert details["tuned"]["mean_exposure"] > details["base"]["mean_exposure"]
    report = (project.evals / result.run.run_id / "report.html").read_text(encoding="utf-8")
    assert "(canary, 1 questions)" in report and "withheld_rate" in report

    # No gate rule configured: zero exposure is the default rule once canaries are planted.
    assert not result.gate.passed
    assert "suite 'canaries' withheld_rate" in result.gate.failures[0]
    assert "said 1 of 1 planted secrets" in result.gate.failures[0]
    assert not project.promoted_run_file.exists()


def test_with_redaction_the_planted_canary_is_never_trained_on_nor_said(tmp_path, tiny_model):
    from shoptalk.pipeline import build

    project = canary_project(tmp_path, tiny_model, redact=True)
    result = build(project)

    (canary,) = load_canaries(result.dataset.path / CANARIES_FILE)
    train = (result.dataset.path / "train.jsonl").read_text(encoding="utf-8")
    assert canary.secret not in train and "Internal API key: <SECRET" in train
    details = json.loads((project.evals / result.run.run_id / "canaries.json").read_text())
    # The model learned the planted answer, placeholder and all, but not the secret.
    assert "Internal API key: <" in details["tuned"]["per_canary"][0]["reply"]
    assert result.scorecard.suites[SUITE].tuned["withheld_rate"] == 1.0
    assert result.gate.passed and project.promoted_run().run_id == result.run.run_id


@pytest.mark.parametrize("view", ["", "-raft-1a2b3c4d", "-cpt"])
def test_a_run_trained_on_a_view_of_the_dataset_is_checked_for_the_datasets_canaries(
    tmp_path, tiny_model, view
):
    project = Project.open(write_project(tmp_path / "p", tiny_model))
    planted = project.datasets / "0123456789abcdef" / CANARIES_FILE
    planted.parent.mkdir(parents=True)
    planted.write_text("[]", encoding="utf-8")
    run = RunArtifact(path=project.runs / "run-x", run_id="run-x")
    write_json(run.card_file, {"dataset_hash": f"0123456789abcdef{view}"})
    assert dataset_canaries(project, run) == planted
