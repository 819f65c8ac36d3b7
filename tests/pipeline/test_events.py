"""A build's progress as typed events: every stage that runs (DPO too), the run folder
really written, and the build recorded for the console's Build tab, from the CLI too."""

from __future__ import annotations

import json

import yaml
from fastapi.testclient import TestClient

from shoptalk import pipeline
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project

PAIRS = [
    {"prompt": "What is the claim window?", "chosen": "47 days.", "rejected": "I don't know."},
    {"prompt": "Who runs the Oslo depot?", "chosen": "Ingrid Solberg.", "rejected": "Hello!"},
]


def project_with_pairs(root, tiny_model) -> Project:
    root = write_project(root, tiny_model, epochs=1)
    (root / "prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["sources"]["preferences"] = ["prefs.jsonl"]
    config["train"]["dpo"] = {"learning_rate": 1e-2, "epochs": 1}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    return Project.open(root)


def test_a_build_reports_every_stage_and_the_console_shows_it(tmp_path, tiny_model, one_thread):
    project = project_with_pairs(tmp_path / "p", tiny_model)
    events: list[pipeline.Event] = []
    result = pipeline.build(project, on_event=events.append)

    stages = [e.stage for e in events if e.status in ("done", "skipped", "failed")]
    assert stages == ["base", "dataset", "index", "input", "sft", "dpo", "eval", "gate"]
    sft, dpo = result.runs
    assert result.run == dpo and dpo.run_id == project.dpo_run_id(sft.run_id)
    for run, stage in ((sft, "sft"), (dpo, "dpo")):
        steps = [e for e in events if e.stage == stage and e.step is not None]
        assert steps and {e.run for e in steps} == {str(run.path)}, "the folder really written"
        assert [e.step for e in steps] == [r["step"] for r in run.metrics()]
        assert steps[-1].step == steps[-1].total and "loss" in steps[-1].metrics
    assert "reward_margin" in steps[-1].metrics, "DPO's own metrics"

    # The CLI's build is in the registry: the console's Build tab lists it.
    app = create_app(project.root)
    editor = app.state.services.keys.create("e", KeyLimits(scopes=["editor"])).secret
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {editor}"}
        (listed,) = client.get("/v1/project/builds", headers=headers).json()
        build = client.get(f"/v1/project/builds/{listed['id']}", headers=headers).json()
    assert build["status"] == "succeeded" and build["stage"] == "done"
    lines = [e["message"].split()[0] for e in build["events"] if e["message"].strip()]
    assert {"sft", "dpo", "eval", "gate"} <= set(lines)
    assert build["metrics"] == dpo.metrics(), "the loss curve of the stage that ran last"
    assert build["eta_seconds"] == 0


def test_a_failing_stage_is_an_event_and_the_build_a_failed_row(tmp_path, tiny_model):
    project = Project.open(write_project(tmp_path / "p", tiny_model, epochs=1))
    (project.root / "chats.jsonl").write_text('{"messages": "hi"}\n')
    events: list[pipeline.Event] = []
    try:
        pipeline.build(project, on_event=events.append)
    except Exception as exc:
        error = exc
    assert "chats.jsonl" in str(error)
    app = create_app(project.root)
    editor = app.state.services.keys.create("e", KeyLimits(scopes=["editor"])).secret
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {editor}"}
        (listed,) = client.get("/v1/project/builds", headers=headers).json()
    assert listed["status"] == "failed" and "chats.jsonl" in listed["error"]["message"]
