"""The jobs API driven by the official `openai` package, with a real worker."""

from __future__ import annotations

import json
import threading
import time

import openai
import pytest
import uvicorn
from fastapi import FastAPI

from shoptalk.jobs.worker import Worker
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.jobs_api import JobsService, router
from shoptalk.serve.services import build_services, registry

from projects import write_project

CHATS = [
    {"messages": [{"role": "user", "content": f"What is code {i}?"}, {"role": "assistant", "content": f"Code {i} means parcel {i * 7} is late."}]}
    for i in range(12)
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=2, checkpoint_every=2)
    project = Project.open(root)
    settings = project.config.serve
    app = FastAPI()
    app.state.services = build_services(settings, project.state)
    app.state.jobs = JobsService(registry(settings, project.state), project.state / "files", ["tiny"])
    app.add_exception_handler(ApiError, api_error_handler)
    app.include_router(router)
    editor = app.state.services.keys.create("ml team", KeyLimits(scopes=["editor"]))
    chat_only = app.state.services.keys.create("reader", KeyLimits(scopes=["chat"]))
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    stop = threading.Event()
    worker = Worker(project, poll_s=0.2)
    worker_thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    yield {
        "url": f"http://127.0.0.1:{port}/v1",
        "editor": editor.secret,
        "chat_only": chat_only.secret,
        "project": project,
        "start_worker": worker_thread.start,
        "worker": worker,
    }
    stop.set()
    if worker_thread.is_alive():
        worker_thread.join(timeout=60)
    uv.should_exit = True
    thread.join(timeout=10)


def client(server, key="editor") -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"], api_key=server[key], max_retries=0)


def upload(api: openai.OpenAI, tmp_path, rows, name="train.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) if isinstance(rows, list) else rows)
    with path.open("rb") as f:
        return api.files.create(file=f, purpose="fine-tune")


def wait_for(api, job_id, statuses, seconds=240):
    for _ in range(int(seconds / 0.5)):
        job = api.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.status}")


def test_file_upload_job_events_and_checkpoints(server, tmp_path):
    api = client(server)
    file = upload(api, tmp_path, CHATS)
    assert file.id.startswith("file-") and file.bytes > 0 and file.purpose == "fine-tune"
    job = api.fine_tuning.jobs.create(
        model="tiny",
        training_file=file.id,
        suffix="support",
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert job.status == "queued" and job.seed == 3
    server["start_worker"]()
    done = wait_for(api, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:support:{job.id}"
    assert done.trained_tokens > 0
    events = api.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert any("successfully completed" in m for m in messages)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all("loss" in e.data for e in metrics)
    checkpoints = api.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints, "checkpoints are listed"
    assert all(c.fine_tuned_model_checkpoint.startswith(done.fine_tuned_model) for c in checkpoints)
    assert [j.id for j in api.fine_tuning.jobs.list().data] == [job.id]


def test_bad_training_file_fails_naming_the_line(server, tmp_path):
    api = client(server)
    good = json.dumps(CHATS[0])
    file = upload(api, tmp_path, f"{good}\n{good}\n{{\"messages\": \"oops\"}}\n", "bad.jsonl")
    job = api.fine_tuning.jobs.create(model="tiny", training_file=file.id)
    assert job.status == "failed"
    assert job.error.param == "training_file"
    assert "bad.jsonl, line 3" in job.error.message


def test_unknown_model_and_missing_scope_are_refused(server, tmp_path):
    api = client(server)
    file = upload(api, tmp_path, CHATS)
    with pytest.raises(openai.NotFoundError) as err:
        api.fine_tuning.jobs.create(model="gpt-9", training_file=file.id)
    assert "gpt-9" in str(err.value)
    with pytest.raises(openai.PermissionDeniedError):
        client(server, "chat_only").fine_tuning.jobs.list()


def test_cancel_queued_job_and_resume_paused_job(server, tmp_path):
    api = client(server)
    file = upload(api, tmp_path, CHATS)
    first = api.fine_tuning.jobs.create(model="tiny", training_file=file.id)
    assert api.fine_tuning.jobs.cancel(first.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        api.fine_tuning.jobs.cancel(first.id)
    second = api.fine_tuning.jobs.create(model="tiny", training_file=file.id)
    assert api.fine_tuning.jobs.pause(second.id).status == "paused"
    assert api.fine_tuning.jobs.resume(second.id).status == "queued"
