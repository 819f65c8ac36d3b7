"""Every /v1 request leaves one audit row; nothing a client typed reaches rows, labels or logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from serve_harness import serving
from sqlalchemy import select

from shoptalk.registry.audit import AuditRow

SECRET_IN_PROMPT = "sk-st-planted0000000000000000000000000000000"
EMAIL = "ingrid.solberg@kestrel.example"
CLIENT_LOGGERS = ("httpx", "httpcore", "openai")


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(tmp_path_factory.mktemp("state"), model_dir=tiny_model) as s:
        yield s


def rows(served, at_least: int = 0) -> list[AuditRow]:
    # A row is written once the response is out, so the client can be a moment ahead.
    deadline = time.monotonic() + 10
    while True:
        with served.app.state.services.audit.sessions() as session:
            found = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_request_is_one_row_with_tokens_and_status(served):
    before = len(rows(served))
    answer = served.client().chat.completions.create(
        model="base", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    with pytest.raises(openai.AuthenticationError):
        served.client("sk-st-wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        served.client().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )
    served.client().models.list()
    new = rows(served, before + 4)[before:]
    assert [(r.route, r.status) for r in new] == [
        ("/v1/chat/completions", 200),
        ("/v1/models", 401),
        ("/v1/chat/completions", 404),
        ("/v1/models", 200),
    ]
    ok = new[0]
    assert (ok.prompt_tokens, ok.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert ok.model == "base" and ok.key_id is not None and ok.latency_ms > 0
    assert new[1].key_id is None
    assert new[2].model == "unknown"  # what the client typed is not stored


def test_planted_secrets_and_pii_reach_no_row_label_or_log(served, caplog):
    caplog.set_level(logging.DEBUG)
    client = served.client()
    message = f"My key is {SECRET_IN_PROMPT}, mail me at {EMAIL}"
    client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": message}], max_tokens=2
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=EMAIL, messages=[{"role": "user", "content": message}], max_tokens=2
        )
    with pytest.raises(openai.AuthenticationError):
        served.client(SECRET_IN_PROMPT).models.list()
    httpx.get(served.url + f"/v1/{EMAIL}")  # an unknown path
    metrics = httpx.get(
        served.url + "/metrics", headers={"Authorization": f"Bearer {served.keys['admin']}"}
    ).text
    stored = " ".join(
        f"{r.route} {r.model} {r.key_id} {r.prompt} {r.completion}" for r in rows(served, 10)
    )
    # The server's logs; the test's own HTTP clients log the URLs they call.
    server_logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)
    )
    for text in (metrics, stored, server_logs):
        for planted in (SECRET_IN_PROMPT, EMAIL, served.keys["alice"]):
            assert planted not in text
    assert 'model="unknown"' in metrics
