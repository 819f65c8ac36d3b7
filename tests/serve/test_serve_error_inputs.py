"""Issue 18 #12: client mistakes get a 4xx in OpenAI's envelope, never a plain 500.

Every case is sent raw (httpx), as an attacker would, to a real server.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from serve_harness import serving, upstream_project
from sqlalchemy import select

from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(tmp_path_factory.mktemp("state"), model_dir=tiny_model, store_prompts=True) as s:
        yield s


def post(served, path: str, body=None, key: str = "alice", **options) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.keys[key]}"} if key else {}
    return httpx.post(served.url + path, json=body, headers=headers, timeout=60, **options)


def assert_envelope(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"] and error["type"], error
    return error


CHAT = {"model": "base", "max_tokens": 2}
BAD_INPUTS = {
    "seed 2^70": (
        "/v1/chat/completions",
        CHAT | {"seed": 2**70, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "text part not a string": (
        "/v1/chat/completions",
        CHAT | {"messages": [{"role": "user", "content": [{"type": "text", "text": 12}]}]},
    ),
    "prompt []": ("/v1/completions", {"model": "base", "prompt": [], "max_tokens": 2}),
    'prompt ""': ("/v1/completions", {"model": "base", "prompt": "", "max_tokens": 2}),
    "input []": ("/v1/embeddings", {"model": "base", "input": []}),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_400_in_the_envelope(served, case):
    path, body = BAD_INPUTS[case]
    assert_envelope(post(served, path, body), 400)


def test_a_chunked_body_over_the_limit_is_413(served):
    def chunks():
        for _ in range(26):
            yield b"x" * 100_000

    headers = {
        "Authorization": f"Bearer {served.keys['alice']}",
        "Content-Type": "application/json",
    }
    answer = httpx.post(
        served.url + "/v1/chat/completions", content=chunks(), headers=headers, timeout=60
    )
    assert_envelope(answer, 413)


def test_malformed_json_without_a_key_is_401_first(served):
    answer = httpx.post(
        served.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert_envelope(answer, 401)


def audit_rows(served) -> list[AuditRow]:
    """Alice's rows: the earlier tests' rows of keyless requests may still be on their way."""
    alice = served.app.state.services.keys.find(served.keys["alice"]).id
    with served.app.state.services.audit.sessions() as session:
        query = select(AuditRow).where(AuditRow.key_id == alice).order_by(AuditRow.id)
        return list(session.scalars(query))


def test_a_lone_surrogate_with_store_prompts_on_is_answered_and_audited(served):
    before = len(audit_rows(served))
    body = b'{"model": "base", "max_tokens": 2, "messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    headers = {
        "Authorization": f"Bearer {served.keys['alice']}",
        "Content-Type": "application/json",
    }
    answer = httpx.post(
        served.url + "/v1/chat/completions", content=body, headers=headers, timeout=60
    )
    assert answer.status_code in (200, 400), answer.text
    deadline = time.monotonic() + 10
    while len(audit_rows(served)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    added = audit_rows(served)[before:]
    assert [r.status for r in added] == [answer.status_code]


def test_an_upload_name_of_250_characters_is_not_a_500(tmp_path, tiny_model):
    app = create_app(upstream_project(tmp_path / "p", tiny_model))
    secret = app.state.services.keys.create("ed", KeyLimits(scopes=["editor"])).secret
    headers = {"Authorization": f"Bearer {secret}"}
    name = "a" * 260 + ".jsonl"
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    with TestClient(app) as client:
        for path, data in (
            ("/v1/files", {"purpose": "fine-tune"}),
            ("/v1/project/sources", {"kind": "conversations"}),
        ):
            answer = client.post(path, headers=headers, files={"file": (name, line)}, data=data)
            assert answer.status_code < 500, (path, answer.text)
            if answer.status_code >= 400:
                assert answer.json()["error"]["message"]
