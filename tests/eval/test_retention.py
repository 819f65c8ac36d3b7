"""General-ability retention: bundled prompt files, per-row losses, and drift on tiny models."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from rich.console import Console
from tiny_model import qa_examples, training_rows

from shoptalk.artifacts import RunArtifact
from shoptalk.eval.metrics import CJK_CHAR
from shoptalk.eval.report import render_report
from shoptalk.eval.retention import (
    METRIC,
    QA_SUITE,
    SUITE,
    RetentionCheck,
    answer_nll,
    general_qa_suite,
    load_prompts,
)
from shoptalk.eval.run import evaluate
from shoptalk.eval.scorecard import render_table
from shoptalk.modeling.score import row_losses
from shoptalk.project import Project

from projects import write_project

SYSTEM = "You are Kestrel Assist."

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPTALK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_general_prompts_are_many_short_and_bilingual():
    prompts = load_prompts()
    assert len(prompts) >= 200
    assert len({p.prompt for p in prompts}) == len(prompts), "no prompt twice"
    chinese = [p for p in prompts if CJK_CHAR.search(p.prompt)]
    assert {p.lang for p in chinese} == {"zh"}
    assert 0.4 <= len(chinese) / len(prompts) <= 0.6
    assert {p.category for p in prompts} == {"knowledge", "writing", "reasoning", "howto"}
    assert max(len(p.prompt) for p in prompts) < 120


def test_general_qa_is_a_bilingual_domain_suite():
    suite = general_qa_suite()
    assert (suite.name, suite.kind) == (QA_SUITE, "domain")
    assert len(suite.questions) >= 60
    chinese = [q for q in suite.questions if CJK_CHAR.search(q.question)]
    assert 0.4 <= len(chinese) / len(suite.questions) <= 0.6
    capital = next(q for q in suite.questions if q.question == "中国的首都是哪里？")
    assert capital.must_include == ["北京"]


def test_row_losses_add_up_to_labelled_loss(tiny_model):
    import torch

    from shoptalk.modeling.generate import load_assistant
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import collate

    assistant = load_assistant(str(tiny_model), None, "cpu")
    pairs = [("Why is the sky blue?", "Light scatters."), ("怎么煮鸡蛋？", "水开后煮八分钟。")]
    rows = training_rows(qa_examples(assistant.tokenizer, pairs))
    batch = collate(rows, assistant.tokenizer.pad_token_id)
    with torch.no_grad():
        total, count = labelled_loss(assistant.model, batch)
        sums, counts = row_losses(assistant.model, batch)
    assert sum(sums) == pytest.approx(float(total), rel=1e-5)
    assert sum(counts) == count
    # Batched with padding or one at a time: the same per-answer NLL.
    prompts, answers = [q for q, _ in pairs], [a for _, a in pairs]
    together = answer_nll(assistant, prompts, answers, "You are X.", batch_size=2)
    alone = [answer_nll(assistant, [p], [a], "You are X.", batch_size=1)[0] for p, a in pairs]
    assert together == pytest.approx(alone, rel=1e-5)


GENERAL_REPLY = "Sure, happy to help."


@pytest.fixture(scope="module")
def general_model(tmp_path_factory, tiny_model):
    """The tiny model taught to answer general prompts one way: a base with an ability to lose.

    A few prompts of each language suffice: it then answers all of them like that.
    """
    import torch

    from shoptalk.modeling.chat_format import encode_conversation
    from shoptalk.modeling.load import load_model, load_tokenizer
    from shoptalk.records import Conversation, Message
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import Row, collate

    tokenizer, model = load_tokenizer(str(tiny_model)), load_model(str(tiny_model), "cpu")
    examples = [
        encode_conversation(
            tokenizer,
            Conversation(
                id=str(i),
                messages=[
                    Message(role="user", content=p.prompt),
                    Message(role="assistant", content=GENERAL_REPLY),
                ],
                source="t",
            ),
            SYSTEM,
        )
        for i, p in enumerate(load_prompts()[::14])
    ]
    rows = [Row(e.input_ids, e.labels, list(range(len(e.input_ids)))) for e in examples]
    batch = collate(rows, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    # Until memorized: how many steps that takes differs between CPUs (60 were not enough
    # on one whose kernels round differently).
    for _ in range(300):
        total, count = labelled_loss(model, batch)
        if (total / count).item() < 0.02:
            break
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("general-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def project_on(root, base, **train) -> Project:
    """The test project on `base`, answering in larger batches than its default of 4."""
    import yaml

    root = write_project(root, base, **train)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["eval"]["batch_size"] = 32
    config["eval"]["retention"] = True
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    return Project.open(root)


def test_no_drift_when_the_tuned_model_is_the_base(tmp_path, general_model, cache, monkeypatch):
    project = project_on(tmp_path / "p", general_model)
    assert project.config.system_prompt == SYSTEM
    run = RunArtifact(path=project.runs / "run-same", run_id="run-same")
    shutil.copytree(general_model, run.final)  # full weights: the base's own
    card = evaluate(project, run, str(general_model), [])

    retention = card.suites[SUITE]
    assert retention.kind == "retention" and retention.n >= 200
    mean, low, high = retention.diff[METRIC]
    assert low <= 0 <= high and abs(mean) < 1e-4
    assert -1.5 < retention.base[METRIC] < 0  # the base knows its own answers well
    assert card.suites[QA_SUITE].kind == "domain"
    assert card.timing["retention_seconds"] >= 0
    details = json.loads((project.evals / run.run_id / "retention.json").read_text())
    answers = [row["base_answer"] for row in details["prompts"]]
    assert sum(a.startswith(GENERAL_REPLY[:5]) for a in answers) > len(answers) / 2

    # The scorecard table and the HTML report show the new kind.
    console = Console(record=True, width=200)
    console.print(render_table(card))
    assert re.search(r"retention\s.*log_likelihood", console.export_text())
    assert "(retention, " in render_report(card)

    # Later evaluations take the base's answers and scores from the cache.
    (cached,) = (cache / "retention").glob("*.json")
    assert len(json.loads(cached.read_text())["answers"]) == retention.n

    def no_generation(*args, **kwargs):
        raise AssertionError("the base answers should come from the cache")

    monkeypatch.setattr("shoptalk.modeling.generate.answer", no_generation)
    check = RetentionCheck.setup(project, str(general_model))
    check.measure("base", None)
    assert [-x for x in check.nll["base"]] == pytest.approx(details_ll(details), abs=1e-4)


def details_ll(details: dict) -> list[float]:
    return [-row["base_nll"] for row in details["prompts"]]


def test_a_model_trained_to_forget_drifts_and_fails_the_gate(tmp_path, general_model):
    import yaml

    from shoptalk.pipeline import build

    project = project_on(tmp_path / "p", general_model, learning_rate=5e-2, epochs=20)
    config = yaml.safe_load((project.root / "shoptalk.yaml").read_text())
    rule = {"suite": SUITE, "metric": METRIC, "max_drop": 0.1}
    config["eval"]["gate"] = {"rules": [rule]}
    (project.root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(project.root)
    events = []
    result = build(project, on_event=events.append)

    retention = result.scorecard.suites[SUITE]
    mean, low, high = retention.diff[METRIC]
    # The log-likelihood of the base's own answers fell: the NLL drift is positive.
    assert high < 0 and mean < -0.5, retention.diff
    # Many epochs at a high learning rate on a tiny set: the gate names the rule and refuses.
    # (The default rules may fail too: the model forgot everything, its domain answers included.)
    (failure,) = [f for f in result.gate.failures if f.startswith(f"suite '{SUITE}' {METRIC}: ")]
    assert failure.startswith(f"suite '{SUITE}' {METRIC}: dropped ")
    assert "more than the allowed 0.1 (95% interval of the change" in failure
    assert any(e.stage == "gate" and e.status == "failed" and failure in e.message for e in events)
    assert not project.promoted_run_file.exists()
