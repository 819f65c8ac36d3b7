"""`require(scope)` and `check_model` on a small app of the test's own."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.auth import Principal, check_model, require
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.services import build_services


@pytest.fixture
def app(tmp_path) -> FastAPI:
    app = FastAPI()
    app.state.services = build_services(ServeSettings(), tmp_path)
    app.add_exception_handler(ApiError, api_error_handler)

    @app.post("/chat")
    def chat(principal: Annotated[Principal, Depends(require("chat"))], model: str = "base"):
        check_model(principal, model)
        return {"key_id": principal.key_id, "name": principal.name}

    @app.get("/admin")
    def admin(principal: Annotated[Principal, Depends(require("admin"))]):
        return {"ok": True}

    return app


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_valid_key_gets_in_and_is_marked_used(app):
    keys = app.state.services.keys
    new = keys.create("alice", KeyLimits(scopes=["chat"]))
    response = TestClient(app).post("/chat", headers=bearer(new.secret))
    assert response.status_code == 200
    assert response.json() == {"key_id": new.key.id, "name": "alice"}
    assert keys.get(new.key.id).last_used_at is not None


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("sk-st-wrong"), {"Authorization": "Basic dXNlcjpwYXNz"}, bearer("")],
)
def test_missing_or_wrong_keys_are_401_in_openai_envelope(app, headers):
    response = TestClient(app).post("/chat", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    assert "sk-st-wrong" not in response.text


def test_revoked_expired_and_rotated_keys_are_refused(app):
    keys = app.state.services.keys
    client = TestClient(app)
    revoked = keys.create("gone", KeyLimits())
    keys.revoke(revoked.key.id)
    answer = client.post("/chat", headers=bearer(revoked.secret))
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]

    expired = keys.create("temp", KeyLimits(), expires_in_days=1e-9)
    answer = client.post("/chat", headers=bearer(expired.secret))
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]

    old = keys.create("ci", KeyLimits())
    new = keys.rotate(old.key.id)
    assert client.post("/chat", headers=bearer(old.secret)).status_code == 401
    assert client.post("/chat", headers=bearer(new.secret)).status_code == 200


def test_scopes_and_models_are_403(app):
    keys = app.state.services.keys
    client = TestClient(app)
    embeddings_only = keys.create("indexer", KeyLimits(scopes=["embeddings"]))
    answer = client.post("/chat", headers=bearer(embeddings_only.secret))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "insufficient_scope"
    assert client.get("/admin", headers=bearer(embeddings_only.secret)).status_code == 403

    admin = keys.create("ops", KeyLimits(scopes=["admin"]))  # admin implies every scope
    assert client.post("/chat", headers=bearer(admin.secret)).status_code == 200
    assert client.get("/admin", headers=bearer(admin.secret)).status_code == 200

    one_model = keys.create("sales", KeyLimits(scopes=["chat"], models=["sales-bot"]))
    assert client.post("/chat?model=sales-bot", headers=bearer(one_model.secret)).status_code == 200
    answer = client.post("/chat?model=base", headers=bearer(one_model.secret))
    assert answer.status_code == 403
    assert answer.json()["error"] | {"message": None} == {
        "message": None,
        "type": "permission_error",
        "param": "model",
        "code": "model_not_allowed",
    }


def test_require_rejects_an_unknown_scope_when_the_app_is_built():
    with pytest.raises(ValueError, match="unknown scope 'chats'"):
        require("chats")
