"""The permission table of `serve.auth`: pipeline work needs `editor`; console reads need
`chat` or `editor`.

A `chat` key must not be able to start any pipeline work: before this, `GET
/v1/project/plan` with a chat key built a dataset folder and loaded the base
model in the request path. Now a plan is queued and the worker makes it, like a
build, for an editor only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from shoptalk.config import ServeSettings
from shoptalk.jobs.build_runner import run_build
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project

# Every route that does pipeline work (reads every source, writes under .shoptalk/,
# loads a model or queues a build) or changes the project.
PIPELINE_ROUTES = [
    ("GET", "/v1/project/check"),
    ("POST", "/v1/project/report"),
    ("GET", "/v1/project/report"),
    ("POST", "/v1/project/plan"),
    ("GET", "/v1/project/plan"),
    ("GET", "/v1/project/builds"),
    ("POST", "/v1/project/builds"),
    ("GET", "/v1/project/builds/build-x"),
    ("POST", "/v1/project/builds/build-x/cancel"),
    ("POST", "/v1/project/sources"),
    ("PATCH", "/v1/project"),
    ("POST", "/v1/projects"),
    ("POST", "/v1/fine_tuning/jobs"),
    ("POST", "/v1/files"),
]


@pytest.fixture
def server(tmp_path: Path, tiny_model: Path, request):
    # The recipe to plan (`@pytest.mark.parametrize("server", [...], indirect=True)`).
    root = write_project(tmp_path / "p", tiny_model, **getattr(request, "param", {}))
    settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1", worker=False)
    app = create_app(root, settings=settings)
    keys = app.state.services.keys

    def bearer(*scopes: str) -> dict:
        secret = keys.create("-".join(scopes), KeyLimits(scopes=list(scopes))).secret
        return {"Authorization": f"Bearer {secret}"}

    with TestClient(app) as client:
        yield client, root, bearer


def files_under(folder: Path) -> set[Path]:
    # The registry database changes with every request (keys touched); it is not pipeline work.
    return {p for p in folder.rglob("*") if "shoptalk.db" not in p.name}


@pytest.mark.parametrize(("method", "path"), PIPELINE_ROUTES)
def test_a_chat_key_gets_403_on_pipeline_routes_and_nothing_is_written(server, method, path):
    client, root, bearer = server
    before = files_under(root / ".shoptalk")
    answer = client.request(
        method,
        path,
        headers=bearer("chat", "embeddings"),
        files={"file": ("x.md", b"# x\n", "text/markdown")} if path.endswith("sources") else None,
        data={"kind": "docs"} if path.endswith("sources") else None,
    )
    assert answer.status_code == 403, (method, path, answer.text)
    assert answer.json()["error"]["code"] == "insufficient_scope"
    assert files_under(root / ".shoptalk") == before
    assert not (root / "uploads").exists()


def queue_plan(client: TestClient, editor: dict) -> str:
    queued = client.post("/v1/project/plan", headers=editor)
    assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
    again = client.post("/v1/project/plan", headers=editor).json()
    assert again["id"] == queued.json()["id"], "one plan per project at a time"
    return queued.json()["id"]


def test_a_plan_is_queued_not_made_in_the_request(server):
    client, root, bearer = server
    editor = bearer("editor")
    assert client.get("/v1/project/plan", headers=editor).status_code == 404
    before = files_under(root / ".shoptalk")
    plan_id = queue_plan(client, editor)
    waiting = client.get("/v1/project/plan", headers=editor)
    assert waiting.status_code == 202 and waiting.json()["plan"] is None
    assert files_under(root / ".shoptalk") == before, "no dataset folder, no model load"
    assert client.get("/v1/project/builds", headers=editor).json() == [], "a plan is no build"
    assert waiting.json()["id"] == plan_id


PREFERENCES = '{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}\n'


def use_dpo(root: Path) -> None:
    """The DPO recipe on one preference pair (its own epochs: SFT's keys are refused)."""
    (root / "prefs.jsonl").write_text(PREFERENCES, encoding="utf-8")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    train = {k: v for k, v in config["train"].items() if k not in ("epochs", "learning_rate")}
    config["train"] = train | {"recipe": "dpo", "dpo": {"epochs": 1}}
    config["sources"]["preferences"] = ["prefs.jsonl"]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("server", "stages"),
    [
        ({"epochs": 1}, ["sft"]),
        ({"epochs": 1, "recipe": "cpt", "trainable_layers": None}, ["cpt"]),
        ({}, ["dpo"]),
    ],
    indirect=["server"],
)
def test_an_editor_gets_the_recipes_plan_through_the_queue(server, stages):
    client, root, bearer = server
    editor = bearer("editor")
    if stages == ["dpo"]:
        use_dpo(root)
    plan_id = queue_plan(client, editor)
    run_build(Project.open(root), plan_id)  # what the worker's child process runs
    done = client.get("/v1/project/plan", headers=editor)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["id"] == plan_id and body["status"] == "succeeded", body
    plan = body["plan"]
    assert [s["stage"] for s in plan["stages"]] == stages
    assert plan["recipe"] == stages[0] and plan["total_steps"] > 0
    assert f"{stages[0]:<8} run-" in plan["text"]


def test_the_data_report_is_queued_and_made_by_the_worker(server):
    client, root, bearer = server
    editor = bearer("editor")
    before = files_under(root / ".shoptalk")
    queued = client.post("/v1/project/report", headers=editor).json()
    assert client.get("/v1/project/report", headers=editor).status_code == 202
    assert files_under(root / ".shoptalk") == before, "no dataset folder in the request"
    run_build(Project.open(root), queued["id"])  # what the worker's child process runs
    report = client.get("/v1/project/report", headers=editor)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "<html" in report.text.lower()


def test_an_editor_only_key_signs_into_the_console(server):
    client, _root, bearer = server
    editor = bearer("editor")
    assert client.get("/v1/projects", headers=editor).status_code == 200
    assert client.get("/v1/project", headers=editor).json()["name"]
    assert client.get("/v1/project/builds", headers=editor).json() == []


def test_an_editor_only_key_cannot_ask_the_models(server):
    client, _root, bearer = server
    asked = client.post("/v1/project/playground", headers=bearer("editor"), json={"question": "hi"})
    assert asked.status_code == 403


def test_a_chat_keys_feedback_is_no_training_row_until_an_editor_accepts_it(server):
    client, root, bearer = server
    chat, editor = bearer("chat"), bearer("editor")
    rating = {"question": "Who runs Oslo?", "answer": "x", "rating": "down", "correction": "Bo."}
    training = root / ".shoptalk" / "feedback.jsonl"

    stored = client.post("/v1/project/feedback", headers=chat, json=rating).json()
    assert stored["pending_review"] and not training.exists()
    assert client.get("/v1/project/feedback/pending", headers=chat).status_code == 403
    assert (
        client.post(f"/v1/project/feedback/{stored['id']}/accept", headers=chat).status_code == 403
    )
    waiting = client.get("/v1/project/feedback/pending", headers=editor).json()["data"]
    assert [f["id"] for f in waiting] == [stored["id"]]

    rejected = client.post("/v1/project/feedback", headers=chat, json=rating).json()
    client.post(f"/v1/project/feedback/{rejected['id']}/reject", headers=editor)
    client.post(f"/v1/project/feedback/{stored['id']}/accept", headers=editor)
    lines = training.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [stored["id"]]
    assert client.get("/v1/project/feedback/pending", headers=editor).json()["data"] == []


def test_an_editors_feedback_trains_at_once(server):
    client, root, bearer = server
    rating = {"question": "Who runs Oslo?", "answer": "Bo.", "rating": "up"}
    stored = client.post("/v1/project/feedback", headers=bearer("editor", "chat"), json=rating)
    assert stored.json()["pending_review"] is False
    assert (root / ".shoptalk" / "feedback.jsonl").is_file()


def test_shoptalk_feedback_review_accepts_and_rejects_by_id(server):
    from typer.testing import CliRunner

    from shoptalk.cli import app as cli

    client, root, bearer = server
    chat = bearer("chat")
    rating = {"question": "Who runs Oslo?", "answer": "x", "rating": "down", "correction": "Bo."}
    kept = client.post("/v1/project/feedback", headers=chat, json=rating).json()["id"]
    dropped = client.post("/v1/project/feedback", headers=chat, json=rating).json()["id"]

    listed = CliRunner().invoke(cli, ["feedback", "review", str(root)])
    assert listed.exit_code == 0 and kept in listed.output and "2 waiting" in listed.output
    done = CliRunner().invoke(
        cli, ["feedback", "review", str(root), "--accept", kept, "--reject", dropped]
    )
    assert done.exit_code == 0, done.output
    assert "0 waiting" in done.output
    training = (root / ".shoptalk" / "feedback.jsonl").read_text(encoding="utf-8")
    assert kept in training and dropped not in training
    unknown = CliRunner().invoke(cli, ["feedback", "review", str(root), "--accept", "fb-nope"])
    assert unknown.exit_code == 2 and "fb-nope" in unknown.output
