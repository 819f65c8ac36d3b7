"""The console's routes: sources, data check, builds run by the worker, scorecard,
playground and feedback; and the console's own files."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project


@pytest.fixture
def console(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)
    project = Project.open(root)
    # The transformers engine: the playground asks the served models through it.
    app = create_app(root)
    keys = app.state.services.keys
    editor = keys.create("editor", KeyLimits(scopes=["editor", "chat"])).secret
    viewer = keys.create("viewer", KeyLimits(scopes=["chat"])).secret
    owner = keys.create("owner", KeyLimits(scopes=["admin"])).secret
    with TestClient(app) as client:
        yield {
            "client": client,
            "root": root,
            "project": project,
            "editor": {"Authorization": f"Bearer {editor}"},
            "viewer": {"Authorization": f"Bearer {viewer}"},
            "owner": {"Authorization": f"Bearer {owner}"},
        }


def test_console_files_are_public_and_the_api_is_not(console):
    client = console["client"]
    page = client.get("/console")
    assert page.status_code == 200 and "console.js" in page.text
    assert client.get("/console/static/console.js").status_code == 200
    assert client.get("/v1/project").status_code == 401
    assert client.get("/v1/project", headers=console["viewer"]).json()["name"]


def test_upload_never_replaces_a_file_and_lists_the_source(console):
    client, root = console["client"], console["root"]
    files = {"file": ("guide.md", b"# Guide\n\nReturns take 9 days.\n", "text/markdown")}
    first = client.post(
        "/v1/project/sources", headers=console["editor"], files=files, data={"kind": "docs"}
    )
    second = client.post(
        "/v1/project/sources", headers=console["editor"], files=files, data={"kind": "docs"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["path"] == "uploads/docs/guide.md"
    assert second.json()["path"] == "uploads/docs/guide (1).md"
    assert "uploads/docs" in Project.open(root).config.sources.docs
    assert (root / "shoptalk.yaml.bak").is_file(), "the previous config is kept"
    listed = client.get("/v1/project", headers=console["viewer"]).json()["sources"]
    assert {"kind": "docs", "path": "uploads/docs/guide (1).md", "bytes": 30} in listed


def test_viewers_cannot_change_anything(console):
    client = console["client"]
    files = {"file": ("x.md", b"# x\n", "text/markdown")}
    refused = client.post(
        "/v1/project/sources", headers=console["viewer"], files=files, data={"kind": "docs"}
    )
    assert refused.status_code == 403
    assert client.post("/v1/project/builds", headers=console["viewer"]).status_code == 403
    assert (
        client.patch("/v1/project", headers=console["viewer"], json={"name": "X"}).status_code
        == 403
    )


def test_data_check_names_file_and_line(console):
    (console["root"] / "chats.jsonl").write_text('{"messages": "hi"}\n', encoding="utf-8")
    body = console["client"].get("/v1/project/check", headers=console["editor"]).json()
    assert body["problems"] and body["problems"][0]["where"].endswith("chats.jsonl:1")
    assert body["counts"]["FAQ rows"] == 6


def test_build_runs_in_the_worker_then_scorecard_playground_and_feedback(console):
    client, project = console["client"], console["project"]
    started = client.post("/v1/project/builds", headers=console["editor"]).json()
    assert started["status"] == "queued"
    assert client.post("/v1/project/builds", headers=console["editor"]).status_code == 409
    # The server's own worker runs the build.
    for _ in range(600):
        build = client.get(f"/v1/project/builds/{started['id']}", headers=console["editor"]).json()
        if build["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert build["status"] == "succeeded", build
    assert build["metrics"] and "loss" in build["metrics"][0]
    assert build["eta_seconds"] == 0, "time left comes from the run's plan"
    assert any(e["message"].startswith("eval") for e in build["events"])
    card = client.get("/v1/project/scorecard", headers=console["viewer"]).json()
    # Per-question rows may quote restricted documents: the owner's scope only (issue 18 #3).
    assert "domain" in card["suites"] and card["questions"] == []
    edited = client.get("/v1/project/scorecard", headers=console["editor"]).json()
    assert edited["questions"] == []
    full = client.get("/v1/project/scorecard", headers=console["owner"]).json()
    assert full["questions"]
    answers = client.post(
        "/v1/project/playground",
        headers=console["viewer"],
        json={"question": "Who runs the Oslo depot?", "max_tokens": 8},
    ).json()
    assert answers["base"]["model"] == "base" and answers["tuned"]["model"].startswith("run-")
    grounded = client.post(
        "/v1/project/playground",
        headers=console["viewer"],
        json={
            "question": "How often do forklift drivers renew their licence?",
            "rag": True,
            "max_tokens": 8,
        },
    )
    assert grounded.status_code == 200, grounded.text
    assert all(c["quote"] for c in grounded.json()["tuned"]["citations"])
    stored = client.post(
        "/v1/project/feedback",
        headers=console["viewer"],
        json={
            "question": "Who runs Oslo? mail me at ann@example.com",
            "answer": "x",
            "rating": "down",
            "correction": "Ingrid Solberg.",
        },
    )
    assert stored.json()["stored"] and stored.json()["pending_review"]
    assert not (project.state / "feedback.jsonl").exists(), "a chat key's rating waits for review"
    accepted = client.post(
        f"/v1/project/feedback/{stored.json()['id']}/accept", headers=console["editor"]
    )
    assert accepted.status_code == 200, accepted.text
    line = json.loads(
        (project.state / "feedback.jsonl").read_text(encoding="utf-8").splitlines()[0]
    )
    assert line["correction"] == "Ingrid Solberg." and "ann@example.com" not in json.dumps(line)


def test_every_route_of_a_project_server_needs_a_key_except_the_public_ones(console):
    from test_access_app import every_request

    app = console["client"].app
    requests = every_request(app)
    walked = {route for _, _, route in requests}
    assert {
        "/v1/files",
        "/v1/fine_tuning/jobs",
        "/v1/project/builds",
        "/v1/project/playground",
    } <= walked
    public = {"/health", "/", "/console", "/console/static"}
    client = console["client"]
    for method, path, route in requests:
        answer = client.request(method, path, json={})
        if route in public:
            assert answer.status_code in (200, 404), (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)


def test_the_plan_estimates_time_and_memory_before_a_build(console):
    client, editor = console["client"], console["editor"]
    plan_id = client.post("/v1/project/plan", headers=editor).json()["id"]
    # The server's own worker makes the plan; the route answers 202 until then.
    for _ in range(600):
        answer = client.get("/v1/project/plan", headers=editor)
        if answer.status_code != 202:
            break
        time.sleep(0.5)
    assert answer.status_code == 200 and answer.json()["id"] == plan_id, answer.text
    plan = answer.json()["plan"]
    assert plan["total_steps"] > 0 and plan["estimated_seconds"] > 0
    assert 0 < plan["peak_memory_bytes"] < plan["memory_available_bytes"]
    assert "peak memory" in plan["text"]
