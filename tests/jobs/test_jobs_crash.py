"""Issue 18 bar "Crash": `kill -9` of `shoptalk serve` during a fine-tuning job, then a
restart: the job finishes `succeeded`, its metric steps are exactly 1..N, and no trainer
or worker process is left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.services import build_services

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "shoptalk.cli", "serve", str(root), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError("the server did not start")


def processes_of(root: Path) -> list[int]:
    """Live processes (no zombies) whose command line names the project folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            zombie = "\nState:\tZ" in (proc / "status").read_text()
        except OSError:
            continue
        if str(root).encode() in cmdline and not zombie:
            found.append(int(proc.name))
    return found


def wait_for_status(url: str, headers: dict, job_id: str, wanted, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/fine_tuning/jobs/{job_id}", headers=headers, timeout=30).json()
        if wanted(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id}: {job}")


def test_kill_9_of_the_server_during_a_job_then_a_restart_finishes_it(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=2, checkpoint_every=2)
    state = root / ".shoptalk"
    keys = build_services(ServeSettings(), state).keys
    headers = {"Authorization": f"Bearer {keys.create('ml', KeyLimits(scopes=['editor'])).secret}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(root, port)
    try:
        data = "".join(json.dumps(c) + "\n" for c in CHATS).encode()
        file = httpx.post(
            f"{url}/v1/files",
            headers=headers,
            files={"file": ("train.jsonl", data)},
            data={"purpose": "fine-tune"},
            timeout=60,
        ).json()
        method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 40}}}
        job = httpx.post(
            f"{url}/v1/fine_tuning/jobs",
            headers=headers,
            json={"model": "base", "training_file": file["id"], "method": method},
            timeout=60,
        ).json()
        checkpoints = f"{url}/v1/fine_tuning/jobs/{job['id']}/checkpoints"
        deadline = time.monotonic() + 300
        while not httpx.get(checkpoints, headers=headers, timeout=30).json()["data"]:
            if time.monotonic() > deadline:
                job_now = httpx.get(f"{url}/v1/fine_tuning/jobs/{job['id']}", headers=headers)
                raise AssertionError(f"no checkpoint after 300 s: {job_now.json()}")
            time.sleep(0.2)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        server = start_server(root, port)
        done = wait_for_status(
            url, headers, job["id"], lambda j: j["status"] in ("succeeded", "failed"), 600
        )
        assert done["status"] == "succeeded", done
        run = state / "jobs" / job["id"] / "run"
        lines = (run / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines]
        assert steps == list(range(1, len(steps) + 1)), "no step lost or repeated"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    deadline = time.monotonic() + 60
    while processes_of(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(root) == [], "a trainer or worker outlived the server"
