"""Issue 18 #11 and bar "one audit row per request": a dropped stream, refusals and errors
each leave exactly one row, with the status the client got (499 for a client that left)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest
from serve_harness import serving
from sqlalchemy import select

from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits

LONG = {
    "model": "base",
    "messages": [{"role": "user", "content": "Tell me everything."}],
    "max_tokens": 900,
    "temperature": 0,
}


@pytest.fixture
def served(tiny_model: Path, tmp_path: Path, one_thread):
    with serving(tmp_path, model_dir=tiny_model, store_prompts=True) as s:
        keys = s.app.state.services.keys
        s.keys["slow"] = keys.create("slow", KeyLimits(scopes=["chat"], rpm=1)).secret
        yield s


def rows_of(served, key: str | None, at_least: int) -> list[AuditRow]:
    key_id = served.app.state.services.keys.find(served.keys[key]).id if key else None
    deadline = time.monotonic() + 10
    while True:
        with served.app.state.services.audit.sessions() as session:
            found = list(session.scalars(select(AuditRow).where(AuditRow.key_id == key_id)))
        if len(found) >= at_least or time.monotonic() > deadline:
            time.sleep(0.3)  # and no second row for the same request
            with served.app.state.services.audit.sessions() as session:
                return list(session.scalars(select(AuditRow).where(AuditRow.key_id == key_id)))
        time.sleep(0.05)


def headers(served, key: str) -> dict:
    return {"Authorization": f"Bearer {served.keys[key]}"}


def test_a_stream_whose_client_disconnects_leaves_one_row(served):
    url = served.url + "/v1/chat/completions"
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", url, json=LONG | {"stream": True}, headers=headers(served, "alice")
        ) as answer,
    ):
        assert answer.status_code == 200
        for _, _line in zip(range(3), answer.iter_lines(), strict=False):
            pass
        # Leaving the block closes the connection mid-stream.
    rows = rows_of(served, "alice", 1)
    assert [(r.status, r.route, r.model) for r in rows] == [(499, "/v1/chat/completions", "base")]
    assert 0 < rows[0].completion_tokens < 900


def test_refusals_and_errors_leave_one_row_each(served):
    url = served.url + "/v1/chat/completions"
    short = LONG | {"max_tokens": 2}
    first = httpx.post(url, json=short, headers=headers(served, "slow"), timeout=60)
    limited = httpx.post(url, json=short, headers=headers(served, "slow"), timeout=60)
    assert (first.status_code, limited.status_code) == (200, 429)
    bad = httpx.post(
        url, json=short | {"seed": 2**70}, headers=headers(served, "alice"), timeout=60
    )
    unknown = httpx.post(
        url, json=short | {"model": "nope"}, headers=headers(served, "alice"), timeout=60
    )
    assert (bad.status_code, unknown.status_code) == (400, 404)
    assert sorted(r.status for r in rows_of(served, "slow", 2)) == [200, 429]
    assert sorted(r.status for r in rows_of(served, "alice", 2)) == [400, 404]
    refused = httpx.post(
        url, json=short, headers={"Authorization": "Bearer sk-st-nope"}, timeout=60
    )
    assert refused.status_code == 401
    assert [r.status for r in rows_of(served, None, 1)] == [401]
