"""The admin API: keys and usage over HTTP, for admin keys only; and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shoptalk.config import ServeSettings
from shoptalk.errors import ShoptalkError
from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve import admin
from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.services import build_services


@pytest.fixture
def app(tmp_path) -> FastAPI:
    app = FastAPI()
    app.state.services = build_services(ServeSettings(), tmp_path)
    app.add_exception_handler(ApiError, api_error_handler)
    app.include_router(admin.router)
    return app


@pytest.fixture
def client(app) -> TestClient:
    secret = app.state.services.keys.create("ops", KeyLimits(scopes=["admin"])).secret
    return TestClient(app, headers={"Authorization": f"Bearer {secret}"})


def test_create_list_rotate_revoke_over_http(app, client):
    created = client.post(
        "/v1/admin/keys",
        json={"name": "alice", "scopes": ["chat"], "models": ["sales-bot"], "rpm": 5},
    )
    assert created.status_code == 201
    body = created.json()
    secret, key_id = body["secret"], body["key"]["id"]
    assert app.state.services.keys.find(secret).rpm == 5

    listed = client.get("/v1/admin/keys").json()["data"]
    assert {k["name"] for k in listed} == {"ops", "alice"}
    assert secret not in client.get("/v1/admin/keys").text

    rotated = client.post(f"/v1/admin/keys/{key_id}/rotate").json()
    assert rotated["key"]["id"] == key_id and rotated["secret"] != secret
    assert app.state.services.keys.find(secret) is None

    revoked = client.post(f"/v1/admin/keys/{key_id}/revoke").json()
    assert revoked["revoked_at"] is not None
    assert app.state.services.keys.find(rotated["secret"]).status() == "revoked"


def test_admin_errors_use_the_envelope(client):
    missing = client.post("/v1/admin/keys/key_nope/revoke")
    assert missing.status_code == 404 and "key_nope" in missing.json()["error"]["message"]
    bad_scope = client.post("/v1/admin/keys", json={"name": "x", "scopes": ["root"]})
    assert bad_scope.status_code == 400 and "scopes" in bad_scope.json()["error"]["message"]


def test_only_admin_keys_reach_the_admin_api(app):
    chat = app.state.services.keys.create("alice", KeyLimits(scopes=["chat", "embeddings"]))
    client = TestClient(app, headers={"Authorization": f"Bearer {chat.secret}"})
    assert client.get("/v1/admin/keys").status_code == 403
    assert client.get("/v1/admin/usage").status_code == 403
    assert TestClient(app).get("/v1/admin/usage").status_code == 401


def test_usage_endpoint_totals_the_audit_log(app, client):
    audit = app.state.services.audit
    alice = app.state.services.keys.create("alice", KeyLimits()).key.id
    for key_id, model, tokens in [
        (alice, "base", 10),
        (alice, "tuned", 5),
        ("key_gone", "base", 1),  # a key deleted from the table keeps its usage
    ]:
        audit.record(
            AuditEntry(
                key_id=key_id,
                route="/v1/chat/completions",
                model=model,
                prompt_tokens=tokens,
                completion_tokens=2,
                latency_ms=3.0,
                status=200,
            )
        )
    usage = client.get("/v1/admin/usage").json()
    by_key = {row["name"]: row for row in usage["by_key"]}
    assert by_key[alice]["requests"] == 2 and by_key[alice]["prompt_tokens"] == 15
    assert by_key[alice]["label"] == "alice" and by_key["key_gone"]["label"] is None
    by_model = {row["name"]: row for row in usage["by_model"]}
    assert by_model["base"]["requests"] == 2
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert client.get("/v1/admin/usage", params={"since": tomorrow}).json()["by_key"] == []


def test_prompts_are_kept_only_when_turned_on_and_then_redacted(tmp_path):
    # The last ID has a wrong check digit: mistyped, still personal data.
    pii = "Mail li.wei@example.com or call 13812345678, ID 11010519491231002X, 身份证110105194912310020"
    key = "sk-st-" + "A1b2C3d4" * 6
    for store_prompts in (False, True):
        services = build_services(
            ServeSettings(store_prompts=store_prompts), tmp_path / str(store_prompts)
        )
        services.audit.record(
            AuditEntry(
                key_id="key_a",
                route="/v1/chat/completions",
                status=200,
                prompt=f"{pii} my key is {key}",
                completion=f"Noted: {pii}",
            )
        )
        with services.audit.sessions() as session:
            row = session.query(AuditRow).one()
        if not store_prompts:
            assert row.prompt is None and row.completion is None
            continue
        stored = row.prompt + row.completion
        secrets = ("li.wei@example.com", "13812345678", "11010519491231002X", "110105194912310020")
        for secret in (*secrets, key):
            assert secret not in stored
        assert "<EMAIL_1>" in stored and "my key is" in stored


def test_parse_since():
    now = datetime(2026, 5, 10, 12, tzinfo=timezone.utc)
    assert admin.parse_since("7d", now) == datetime(2026, 5, 3, 12, tzinfo=timezone.utc)
    assert admin.parse_since("2026-05-01") == datetime(2026, 5, 1, tzinfo=timezone.utc)
    with pytest.raises(ShoptalkError, match="--since: expected .* got 'last week'"):
        admin.parse_since("last week")
