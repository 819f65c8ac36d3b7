"""The jobs API driven by the official `openai` package, with a real worker."""

from __future__ import annotations

import json
import threading
import time

import openai
import pytest
import yaml

from shoptalk.jobs.worker import Worker
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

from projects import write_project

CHATS = [
    {
        "messages": [
            {"role": "user", "content": f"What is code {i}?"},
            {"role": "assistant", "content": f"Code {i} means parcel {i * 7} is late."},
        ]
    }
    for i in range(12)
]


class WorkerThread:
    """The job worker's poll loop in a thread of this test (the server runs it as a process),
    so a test can stop and restart it at will."""

    def __init__(self, project: Project, poll_s: float = 1.0) -> None:
        self.worker = Worker(project, poll_s)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self.worker.run_forever, args=(self.stop_event,), name="jobs", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)


@pytest.fixture
def server(tmp_path, tiny_model):
    """`shoptalk serve` of a tiny project on 127.0.0.1, its job worker started on demand."""
    root = write_project(tmp_path / "p", tiny_model, epochs=2, checkpoint_every=2)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    app = create_app(root)
    keys = app.state.services.keys
    editor = keys.create("ml team", KeyLimits(scopes=["editor", "chat"]))
    chat_only = keys.create("reader", KeyLimits(scopes=["chat"]))
    worker = WorkerThread(project, poll_s=0.2)
    with BackgroundServer(app) as url:
        yield {
            "url": f"{url}/v1",
            "editor": editor.secret,
            "chat_only": chat_only.secret,
            "project": project,
            "start_worker": worker.start,
        }
    if worker.thread.is_alive():
        worker.stop()


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
        model="base",
        training_file=file.id,
        suffix="support",
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert job.status == "queued" and job.seed == 3
    server["start_worker"]()
    done = wait_for(api, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:base:support:{job.id}"
    assert done.trained_tokens > 0
    # What training used, "auto" resolved: from the run's plan, not nulls.
    used = done.hyperparameters
    assert used.n_epochs == 2 and used.batch_size >= 1 and used.learning_rate_multiplier == 1
    assert done.estimated_finish is not None and done.estimated_finish >= done.created_at
    (result_file,) = done.result_files
    results = api.files.content(result_file).text.splitlines()
    assert results[0].startswith("step,train_loss") and len(results) > 2
    events = api.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert any("successfully completed" in m for m in messages)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all("loss" in e.data for e in metrics)
    checkpoints = api.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints, "checkpoints are listed"
    assert all(c.fine_tuned_model_checkpoint.startswith(done.fine_tuned_model) for c in checkpoints)
    assert [j.id for j in api.fine_tuning.jobs.list().data] == [job.id]
    # The resulting model, and a checkpoint, answer through the same server.
    for model in (done.fine_tuned_model, checkpoints[-1].fine_tuned_model_checkpoint):
        reply = api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What is code 3?"}], max_tokens=5
        )
        assert reply.model == model and reply.usage.completion_tokens > 0


def test_a_job_over_before_the_workers_next_poll_lists_every_checkpoint_it_wrote(server, tmp_path):
    api = client(server)
    file = upload(api, tmp_path, CHATS)
    job = api.fine_tuning.jobs.create(
        model="base",
        training_file=file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    worker = Worker(server["project"], poll_s=3600)
    worker.start_next()  # the poll that starts the job
    assert worker.child.wait(timeout=240) == 0  # ... which ends before the next poll
    run = server["project"].job(job.id).run
    assert not run.checkpoint_folders(), "training deleted its checkpoints at the end"
    worker.tick()  # the next poll

    done = api.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    total = len(run.metrics())
    every = 2  # the project's train.checkpoint_every
    written = [s for s in range(1, total + 1) if s % every == 0 or s == total]
    checkpoints = api.fine_tuning.jobs.checkpoints.list(job.id, limit=100).data
    assert sorted(c.step_number for c in checkpoints) == written
    assert all(c.metrics.train_loss is not None for c in checkpoints)
    reply = api.chat.completions.create(
        model=checkpoints[0].fine_tuned_model_checkpoint,
        messages=[{"role": "user", "content": "What is code 3?"}],
        max_tokens=5,
    )
    assert reply.usage.completion_tokens > 0


def test_bad_training_file_fails_naming_the_line(server, tmp_path):
    api = client(server)
    good = json.dumps(CHATS[0])
    file = upload(api, tmp_path, f'{good}\n{good}\n{{"messages": "oops"}}\n', "bad.jsonl")
    job = api.fine_tuning.jobs.create(model="base", training_file=file.id)
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
    first = api.fine_tuning.jobs.create(model="base", training_file=file.id)
    assert api.fine_tuning.jobs.cancel(first.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        api.fine_tuning.jobs.cancel(first.id)
    second = api.fine_tuning.jobs.create(model="base", training_file=file.id)
    assert api.fine_tuning.jobs.pause(second.id).status == "paused"
    assert api.fine_tuning.jobs.resume(second.id).status == "queued"


def test_a_server_restart_requeues_a_running_job_which_resumes_from_its_checkpoint(
    server, tmp_path
):
    api = client(server)
    file = upload(api, tmp_path, CHATS)
    job = api.fine_tuning.jobs.create(
        model="base",
        training_file=file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 6}}},
    )
    first = WorkerThread(server["project"], poll_s=0.2)
    first.start()
    for _ in range(600):
        if api.fine_tuning.jobs.checkpoints.list(job.id).data:
            break
        time.sleep(0.2)
    first.stop()  # what a server shutdown does
    assert api.fine_tuning.jobs.retrieve(job.id).status == "queued"
    server["start_worker"]()  # the server is back
    done = wait_for(api, job.id, ("succeeded", "failed"), seconds=600)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in api.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert any("Interrupted by a server shutdown" in m for m in messages)
    run = server["project"].state / "jobs" / job.id / "run"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1)), "no step lost or repeated"


def test_a_dpo_job_on_openai_preference_data(server, tmp_path):
    api = client(server)
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Is parcel {i} late?"}]},
            "preferred_output": [
                {"role": "assistant", "content": f"Yes, parcel {i} is two days late."}
            ],
            "non_preferred_output": [{"role": "assistant", "content": "I do not know."}],
        }
        for i in range(6)
    ]
    file = upload(api, tmp_path, pairs, "prefs.jsonl")
    job = api.fine_tuning.jobs.create(
        model="base",
        training_file=file.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1}}},
    )
    assert job.status == "queued" and job.method.type == "dpo"
    server["start_worker"]()
    done = wait_for(api, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    assert (done.hyperparameters.beta, done.hyperparameters.n_epochs) == (0.2, 1)
    metrics = [
        e.data
        for e in api.fine_tuning.jobs.list_events(job.id, limit=100).data
        if e.type == "metrics"
    ]
    assert metrics and all("loss" in m for m in metrics)
    reply = api.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "Is parcel 2 late?"}],
        max_tokens=4,
    )
    assert reply.usage.completion_tokens > 0
