"""Keys and audit on a real PostgreSQL; limits shared by two replicas through a real Redis.

Each server (PostgreSQL from tests/postgres_server.py, Debian's redis-server) runs on
127.0.0.1 on a free port in a temporary folder and is stopped after the tests.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from postgres_server import find_postgres, free_port, running_postgres
from typer.testing import CliRunner

from shoptalk.cli import app as cli
from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve import admin
from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.auth import Principal
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.limits import Calendar, RedisLimiter
from shoptalk.serve.services import build_services


def wait_for_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bin_dir = find_postgres()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    with running_postgres(bin_dir) as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="shoptalk-redis-") as folder:
        process = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_keys_audit_and_admin_api_on_postgresql(postgres_url, tmp_path):
    services = build_services(ServeSettings(database_url=postgres_url), tmp_path)
    assert not (tmp_path / "shoptalk.db").exists()
    new = services.keys.create("alice", KeyLimits(scopes=["chat"], models=["base"], tpm=50))
    found = services.keys.find(new.secret)
    assert (found.id, found.models, found.tpm) == (new.key.id, ["base"], 50)
    services.keys.touch(new.key.id)
    assert services.keys.get(new.key.id).last_used_at is not None
    rotated = services.keys.rotate(new.key.id)
    assert services.keys.find(new.secret) is None
    services.keys.revoke(new.key.id)
    assert services.keys.find(rotated.secret).status() == "revoked"

    services.audit.record(
        AuditEntry(
            key_id=new.key.id,
            route="/v1/chat/completions",
            model="base",
            prompt_tokens=11,
            completion_tokens=4,
            latency_ms=12.5,
            status=200,
        )
    )
    app = FastAPI()
    app.state.services = services
    app.add_exception_handler(ApiError, api_error_handler)
    app.include_router(admin.router)
    ops = services.keys.create("ops", KeyLimits(scopes=["admin"])).secret
    client = TestClient(app, headers={"Authorization": f"Bearer {ops}"})
    usage = client.get("/v1/admin/usage").json()
    assert usage["by_key"] == [
        {
            "name": new.key.id,
            "label": "alice",
            "requests": 1,
            "errors": 0,
            "prompt_tokens": 11,
            "completion_tokens": 4,
        }
    ]
    assert {k["name"] for k in client.get("/v1/admin/keys").json()["data"]} >= {"alice", "ops"}


def test_the_cli_writes_keys_to_the_configured_postgresql(postgres_url, tmp_path):
    config = {"serve": {"database_url": postgres_url}}
    (tmp_path / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    created = CliRunner().invoke(cli, ["keys", "create", str(tmp_path), "--name", "cli"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    services = build_services(ServeSettings(database_url=postgres_url), tmp_path / "unused")
    assert services.keys.find(secret).name == "cli"
    assert not (tmp_path / ".shoptalk" / "shoptalk.db").exists()


def principal(key_id: str, **limits) -> Principal:
    return Principal(key_id=key_id, name="alice", scopes=frozenset({"chat"}), **limits)


async def fire(replicas: list[RedisLimiter], who: Principal, tokens: list[int]) -> list:
    """Every request at once, spread over the replicas in turn."""

    async def one(i: int, n: int):
        try:
            return await replicas[i % len(replicas)].admit(who, n)
        except ApiError as exc:
            return exc

    return await asyncio.gather(*(one(i, n) for i, n in enumerate(tokens)))


def test_redis_limits_hold_across_two_replicas(redis_url, tmp_path):
    async def scenario():
        settings = ServeSettings(redis_url=redis_url)
        replicas = [build_services(settings, tmp_path / name).limiter for name in ("a", "b")]
        assert all(isinstance(r, RedisLimiter) for r in replicas)
        try:
            rpm = await fire(replicas, principal("key_rpm", rpm=4), [1] * 12)
            admitted = [r for r in rpm if not isinstance(r, ApiError)]
            refused = [r for r in rpm if isinstance(r, ApiError)]
            assert len(admitted) == 4 and len(refused) == 8
            assert all(
                e.status == 429 and 55 <= int(e.headers["Retry-After"]) <= 60 for e in refused
            )

            quota = await fire(replicas, principal("key_day", tokens_per_day=1000), [300] * 8)
            assert sum(not isinstance(r, ApiError) for r in quota) == 3
            assert "Daily quota of 1000 tokens reached (900 used" in next(
                r.message for r in quota if isinstance(r, ApiError)
            )
        finally:
            for replica in replicas:
                await replica.close()

    asyncio.run(scenario())


def test_redis_settle_gives_tokens_back_to_every_replica(redis_url):
    async def scenario():
        first, second = RedisLimiter(redis_url), RedisLimiter(redis_url)
        who = principal("key_tpm", tpm=100, tokens_per_month=10_000)
        try:
            held = await first.admit(who, 90)
            with pytest.raises(ApiError, match="100 tokens per minute") as refusal:
                await second.admit(who, 20)
            assert 55 <= int(refusal.value.headers["Retry-After"]) <= 60
            await held.settle(30)  # 60 of the 90 come back
            await second.admit(who, 70)
            with pytest.raises(ApiError, match="needs up to 150 tokens"):
                await second.admit(who, 150)
            month = await first.client.get(first.keys("key_tpm", Calendar.at(time.time()))[-1])
            assert int(month) == 30 + 70
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_redis_down_fails_closed():
    async def scenario():
        limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(ApiError) as refusal:
                await limiter.admit(principal("key_x", rpm=1), 1)
            assert refusal.value.status == 503
        finally:
            await limiter.close()

    asyncio.run(scenario())


def test_redis_grows_a_reservation_without_counting_another_request(redis_url):
    # Admitted before retrieval with a token, the request reserves its prompt once counted.
    async def scenario():
        first, second = RedisLimiter(redis_url), RedisLimiter(redis_url)
        who = principal("key_grow", rpm=2, tpm=100, tokens_per_day=1000)
        try:
            held = await first.admit(who, 1)
            await held.grow(59)
            other = await second.admit(who, 1)  # rpm 2: the grown request counted once
            with pytest.raises(ApiError, match="100 tokens per minute"):
                await other.grow(50)
            with pytest.raises(ApiError, match="needs up to 101 tokens"):
                await other.grow(100)
            await other.grow(39)
            with pytest.raises(ApiError, match="Rate limit of 2 requests"):
                await first.admit(who, 1)
            await held.settle(20)  # 40 of its 60 come back to the window and the day
            day = await first.client.get(first.keys("key_grow", Calendar.at(time.time()))[-2])
            assert int(day) == 20 + 40
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
