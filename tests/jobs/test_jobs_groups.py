"""A fine-tuning job's model is served only to keys holding the groups of the keys that
uploaded its training file (issue 18): what a key could read it could put in the file,
and the model would tell it to anyone. Driven by the official `openai` package against a
live server with a real worker and the tiny model."""

from __future__ import annotations

import openai
import pytest
import yaml
from test_jobs_api import CHATS, WorkerThread, upload, wait_for

from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

from projects import write_project

QUESTION = [{"role": "user", "content": "What is code 3?"}]


@pytest.fixture
def server(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=1, checkpoint_every=2)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    app = create_app(root)
    keys = app.state.services.keys
    secrets = {
        name: keys.create(name, KeyLimits(scopes=scopes, groups=groups)).secret
        for name, scopes, groups in [
            ("hr_editor", ["editor", "chat"], ["hr"]),
            ("hr", ["chat"], ["hr"]),
            ("sales", ["chat"], ["sales"]),
            ("everyone", ["chat"], []),
            ("admin", ["admin"], []),
        ]
    }
    worker = WorkerThread(Project.open(root), poll_s=0.2)
    with BackgroundServer(app) as url:
        yield {
            name: openai.OpenAI(base_url=f"{url}/v1", api_key=s, max_retries=0)
            for name, s in secrets.items()
        } | {"start_worker": worker.start}
    if worker.thread.is_alive():
        worker.stop()


def refused(api: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        api.chat.completions.create(model=model, messages=QUESTION, max_tokens=2)
    assert denied.value.body["code"] == "model_not_allowed"
    assert model not in [m.id for m in api.models.list()]
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve(model)


def answers(api: openai.OpenAI, model: str) -> None:
    reply = api.chat.completions.create(model=model, messages=QUESTION, max_tokens=2)
    assert reply.model == model
    assert model in [m.id for m in api.models.list()]


def test_a_jobs_model_is_served_only_to_keys_holding_its_uploaders_groups(server, tmp_path):
    hr_editor, admin = server["hr_editor"], server["admin"]
    hr_job = hr_editor.fine_tuning.jobs.create(
        model="base", training_file=upload(hr_editor, tmp_path, CHATS).id, suffix="hr"
    )
    assert hr_job.groups == ["hr"]
    # The owner's upload may hold any document: its model is the owner's until the job
    # names who may be served it (a warning says so).
    owners = admin.fine_tuning.jobs.create(
        model="base", training_file=upload(admin, tmp_path, CHATS[:6], "own.jsonl").id
    )
    assert owners.groups is None
    events = [e.message for e in admin.fine_tuning.jobs.list_events(owners.id).data]
    assert any("admin keys only" in m for m in events)
    named = admin.fine_tuning.jobs.create(
        model="base",
        training_file=upload(admin, tmp_path, CHATS[:6], "open.jsonl").id,
        extra_body={"groups": []},
    )
    assert named.groups == []
    admin.fine_tuning.jobs.cancel(named.id)

    server["start_worker"]()
    hr_done = wait_for(hr_editor, hr_job.id, ("succeeded", "failed"))
    assert hr_done.status == "succeeded", hr_done.error
    owners_done = wait_for(admin, owners.id, ("succeeded", "failed"))
    assert owners_done.status == "succeeded", owners_done.error
    checkpoint = hr_editor.fine_tuning.jobs.checkpoints.list(hr_job.id).data[-1]

    for model in (hr_done.fine_tuned_model, checkpoint.fine_tuned_model_checkpoint):
        for name in ("hr", "admin"):
            answers(server[name], model)
        for name in ("everyone", "sales"):
            refused(server[name], model)
    answers(admin, owners_done.fine_tuned_model)
    for name in ("hr", "everyone"):
        refused(server[name], owners_done.fine_tuned_model)
