"""Uploads never overwrite and the files the server writes are private (issue 18 #10, #14)."""

from __future__ import annotations

import hashlib
import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from serve_harness import upstream_project

from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

SECRET = "sk-st-planted0000000000000000000000000000000"
EMAIL = "ingrid.solberg@kestrel.example"


@pytest.fixture
def served(tmp_path, tiny_model):
    root = upstream_project(tmp_path / "p", tiny_model)
    app = create_app(root)
    keys = app.state.services.keys
    editor = keys.create("ed", KeyLimits(scopes=["editor", "chat"])).secret
    chat = keys.create("chat", KeyLimits(scopes=["chat"])).secret
    with BackgroundServer(app) as url:
        yield url, root, {"editor": editor, "chat": chat}


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ten_concurrent_same_name_uploads_each_keep_their_bytes(served):
    url, root, keys = served

    def upload(i: int) -> tuple[bytes, httpx.Response]:
        body = f"# Note {i}\n\n".encode() + bytes([65 + i]) * 300_000
        files = {"file": ("same.md", body, "text/markdown")}
        answer = httpx.post(
            url + "/v1/project/sources",
            headers=bearer(keys["editor"]),
            files=files,
            data={"kind": "docs"},
            timeout=60,
        )
        return body, answer

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(upload, range(10)))
    saved = []
    for body, answer in results:
        assert answer.status_code in (200, 409), answer.text
        if answer.status_code == 200:
            path = root / answer.json()["path"]
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(body).digest()
            assert mode(path) == 0o600
            saved.append(path)
    assert len(set(saved)) == len(saved) >= 1
    assert mode(root / "uploads" / "docs") == 0o700
    assert not list((root / "uploads" / "docs").glob(".*"))  # no temporary file left


def test_the_registry_feedback_and_files_are_private(served):
    url, root, keys = served
    rating = {"question": "Who runs Oslo?", "answer": "x", "rating": "up"}
    for key in ("editor", "chat"):
        answer = httpx.post(
            url + "/v1/project/feedback", headers=bearer(keys[key]), json=rating, timeout=60
        )
        assert answer.status_code == 200, answer.text
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    stored = httpx.post(
        url + "/v1/files",
        headers=bearer(keys["editor"]),
        files={"file": ("train.jsonl", line)},
        data={"purpose": "fine-tune"},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    state = root / ".shoptalk"
    assert mode(state) == 0o700
    for name in ("shoptalk.db", "feedback.jsonl", "feedback-pending.jsonl"):
        found = list(state.rglob(name)) or [p for p in state.rglob("*") if p.name == name]
        for path in found:
            assert mode(path) == 0o600, path
    assert mode(state / "shoptalk.db") == 0o600
    assert mode(state / "feedback.jsonl") == 0o600
    uploaded = [p for p in state.rglob("file-*") if p.is_file()]
    assert uploaded and all(mode(p) == 0o600 for p in uploaded)


def test_jobs_api_names_metadata_and_suffix_are_redacted_before_storage(served):
    url, root, keys = served
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    stored = httpx.post(
        url + "/v1/files",
        headers=bearer(keys["editor"]),
        files={"file": (f"{EMAIL}.jsonl", line)},
        data={"purpose": "fine-tune"},
        timeout=60,
    ).json()
    assert EMAIL not in json.dumps(stored)
    job = httpx.post(
        url + "/v1/fine_tuning/jobs",
        headers=bearer(keys["editor"]),
        json={
            "model": "base",
            "training_file": stored["id"],
            "suffix": EMAIL[:60],
            "metadata": {"note": f"key {SECRET} from {EMAIL}"},
        },
        timeout=60,
    )
    assert job.status_code == 200, job.text
    text = job.text
    assert json.loads(text)["metadata"]["note"].startswith("key ")
    assert SECRET not in text and EMAIL not in text and EMAIL[:60] not in text
    database = b"".join(p.read_bytes() for p in (root / ".shoptalk").glob("shoptalk.db*"))
    assert SECRET.encode() not in database and EMAIL.encode() not in database
