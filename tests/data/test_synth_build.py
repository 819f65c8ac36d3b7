"""The teacher path in a default build: teacher-written document QA next to style material,
self-replay and the RAFT view, with the teacher a fake OpenAI-compatible endpoint over HTTP."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from fastapi import FastAPI, Request

from shoptalk.data import replay
from shoptalk.pipeline import prepare_dataset, prepare_input
from shoptalk.project import Project
from shoptalk.serve.server import BackgroundServer

from projects import write_project

RETURNS = """# Returns policy

## Refunds

Refunds are paid to the original card within 9 business days.

## Damaged parcels

Photos of a damaged parcel reach the claims desk through the Kestrel portal.
"""
# Recognized among the documents by its heading: knowledge and a source of style rules.
TONE = """# Tone of voice

Open every reply with "Hi {first name},".
Never say "no worries".
Close with "Best, the Kestrel desk".
"""
# Declared under sources.style: style material only, never knowledge.
DECLARED = """# How we write to members

Open every email with "Hello {first name}," and never with a generic salutation.
Never say "at the end of the day".
Close with "Warm wishes, the Member Desk".
"""
# What the fake teacher writes for the sentences it finds in an excerpt: a question in
# other words, answered by the sentence itself; and one answer the excerpt does not hold.
TEACHER_PAIRS = {
    "Refunds are paid to the original card within 9 business days.": (
        "How many business days until a refund reaches my card?"
    ),
    "Forklift drivers renew their licence every 18 months.": (
        "How often must forklift drivers renew their licence?"
    ),
    'Never say "no worries".': "Which phrase must replies never use?",
}
MADE_UP = ("Do refunds cover the return postage?", "Yes, the return postage is refunded too.")
# A value the excerpt does not hold: the pair is dropped before it reaches the dataset.
MADE_UP_VALUE = ("Who approves big refunds?", "Refunds over 500 euros need a manager.")
# An address the teacher adds from its own knowledge: redacted like the sources' values.
ADDRESS = "claims.desk@kestrel.example"


def pair(question: str, answer: str) -> str:
    return json.dumps({"question": question, "answer": answer})


def fake_teacher(prompts: list[str]) -> FastAPI:
    """An OpenAI-compatible chat endpoint that answers the document-QA prompt with JSON lines."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        prompts.append(prompt)
        excerpt = prompt.split("):\n\n", 1)[1].split("\n\nWrite ", 1)[0]
        lines = [pair(q, a) for a, q in TEACHER_PAIRS.items() if a in excerpt]
        if "Refunds" in excerpt:
            lines += [pair(*MADE_UP), pair(*MADE_UP), pair(*MADE_UP_VALUE)]  # one twice
        if "damaged parcel" in excerpt:
            answer = f"Send the photos to {ADDRESS} through the Kestrel portal."
            lines.append(pair("Where do damage photos go?", answer))
        reply = "Here are the pairs:\n" + "\n".join(lines)
        message = {"role": "assistant", "content": reply}
        return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

    return app


@pytest.fixture
def teacher_url():
    prompts: list[str] = []
    with BackgroundServer(fake_teacher(prompts)) as url:
        yield url + "/v1", prompts


@pytest.fixture
def project(tmp_path, tiny_model, teacher_url, monkeypatch) -> Project:
    """write_project's organization with a tone guide among its documents, declared style
    material, a teacher, and the defaults of data.replay and rag.raft."""
    monkeypatch.setenv("SHOPTALK_CACHE", str(tmp_path / "cache"))
    # A tiny random model never ends a reply: the base model's replay answers are given.
    monkeypatch.setattr(
        replay,
        "generate_self_answers",
        lambda prompts, *a: ["I can help with that. Here is a short answer."] * len(prompts),
    )
    root = write_project(tmp_path / "p", tiny_model)
    (root / "docs" / "returns.md").write_text(RETURNS, encoding="utf-8")
    (root / "docs" / "tone.md").write_text(TONE, encoding="utf-8")
    (root / "voice").mkdir()
    (root / "voice" / "members.md").write_text(DECLARED, encoding="utf-8")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["sources"]["style"] = ["voice"]
    del config["data"]["replay"]  # self-replay at its default
    teacher = {"base_url": teacher_url[0], "model": "big", "questions_per_chunk": 4}
    config["data"]["synth"] = {"teacher": teacher}
    assert "rag" not in config, "rag.raft at its default"
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.open(root)


def test_teacher_pairs_join_style_replay_and_the_raft_view(project, teacher_url):
    _, prompts = teacher_url
    assert project.config.rag.raft is not None and project.config.data.replay.ratio > 0
    dataset = prepare_dataset(project)
    manifest = dataset.manifest()

    # The documents, the recognized tone guide among them, are knowledge: each is asked
    # about. Declared style material is not knowledge: the teacher never reads it.
    asked = "\n".join(prompts)
    assert manifest["synth"]["requests"] == len(prompts) >= 3
    assert manifest["synth"]["unsupported"] == 1  # MADE_UP_VALUE
    for source in ("docs/handbook.md", "docs/returns.md", "docs/tone.md"):
        assert f"({source}#" in asked
    assert "Member Desk" not in asked and "voice/" not in asked

    train = dataset.conversations("train")
    written = {c.messages[0].content: c for c in train if c.id.startswith("synth-")}
    assert set(written) == {*TEACHER_PAIRS.values(), MADE_UP[0], "Where do damage photos go?"}
    assert {c.kind for c in written.values()} == {"doc_qa"}
    # Cleaned, redacted and deduplicated like every source's records.
    assert sum(c.messages[0].content == MADE_UP[0] for c in train) == 1
    assert ADDRESS not in (dataset.path / "train.jsonl").read_text(encoding="utf-8")
    assert written[TEACHER_PAIRS[next(iter(TEACHER_PAIRS))]].source.startswith("docs/returns.md#")
    # The other kinds are there too: drafting examples in the guides' frame, replay.
    assert manifest["style"]["files"] == {
        "voice/members.md": "listed under sources.style",
        "docs/tone.md": "heading about writing: 'Tone of voice'",
    }
    assert manifest["style"]["rules"]["sign_off"] == "Warm wishes, the Member Desk"
    drafts = [c for c in train if c.messages[-1].content.endswith("Warm wishes, the Member Desk")]
    assert drafts and manifest["counts"]["replay"] > 0

    # The RAFT view: the teacher's questions read the passages retrieval selects for them,
    # when those passages hold the answer; an answer no passage holds gets no example.
    data = prepare_input(project, dataset=dataset)
    assert data.kind == "raft"
    view = data.dataset.conversations("train")
    added = [c for c in view if c.messages[-2].content.startswith("Passages:\n[1] ")]
    read = {c.messages[-2].content.rsplit("\nQuestion: ", 1)[-1]: c for c in added}
    refund = read.get(
        TEACHER_PAIRS["Refunds are paid to the original card within 9 business days."]
    )
    assert refund is not None, sorted(read)
    assert refund.kind == "doc_qa" and refund.source.startswith("docs/returns.md#")
    assert re.search(r"9 business days \[\d\]\.$", refund.messages[-1].content)
    assert "docs/returns.md#" in refund.messages[-2].content
    assert MADE_UP[0] not in read
