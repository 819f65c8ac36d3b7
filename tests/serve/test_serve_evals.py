"""OpenAI's Evals API with the official `openai` package against a live server on 127.0.0.1.

An eval with a `string_check` grader runs against the tuned tiny model; the per-item
results and counts are checked against what the model really answered (asked directly,
greedy). `text_similarity` scores are checked against the metric; a `score_model`
grader is run by a served judge; a bad item schema is a 400 naming the field; only
editors reach the routes, and a run's retrieval reads only what its key may read.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import openai
import pytest
import yaml
from openai import OpenAI
from serve_harness import base_catalog
from test_serve_catalog import add_run

from shoptalk.config import ServeSettings
from shoptalk.eval import graders
from shoptalk.pipeline import index_documents
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.engine import Delta, TransformersEngine
from shoptalk.serve.server import BackgroundServer
from shoptalk.serve.services import build_services

from projects import write_project

CANARY = "ZEBRA-CANARY-7731"
SECRET = f"---\ngroups: [hr]\n---\n# Laptop policy\n\nLaptops are replaced every 42 months. Code {CANARY}.\n"
QUESTIONS = ["What is the claim window?", "退货需要多少天？"]
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "expected": {"type": "string"}},
    "required": ["question", "expected"],
}
TEMPLATE = {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]}


def clients(url: str, secrets: dict[str, str]) -> dict[str, OpenAI]:
    return {
        name: OpenAI(base_url=url + "/v1", api_key=s, max_retries=0, timeout=120)
        for name, s in secrets.items()
    }


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory, one_thread):
    root = write_project(tmp_path_factory.mktemp("evals") / "p", tiny_model)
    (root / "docs" / "hr").mkdir()
    (root / "docs" / "hr" / "laptops.md").write_text(SECRET, encoding="utf-8")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    add_run(root, "run-tuned", tiny_model, seed=1)
    (root / ".shoptalk" / "promoted-run").write_text("run-tuned\n", encoding="utf-8")
    index_documents(Project.open(root))
    app = create_app(root)
    keys = app.state.services.keys
    secrets = {
        name: keys.create(name, KeyLimits(scopes=scopes, groups=groups)).secret
        for name, scopes, groups in [
            ("editor", ["editor"], []),
            ("editor_hr", ["editor"], ["hr"]),
            ("chat", ["chat"], []),
            ("admin", ["admin"], []),
        ]
    }
    with BackgroundServer(app) as url:
        yield app, clients(url, secrets)


def wait(client: OpenAI, eval_id: str, run_id: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in ("completed", "failed", "canceled"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {run.status}")


def greedy(client: OpenAI, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=8, temperature=0
    )
    return reply.choices[0].message.content


def completions_source(items: list[dict], model: str, **extra) -> dict:
    return {
        "type": "completions",
        "model": model,
        "input_messages": TEMPLATE,
        "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
        "source": {"type": "file_content", "content": [{"item": i} for i in items]},
        **extra,
    }


def test_a_string_check_eval_runs_on_the_tuned_model_and_grades_each_answer(served):
    _app, c = served
    answers = [greedy(c["admin"], "run-tuned", q) for q in QUESTIONS]
    items = [
        {"question": QUESTIONS[0], "expected": answers[0]},
        {"question": QUESTIONS[1], "expected": "不是这个答案"},
    ]
    created = c["editor"].evals.create(
        name="claims",
        data_source_config={"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "exact",
                "input": "{{sample.output_text}}",
                "reference": "{{item.expected}}",
                "operation": "eq",
            }
        ],
    )
    assert created.object == "eval" and created.testing_criteria[0].name == "exact"
    assert c["editor"].evals.retrieve(created.id).name == "claims"
    run = c["editor"].evals.runs.create(
        created.id, name="tuned", data_source=completions_source(items, "run-tuned")
    )
    assert run.status in ("queued", "in_progress") and run.model == "run-tuned"
    run = wait(c["editor"], created.id, run.id)
    assert run.status == "completed", run.error
    assert run.result_counts.model_dump() == {"total": 2, "passed": 1, "failed": 1, "errored": 0}
    assert [r.model_dump() for r in run.per_testing_criteria_results] == [
        {"testing_criteria": "exact", "passed": 1, "failed": 1}
    ]
    assert run.per_model_usage[0].invocation_count == 2
    output = list(c["editor"].evals.runs.output_items.list(run.id, eval_id=created.id))
    assert [o.datasource_item_id for o in output] == [0, 1]
    for item, answer in zip(output, answers, strict=True):
        # The sample is the tuned model's own greedy answer, asked through the API.
        assert item.sample.output[0].content == answer
        assert item.sample.input[0].content == item.datasource_item["question"]
    assert [(o.status, o.results[0].passed, o.results[0].score) for o in output] == [
        ("pass", True, 1.0),
        ("fail", False, 0.0),
    ]
    one = c["editor"].evals.runs.output_items.retrieve(
        output[1].id, eval_id=created.id, run_id=run.id
    )
    assert one.datasource_item["expected"] == "不是这个答案"
    failed = c["editor"].evals.runs.output_items.list(run.id, eval_id=created.id, status="fail")
    assert [o.id for o in failed] == [output[1].id]
    assert [r.id for r in c["editor"].evals.runs.list(created.id)] == [run.id]


def test_text_similarity_scores_are_the_metrics_in_english_and_chinese(served):
    _app, c = served
    pairs = [
        ("The claim window is 47 days.", "The claim window is 47 days from delivery."),
        ("退货期限是四十七天", "退货期限是四十七天。"),
        ("completely unrelated", "退货期限是四十七天"),
    ]
    criteria = [
        {
            "type": "text_similarity",
            "name": metric,
            "input": "{{sample.output_text}}",
            "reference": "{{item.expected}}",
            "evaluation_metric": metric,
            "pass_threshold": 0.7,
        }  # fmt: skip
        for metric in ("fuzzy_match", "bleu", "rouge_1", "rouge_l", "gleu")
    ]
    cosine = criteria[0] | {"name": "cosine", "evaluation_metric": "cosine", "pass_threshold": 0}
    schema = {"type": "object", "properties": {"expected": {"type": "string"}}}
    created = c["editor"].evals.create(
        name="similarity",
        data_source_config={"type": "custom", "item_schema": schema, "include_sample_schema": True},
        testing_criteria=[*criteria, cosine],
    )
    content = [{"item": {"expected": ref}, "sample": {"output_text": out}} for out, ref in pairs]
    run = c["editor"].evals.runs.create(
        created.id,
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}},
    )
    run = wait(c["editor"], created.id, run.id)
    assert run.status == "completed", run.error
    output = list(c["editor"].evals.runs.output_items.list(run.id, eval_id=created.id))
    for item, (out, ref) in zip(output, pairs, strict=True):
        for result in item.results[:-1]:
            want = graders.similarity(result.name, out, ref)
            assert result.score == pytest.approx(want, abs=1e-6)
            assert result.passed == (result.score >= 0.7)
        assert item.status == ("pass" if all(r.passed for r in item.results) else "fail")
    scores = {r.name: r.score for r in output[1].results}
    assert scores["rouge_1"] == 1.0 and scores["rouge_l"] == 1.0  # Chinese per character
    # 6 of the reference's 8 words, all 6 of the answer's: F1 = 2 * 0.75 / 1.75.
    assert output[0].results[2].score == pytest.approx(6 / 7, abs=1e-6)
    assert all(r.score < 0.3 for r in output[2].results[:-1])
    # Cosine of the server's embeddings: the near-identical pairs above the unrelated one.
    cosines = [o.results[-1].score for o in output]
    assert min(cosines[:2]) > cosines[2] and cosines[1] > 0.9
    assert [o.status for o in output] == ["fail", "pass", "fail"]  # BLEU is strict on item 0


WRONG = "没有这个词"


class JudgedEngine:
    """The tiny model's engine, plus a served `judge` model that scores by a rule: 0 when the
    item it is shown is marked WRONG, else 1 (a stand-in for a real judge model)."""

    def __init__(self, inner: TransformersEngine) -> None:
        self.inner, self.system_prompt, self.prompts = inner, "", []

    @property
    def queue_depth(self) -> int:
        return self.inner.queue_depth

    async def names(self) -> list[str]:
        return [*await self.inner.names(), "judge"]

    async def prepare_chat(self, model, messages, params, n):
        if model != "judge":
            return await self.inner.prepare_chat(model, messages, params, n)
        from shoptalk.serve.engine import Prepared

        return Prepared("judge", "", 10, replace(params, max_tokens=20), [messages], n)

    async def prepare_text(self, model, prompts, params, n):
        return await self.inner.prepare_text(model, prompts, params, n)

    async def start(self, prepared) -> AsyncIterator[Delta]:
        if prepared.model != "judge":
            return await self.inner.start(prepared)
        text = "\n".join(m["content"] for m in prepared.prompts[0])
        self.prompts.append(text)
        score = 0 if WRONG in text else 1
        reply = f'{{"steps": "compared", "result": {score}}}'
        if '"result": "<one of' in text:  # a label_model grader's instructions
            reply = '{"result": "%s"}' % ("正确" if score else "错误")

        async def deltas() -> AsyncIterator[Delta]:
            prepared.completion_tokens = 5
            yield Delta(0, reply, "stop")

        return deltas()

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(scope="module")
def judged(tiny_model, tmp_path_factory, one_thread):
    settings = ServeSettings()
    services = build_services(settings, tmp_path_factory.mktemp("judged"))
    engine = JudgedEngine(TransformersEngine(base_catalog(tiny_model)))
    app = create_app(settings=settings, services=services, engine=engine)
    limits = KeyLimits(scopes=["editor"], models=["base", "judge"])
    secrets = {"editor": services.keys.create("editor", limits).secret}
    with BackgroundServer(app) as url:
        yield engine, clients(url, secrets)["editor"], app


def test_score_model_and_label_model_graders_are_run_by_the_served_judge(judged):
    engine, client, _app = judged
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": "judge",
        "input": [
            {"role": "system", "content": "Score the answer against the reference."},
            {"role": "user", "content": "Answer: {{sample.output_text}}\nReference: {{item.ref}}"},
        ],
        "range": [0, 1],
        "pass_threshold": 0.5,
    }
    label = {
        "type": "label_model", "name": "verdict", "model": "judge", "input": grader["input"],
        "labels": ["正确", "错误"], "passing_labels": ["正确"],
    }  # fmt: skip
    created = client.evals.create(
        name="judged",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"question": {"type": "string"}, "ref": {"type": "string"}},
            },
        },  # fmt: skip
        testing_criteria=[grader, label],
    )
    items = [{"question": "Hello", "ref": "对"}, {"question": "Hello", "ref": WRONG}]
    run = client.evals.runs.create(created.id, data_source=completions_source(items, "base"))
    run = wait(client, created.id, run.id)
    assert run.status == "completed", run.error
    output = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert [(o.status, o.results[0].score) for o in output] == [("pass", 1.0), ("fail", 0.0)]
    assert [(o.results[1].passed, o.results[1].sample["label"]) for o in output] == [
        (True, "正确"),
        (False, "错误"),
    ]
    assert '"result": 1' in output[0].results[0].sample["output_text"]
    # The judge saw the item's reference and the model's answer, rendered into its messages.
    for item in output:
        answer = item.sample.output[0].content
        shown = f"Answer: {answer}\nReference: {item.datasource_item['ref']}"
        assert any(shown in p for p in engine.prompts)


def test_a_bad_item_schema_or_template_is_a_400_naming_the_field(served):
    _app, c = served
    grader = {"type": "string_check", "name": "x", "input": "{{item.question}}",
              "reference": "a", "operation": "eq"}  # fmt: skip
    bad_schema = {"type": "object", "properties": {"question": {"type": "strng"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        c["editor"].evals.create(
            data_source_config={"type": "custom", "item_schema": bad_schema},
            testing_criteria=[grader],
        )
    error = caught.value.body
    assert error["param"] == "data_source_config.item_schema.properties.question.type"
    assert "strng" in error["message"] and caught.value.code == "invalid_request"
    unknown = {"type": "object", "properties": {"q": {"type": "string"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        c["editor"].evals.create(
            data_source_config={"type": "custom", "item_schema": unknown}, testing_criteria=[grader]
        )
    assert caught.value.body["param"] == "testing_criteria.0.input"
    assert "item.question" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        c["editor"].evals.create(
            data_source_config={"type": "custom", "item_schema": SCHEMA},
            testing_criteria=[grader | {"input": "{{__import__('os')}}"}],
        )
    assert caught.value.body["param"] == "testing_criteria.0.input"
    created = c["editor"].evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA}, testing_criteria=[grader]
    )
    with pytest.raises(openai.BadRequestError) as caught:
        c["editor"].evals.runs.create(
            created.id, data_source=completions_source([{"question": 3, "expected": "x"}], "base")
        )
    assert caught.value.body["param"] == "data_source.source.content.0.item"
    assert "question: expected string" in caught.value.body["message"]


def test_only_editors_reach_evals_and_runs_read_only_what_their_key_may(served):
    app, c = served
    with pytest.raises(openai.PermissionDeniedError):
        c["chat"].evals.list()
    grader = {"type": "string_check", "name": "leak", "input": "{{sample.output_text}}",
              "reference": CANARY, "operation": "like"}  # fmt: skip
    created = c["editor"].evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA}, testing_criteria=[grader]
    )
    items = [{"question": "How often are laptops replaced? What is the code?", "expected": ""}]
    prompts = {}
    for name in ("editor", "editor_hr"):
        run = c[name].evals.runs.create(
            created.id, data_source=completions_source(items, "base", rag=True)
        )
        run = wait(c[name], created.id, run.id)
        assert run.status == "completed", run.error
        item = next(iter(c[name].evals.runs.output_items.list(run.id, eval_id=created.id)))
        prompts[name] = item.sample.usage.prompt_tokens
        assert CANARY not in item.model_dump_json() or name == "editor_hr"
    # The hr key's run read the laptop policy; the other key's found nothing it may read.
    assert prompts["editor_hr"] > prompts["editor"] + 20
    with pytest.raises(openai.PermissionDeniedError):
        c["chat"].evals.runs.list(created.id)
    assert c["editor"].evals.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        c["editor"].evals.retrieve(created.id)


def test_an_eval_is_read_only_by_keys_that_read_as_much_as_its_author(served):
    """A grader's reference may be copied from a document of the author's groups: the eval
    (definition, item schema, references) is a 404 to an editor without them, like its runs."""
    _app, c = served
    grader = {"type": "string_check", "name": "policy", "input": "{{sample.output_text}}",
              "reference": CANARY, "operation": "like"}  # fmt: skip
    created = c["editor_hr"].evals.create(
        name="hr policy",
        data_source_config={"type": "custom", "item_schema": SCHEMA},
        testing_criteria=[grader],
    )
    for name in ("editor_hr", "admin"):
        assert c[name].evals.retrieve(created.id).testing_criteria[0].reference == CANARY
        assert created.id in [e.id for e in c[name].evals.list()]
    other = c["editor"]
    assert created.id not in [e.id for e in other.evals.list()]
    items = [{"question": "How often are laptops replaced?", "expected": ""}]
    for attempt in (
        lambda: other.evals.retrieve(created.id),
        lambda: other.evals.update(created.id, name="mine now"),
        lambda: other.evals.runs.list(created.id),
        lambda: other.evals.runs.create(created.id, data_source=completions_source(items, "base")),
        lambda: other.evals.delete(created.id),
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            attempt()
        assert CANARY not in str(refused.value.body)
    # An eval typed by a key without groups stays every editor's.
    open_eval = other.evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA}, testing_criteria=[grader]
    )
    assert c["editor_hr"].evals.retrieve(open_eval.id).id == open_eval.id
    assert c["editor_hr"].evals.delete(created.id).deleted


def test_a_run_is_audited_as_its_key_and_refused_a_model_the_key_may_not_use(judged):
    _engine, client, app = judged
    created = client.evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "x",
                "input": "{{sample.output_text}}",
                "reference": "{{item.expected}}",
                "operation": "ne",
            }
        ],  # fmt: skip
    )
    items = [{"question": "Hi", "expected": "x"}]
    refused = client.evals.runs.create(created.id, data_source=completions_source(items, "tiny"))
    refused = wait(client, created.id, refused.id)
    assert refused.status == "failed" and refused.error.code == "model_not_allowed"
    run = client.evals.runs.create(created.id, data_source=completions_source(items, "base"))
    assert wait(client, created.id, run.id).status == "completed"
    from sqlalchemy import select

    from shoptalk.registry.audit import AuditRow

    path = f"/v1/evals/{created.id}/runs"
    with app.state.services.keys.sessions() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.route == path)).all()
    assert sorted((r.model, r.status) for r in rows) == [("base", 200), ("unknown", 403)]
    assert len({r.key_id for r in rows}) == 1 and rows[0].key_id is not None


def test_a_run_left_in_progress_by_a_stopped_server_is_resumed(tiny_model, tmp_path, one_thread):
    from datetime import timedelta

    from shoptalk.registry.evals import EvalStore, now

    settings = ServeSettings()
    services = build_services(settings, tmp_path)
    key = services.keys.create("editor", KeyLimits(scopes=["editor"]))
    store = EvalStore(services.keys.sessions)
    grader = {"type": "string_check", "name": "x", "input": "{{item.question}}",
              "reference": "a", "operation": "eq"}  # fmt: skip
    evaluation = store.add_eval(
        {
            "data_source_config": {"type": "custom", "item_schema": SCHEMA},
            "testing_criteria": [grader],
        },
        key.key.id,
    )
    items = [{"item": {"question": q, "expected": ""}} for q in ("a", "b")]
    spec = {"data_source": completions_source([i["item"] for i in items], "base")}
    run = store.add_run(evaluation.id, spec, key.key.id)
    # The stopped server had started it and written nothing for an hour.
    store.set_run(run.id, status="in_progress")
    from sqlalchemy import update

    from shoptalk.registry.evals import EvalRunRow

    with services.keys.sessions.begin() as session:
        old = now() - timedelta(hours=1)
        session.execute(update(EvalRunRow).where(EvalRunRow.id == run.id).values(heartbeat=old))
    app = create_app(settings=settings, services=services, catalog=base_catalog(tiny_model))
    with BackgroundServer(app) as url:
        client = clients(url, {"editor": key.secret})["editor"]
        done = wait(client, evaluation.id, run.id)
    assert done.status == "completed"
    assert done.result_counts.model_dump() == {"total": 2, "passed": 1, "failed": 1, "errored": 0}


def test_a_canceled_run_stops_before_its_last_item(served):
    _app, c = served
    grader = {"type": "string_check", "name": "x", "input": "{{sample.output_text}}",
              "reference": "{{item.expected}}", "operation": "eq"}  # fmt: skip
    created = c["editor"].evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA}, testing_criteria=[grader]
    )
    items = [{"question": f"Question {i}?", "expected": "x"} for i in range(200)]
    run = c["editor"].evals.runs.create(created.id, data_source=completions_source(items, "base"))
    c["editor"].evals.runs.cancel(run.id, eval_id=created.id)
    run = wait(c["editor"], created.id, run.id)
    assert run.status == "canceled", run.result_counts
    done = run.result_counts.passed + run.result_counts.failed + run.result_counts.errored
    assert done < 200 and run.result_counts.total == 200
    assert c["editor"].evals.runs.delete(run.id, eval_id=created.id).deleted
    with pytest.raises(openai.NotFoundError):
        c["editor"].evals.runs.retrieve(run.id, eval_id=created.id)


def test_a_run_reads_its_items_from_an_uploaded_file(served):
    _app, c = served
    lines = [{"item": {"question": "退货需要多少天？", "expected": "四十七天"}},
             {"item": {"question": "Who runs the depot?", "expected": "Ingrid"}}]  # fmt: skip
    body = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    uploaded = c["editor"].files.create(file=("items.jsonl", body), purpose="evals")
    grader = {"type": "string_check", "name": "asked", "input": "{{item.question}}",
              "reference": "退货", "operation": "like"}  # fmt: skip
    created = c["editor"].evals.create(
        data_source_config={"type": "custom", "item_schema": SCHEMA}, testing_criteria=[grader]
    )
    source = completions_source([], "base") | {"source": {"type": "file_id", "id": uploaded.id}}
    run = c["editor"].evals.runs.create(created.id, data_source=source)
    run = wait(c["editor"], created.id, run.id)
    assert run.status == "completed", run.error
    assert run.result_counts.model_dump() == {"total": 2, "passed": 1, "failed": 1, "errored": 0}
    output = list(c["editor"].evals.runs.output_items.list(run.id, eval_id=created.id))
    assert output[0].datasource_item == lines[0]["item"]
    assert output[0].sample.input[0].content == "退货需要多少天？"
    broken = c["editor"].files.create(
        file=("bad.jsonl", b'{"item": {"question": 1}}\n'), purpose="evals"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        c["editor"].evals.runs.create(
            created.id, data_source=source | {"source": {"type": "file_id", "id": broken.id}}
        )
    assert caught.value.body["param"] == f"data_source.source.id ({broken.id}) item 0.item"


def test_an_item_that_cannot_be_rendered_errs_alone(judged):
    _engine, client, _app = judged
    schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}, "hint": {"type": "string"}},
    }
    created = client.evals.create(
        data_source_config={"type": "custom", "item_schema": schema},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "x",
                "input": "{{item.question}}",
                "reference": "Q",
                "operation": "eq",
            }
        ],  # fmt: skip
    )
    template = {
        "type": "template",
        "template": [{"role": "user", "content": "{{item.question}} {{item.hint}}"}],
    }
    items = [{"question": "Q", "hint": "h"}, {"question": "Q"}]
    source = completions_source(items, "base") | {"input_messages": template}
    run = wait(client, created.id, client.evals.runs.create(created.id, data_source=source).id)
    assert run.status == "completed"
    assert run.result_counts.model_dump() == {"total": 2, "passed": 1, "failed": 0, "errored": 1}
    output = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert output[1].status == "error" and "item.hint" in output[1].sample.error.message
