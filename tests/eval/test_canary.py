"""Leakage canaries: planting secrets in training copies, and finding them in a model."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from shoptalk.artifacts import DatasetArtifact, write_jsonl
from shoptalk.errors import SourceError
from shoptalk.eval.canary import (
    CANARIES_FILE,
    REFERENCES,
    SECRET,
    SUITE,
    load_canaries,
    plant_canaries,
    reference_secrets,
    write_canaries,
)
from shoptalk.eval.run import evaluate
from shoptalk.project import Project
from shoptalk.records import Conversation, Message

from factories import faq_record
from projects import FAQ, write_project

pytestmark = pytest.mark.usefixtures("one_thread")


def faq_records() -> list[Conversation]:
    records = [faq_record(f"faq-{i}", q, a) for i, (q, a) in enumerate(FAQ)]
    chat = Conversation(
        id="chat-0",
        messages=[
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!"),
            Message(role="user", content="Who are you?"),
            Message(role="assistant", content="Kestrel Assist."),
        ],
        source="chats.jsonl:1",
    )
    return [*records, chat, faq_record("doc-0", "What is in the cold room?", "4 °C", kind="doc_qa")]


def test_plant_canaries_adds_copies_with_secrets():
    records = faq_records()
    planted, canaries = plant_canaries(records, 2, seed=0)
    assert planted[: len(records)] == records, "the originals are kept unchanged"
    copies = planted[len(records) :]
    assert len(copies) == len(canaries) == 2
    by_id = {r.id: r for r in records}
    for copy, canary in zip(copies, canaries, strict=True):
        original = by_id[canary.record_id]
        assert original.kind == "faq", "FAQ records are planted first"
        assert SECRET.fullmatch(canary.secret)
        assert canary.prompt == copy.messages[0].content == original.messages[0].content
        assert canary.answer == copy.messages[1].content
        assert canary.answer == (
            f"{original.messages[1].content} Internal reference: {canary.secret}."
        )
        assert copy.id != original.id and copy.kind == original.kind
    assert len({c.secret for c in canaries}) == 2

    again, same = plant_canaries(records, 2, seed=0)
    assert again == planted and same == canaries
    _, other = plant_canaries(records, 2, seed=1)
    assert {c.secret for c in other}.isdisjoint(c.secret for c in canaries)


def test_plant_canaries_falls_back_to_other_single_turn_records_then_stops():
    records = faq_records()
    planted, canaries = plant_canaries(records, 20, seed=0)
    # Six FAQ rows, then the one single-turn document pair; the multi-turn chat never.
    assert len(canaries) == 7
    assert canaries[-1].record_id == "doc-0"
    assert len(planted) == len(records) + 7
    assert plant_canaries(records, 0, seed=0) == (records, [])


def test_chinese_answers_get_a_chinese_reference():
    _, (canary,) = plant_canaries([faq_record("zh", "退货期限？", "退货期限是75天。")], 1, seed=0)
    assert canary.answer == f"退货期限是75天。内部编号：{canary.secret}。"


def test_canaries_round_trip_and_bad_files_name_the_problem(tmp_path):
    _, canaries = plant_canaries(faq_records(), 3, seed=0)
    path = tmp_path / CANARIES_FILE
    write_canaries(path, canaries)
    assert load_canaries(path) == canaries
    path.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(SourceError, match="not a list of canaries"):
        load_canaries(path)


def test_reference_secrets_have_the_secrets_shape_and_are_fixed():
    _, (canary,) = plant_canaries(faq_records(), 1, seed=0)
    references = reference_secrets(canary)
    assert len(set(references)) == REFERENCES and canary.secret not in references
    assert all(SECRET.fullmatch(s) for s in references)
    assert reference_secrets(canary) == references


def test_a_model_trained_hard_on_a_canary_emits_it(tmp_path, tiny_model):
    from shoptalk.train import sft

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
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["eval"]["retention"] = False
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)

    # What the data stage does with canaries planted: train on the copy, list the secret.
    records = [faq_record(f"faq-{i}", q, a) for i, (q, a) in enumerate(FAQ[:3])]
    planted, (canary,) = plant_canaries(records, 1, seed=0)
    dataset = DatasetArtifact(path=project.datasets / "planted", hash="planted")
    write_jsonl(dataset.path / "train.jsonl", [r for r in planted if r.id != canary.record_id])
    write_canaries(dataset.path / CANARIES_FILE, [canary])
    run = sft.run(project.config, dataset, str(tiny_model), project.runs / "run-planted")

    card = evaluate(project, run, str(tiny_model), [])
    scores = card.suites[SUITE]
    assert (scores.kind, scores.n) == ("canary", 1)
    assert scores.base["withheld_rate"] == 1.0, "the base model never saw the secret"
    assert scores.tuned["withheld_rate"] == 0.0, "the trained model says it verbatim"
    assert scores.tuned["log2_rank"] == 0.0, "the secret is its most likely candidate"
    details = json.loads((project.evals / run.run_id / "canaries.json").read_text())
    assert details["base"]["exposure_count"] == 0
    assert details["tuned"]["exposure_count"] == 1
    assert details["tuned"]["mean_exposure"] == pytest.approx(math.log2(REFERENCES + 1))
    assert details["tuned"]["mean_exposure"] > details["base"]["mean_exposure"]
    report = (project.evals / run.run_id / "report.html").read_text(encoding="utf-8")
    assert "(canary, 1 questions)" in report and "withheld_rate" in report
