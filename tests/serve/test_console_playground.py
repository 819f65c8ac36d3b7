"""The console's playground asks the served models through the chat API's own path:
the key's limits, model allow-list and `max_tokens_limit`, the audit, and retrieval
filtered by the key's groups (issue 18: the playground used to skip all of them)."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_ops_project, write_project

QUESTION = "How often do forklift drivers renew their licence?"


@pytest.fixture
def console(tmp_path, tiny_model, one_thread):
    root = write_ops_project(tmp_path / "p", tiny_model, max_tokens_limit=12)
    app = create_app(root)
    keys = app.state.services.keys

    def bearer(name: str, **limits) -> dict:
        secret = keys.create(name, KeyLimits(**({"scopes": ["chat"]} | limits))).secret
        return {"Authorization": f"Bearer {secret}"}

    with TestClient(app) as client:
        yield client, app, bearer


def ask(client, headers, **body):
    return client.post(
        "/v1/project/playground", headers=headers, json={"question": QUESTION} | body
    )


def test_the_playground_answers_like_the_chat_api_and_is_audited(console):
    client, app, bearer = console
    key = bearer("viewer")
    played = ask(client, key, max_tokens=4)
    assert played.status_code == 200, played.text
    chat = client.post(
        "/v1/chat/completions",
        headers=key,
        json={
            "model": "base",
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 4,
            "temperature": 0,
        },
    ).json()
    assert played.json()["base"]["answer"] == chat["choices"][0]["message"]["content"].strip()
    with app.state.services.audit.sessions() as session:
        audited = list(
            session.scalars(select(AuditRow).where(AuditRow.route == "/v1/project/playground"))
        )
    assert len(audited) == 1 and audited[0].model == "base"
    assert audited[0].completion_tokens > 0 and audited[0].status == 200


def test_the_playground_keeps_the_servers_max_tokens_limit(console):
    client, _app, bearer = console
    refused = ask(client, bearer("viewer"), max_tokens=100)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "max_tokens_too_large"


def test_the_playground_keeps_the_keys_model_allow_list(console):
    client, _app, bearer = console
    refused = ask(client, bearer("tuned-only", models=["shoptalk"]), max_tokens=4)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"


def test_the_playground_keeps_the_keys_rate_limit(console):
    client, _app, bearer = console
    key = bearer("slow", rpm=1)
    assert ask(client, key, max_tokens=2).status_code == 200
    assert ask(client, key, max_tokens=2).status_code == 429


def test_retrieval_in_the_playground_is_filtered_by_the_keys_groups(console):
    client, _app, bearer = console
    outsider = ask(client, bearer("sales", groups=["sales"]), rag=True, max_tokens=4).json()
    assert outsider["base"]["citations"] == []
    assert "could not find" in outsider["base"]["answer"]
    insider = ask(client, bearer("ops", groups=["ops"]), rag=True, max_tokens=4).json()
    assert "could not find" not in insider["base"]["answer"]


def test_a_console_made_project_is_not_asked_outside_the_served_models(console):
    client, _app, bearer = console
    editor = bearer("editor", scopes=["editor", "chat"])
    made = client.post(
        "/v1/projects", headers=editor, json={"name": "Bakery", "base_model": "default"}
    )
    assert made.status_code in (200, 201), made.text
    refused = ask(client, editor | {"X-Shoptalk-Project": made.json()["slug"]}, max_tokens=2)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "project_not_served"


def test_retrieval_that_finds_nothing_readable_still_counts_against_the_rate_limit(console):
    client, _app, bearer = console
    key = bearer("sales", groups=["sales"], rpm=1)
    first = ask(client, key, rag=True, max_tokens=2)
    assert "could not find" in first.json()["base"]["answer"]
    assert ask(client, key, rag=True, max_tokens=2).status_code == 429


def test_a_console_made_project_on_the_same_base_is_asked_through_the_catalog(console, tiny_model):
    from test_serve_catalog import add_run

    client, app, bearer = console
    editor = bearer("editor", scopes=["editor", "chat"])
    made = client.post(
        "/v1/projects", headers=editor, json={"name": "Depot", "base_model": tiny_model.name}
    )
    assert made.status_code in (200, 201), made.text
    slug = made.json()["slug"]
    root = app.state.workspace.folder / slug
    add_run(root, "run-depot", tiny_model, seed=7)
    (root / ".shoptalk" / "promoted-run").write_text("run-depot\n", encoding="utf-8")

    answers = ask(client, editor | {"X-Shoptalk-Project": slug}, max_tokens=4)
    assert answers.status_code == 200, answers.text
    assert answers.json()["base"]["model"] == "base"
    assert answers.json()["tuned"]["model"] == f"{slug}/run-depot"
    loaded = [p.parent.name for p in app.state.engine.catalog.loaded()]
    assert loaded == ["run-depot"], "the adapter lives in the server's catalog, under its cap"


def test_metrics_count_one_request_per_audit_row_and_each_model_call(tmp_path, tiny_model):
    """The playground asks base and tuned for one question: one audit row, one request in
    /metrics (model `base+<run>`), two model calls; refused requests are counted as audited."""
    from prometheus_client.parser import text_string_to_metric_families
    from test_serve_catalog import add_run

    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    add_run(root, "run-tuned", tiny_model, seed=1)
    (root / ".shoptalk" / "promoted-run").write_text("run-tuned\n", encoding="utf-8")
    app = create_app(root)
    keys = app.state.services.keys
    viewer = keys.create("viewer", KeyLimits(scopes=["chat"])).secret
    admin = keys.create("admin", KeyLimits(scopes=["admin"])).secret
    only_base = keys.create("only base", KeyLimits(scopes=["chat"], models=["base"])).secret
    chat = {"model": "base", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 3}
    with TestClient(app) as client:
        played = ask(client, {"Authorization": f"Bearer {viewer}"}, max_tokens=3)
        assert played.status_code == 200 and played.json()["tuned"] is not None
        assert (
            client.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {viewer}"}, json=chat
            ).status_code
            == 200
        )
        assert client.post("/v1/chat/completions", json=chat).status_code == 401
        refused = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {only_base}"},
            json=chat | {"model": "run-tuned"},
        )
        assert refused.status_code == 403
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    families = {f.name: f for f in text_string_to_metric_families(scraped)}

    def counted(family: str) -> dict[tuple, float]:
        return {
            (s.labels["route"], s.labels["model"], s.labels["status"]): s.value
            for s in families[family].samples
            if s.name.endswith("_total") and s.value
        }

    with app.state.services.audit.sessions() as session:
        rows = list(session.scalars(select(AuditRow)))
    audited: dict[tuple, float] = {}
    for row in rows:
        key = (row.route, row.model or "", str(row.status))
        audited[key] = audited.get(key, 0) + 1
    assert counted("shoptalk_requests") == audited
    playground = ("/v1/project/playground", "base+run-tuned", "200")
    assert audited[playground] == 1
    calls = counted("shoptalk_model_calls")
    assert calls[("/v1/project/playground", "base", "200")] == 1
    assert calls[("/v1/project/playground", "run-tuned", "200")] == 1
    assert calls[("/v1/chat/completions", "base", "200")] == 1
    # Refused before a model was chosen (not on the key's list): a request, not a call.
    assert audited[("/v1/chat/completions", "unknown", "403")] == 1
    assert not any(status == "403" for _route, _model, status in calls)
    # Each call's tokens: together, what the audit rows of model requests hold.
    tokens = sum(s.value for s in families["shoptalk_tokens"].samples if s.name.endswith("_total"))
    assert tokens == sum(r.prompt_tokens + r.completion_tokens for r in rows)
