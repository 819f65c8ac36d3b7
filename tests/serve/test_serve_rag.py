"""`rag: true` on the chat API: grounded in what the caller's key may read, citations beside
the message, and no model call when nothing relevant may be read."""

from __future__ import annotations

import re

import pytest
import yaml
from openai import OpenAI

from shoptalk.artifacts import PromotedMode
from shoptalk.pipeline import index_documents
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

from projects import DOC, FAQ, write_ops_project, write_project

QUESTION = [{"role": "user", "content": "How often do forklift drivers renew their licence?"}]


@pytest.fixture
def served(tmp_path, tiny_model):
    root = write_ops_project(tmp_path / "p", tiny_model)
    app = create_app(root)
    keys = app.state.services.keys
    secrets = {
        "ops": keys.create("ops", KeyLimits(scopes=["chat"], groups=["ops"])).secret,
        "sales": keys.create("sales", KeyLimits(scopes=["chat"], groups=["sales"])).secret,
    }
    with BackgroundServer(app) as url:
        yield {
            name: OpenAI(base_url=url + "/v1", api_key=s, max_retries=0)
            for name, s in secrets.items()
        }


def test_a_key_that_may_read_the_document_gets_a_grounded_answer(served):
    plain = served["ops"].chat.completions.create(model="base", messages=QUESTION, max_tokens=4)
    grounded = served["ops"].chat.completions.create(
        model="base", messages=QUESTION, max_tokens=4, extra_body={"rag": True}
    )
    extra = grounded.model_extra
    assert isinstance(extra["citations"], list) and extra["dropped_citations"] >= 0
    assert all(
        c["quote"] and c["source"].startswith("docs/handbook.md") for c in extra["citations"]
    )
    # The retrieved handbook section went into the prompt.
    assert grounded.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_a_key_that_may_not_read_it_is_told_nothing_was_found(served):
    answer = served["sales"].chat.completions.create(
        model="base", messages=QUESTION, max_tokens=4, extra_body={"rag": True}
    )
    assert "could not find" in answer.choices[0].message.content
    assert answer.usage.completion_tokens == 0 and answer.model_extra["citations"] == []


def test_streaming_ends_with_the_citations(served):
    stream = served["ops"].chat.completions.create(
        model="base", messages=QUESTION, max_tokens=4, stream=True, extra_body={"rag": True}
    )
    chunks = list(stream)
    assert "citations" in chunks[-1].model_extra and chunks[-1].choices == []


@pytest.fixture
def promoted(tmp_path, tiny_model):
    """A project whose build promoted base+rag (eval.promote): no tuned run is served."""
    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    index_documents(project)
    PromotedMode(mode="base+rag", reason="test").write(project.state)
    app = create_app(root)
    secret = app.state.services.keys.create("ops", KeyLimits(scopes=["chat"])).secret
    with BackgroundServer(app) as url:
        yield OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)


def test_the_default_model_answers_in_the_promoted_mode(promoted):
    names = {m.id for m in promoted.models.list().data}
    assert {"shoptalk", "kestrel", "base"} <= names
    default = promoted.chat.completions.create(model="shoptalk", messages=QUESTION, max_tokens=4)
    # With retrieval, though the request said nothing.
    assert isinstance(default.model_extra["citations"], list)
    # Opting out: `rag: false`, or a model name without retrieval.
    plain = promoted.chat.completions.create(
        model="shoptalk", messages=QUESTION, max_tokens=4, temperature=0, extra_body={"rag": False}
    )
    base = promoted.chat.completions.create(
        model="base", messages=QUESTION, max_tokens=4, temperature=0
    )
    assert plain.model_extra["citations"] is None and base.model_extra["citations"] is None
    assert plain.choices[0].message.content == base.choices[0].message.content


def test_a_grounded_reply_is_shown_verified_and_says_so(served):
    # The tiny random model's words are in no passage: the reply is repaired or not found,
    # never shown as it was generated, and the response says which.
    answer = served["ops"].chat.completions.create(
        model="base", messages=QUESTION, max_tokens=8, temperature=0, extra_body={"rag": True}
    )
    verification = answer.model_extra["verification"]
    assert verification["status"] in ("repaired", "not_found")
    content = answer.choices[0].message.content
    assert content.startswith('"') or "could not find" in content
    stream = served["ops"].chat.completions.create(
        model="base",
        messages=QUESTION,
        max_tokens=8,
        temperature=0,
        stream=True,
        extra_body={"rag": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content  # the same verified text, sent once it was checked
    assert chunks[-1].model_extra["verification"] == verification


def test_a_question_about_the_assistant_is_answered_in_the_personas_words(served):
    # No document is read; the tiny model's reply is not what the system prompt says, so
    # the assistant introduces itself from the system prompt and the config's name.
    answer = served["sales"].chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": "Who are you?"}],
        max_tokens=8,
        extra_body={"rag": True},
    )
    assert answer.usage.completion_tokens > 0  # the model was asked, closed book
    content = answer.choices[0].message.content
    assert content.startswith("I am Kestrel Assist, the assistant of Kestrel.")
    assert "could not find" not in content
    assert answer.model_extra["citations"] == []
    assert answer.model_extra["verification"]["status"] == "repaired"


def test_a_grounded_reply_writes_only_the_passages_numbers(tmp_path, tiny_model):
    # A model that writes digits whenever it can: without passages it makes numbers up; from
    # the passages it writes only theirs (modeling.copy_numbers), in both engines' sampling.
    # One from a passage it does not cite (the FAQ row read beside the handbook's sentence)
    # is repaired: the reply shows only its citations' numbers.
    from tiny_model import build_digit_model

    digits = build_digit_model(tmp_path / "digits", tiny_model)
    root = write_ops_project(tmp_path / "p", digits)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"]["copy_numbers"] = "always"  # the default holds only tuned models to it
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    app = create_app(root)
    secret = app.state.services.keys.create("ops", KeyLimits(scopes=["chat"], groups=["ops"]))
    with BackgroundServer(app) as url:
        client = OpenAI(base_url=url + "/v1", api_key=secret.secret, max_retries=0)
        ask = {"model": "base", "messages": QUESTION, "max_tokens": 12, "temperature": 0}
        plain = client.chat.completions.create(**ask)
        grounded = client.chat.completions.create(**ask, extra_body={"rag": True})
    made_up = set(re.findall(r"\d+", plain.choices[0].message.content)) - {"18", "4", "1", "2"}
    assert made_up
    unsupported = grounded.model_extra["verification"]["unsupported"]
    assert grounded.usage.completion_tokens > 0
    theirs = set(re.findall(r"\d+", DOC + " ".join(answer for _, answer in FAQ)))
    assert {v for v in unsupported if re.fullmatch(r"[\d.,:/-]+", v)} <= theirs
    reply = re.sub(r"\[\d+\]", "", grounded.choices[0].message.content)  # without its markers
    shown = set(re.findall(r"\d+", reply))
    quoted = {n for c in grounded.model_extra["citations"] for n in re.findall(r"\d+", c["quote"])}
    assert shown <= quoted
