"""`shoptalk keys ...` and `shoptalk usage`, in process."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.services import build_services

runner = CliRunner()


@pytest.fixture
def project(tmp_path):
    (tmp_path / "shoptalk.yaml").write_text("name: Kestrel\n", encoding="utf-8")
    return tmp_path


def run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


def test_keys_lifecycle_from_the_command_line(project):
    created = run(
        "keys",
        "create",
        str(project),
        "--name",
        "alice",
        "--scopes",
        "chat",
        "--models",
        "base,sales-bot",
        "--rpm",
        "5",
        "--quota-tokens-per-day",
        "1000",
        "--expires-in-days",
        "30",
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-st-")
    services = build_services(ServeSettings(), project / ".shoptalk")
    key = services.keys.find(secret)
    assert (key.name, key.scopes, key.models, key.rpm, key.tokens_per_day) == (
        "alice",
        ["chat"],
        ["base", "sales-bot"],
        5,
        1000,
    )
    assert key.expires_at is not None

    listed = run("keys", "list", str(project))
    assert listed.exit_code == 0 and key.id in listed.stdout and "alice" in listed.stdout
    assert secret not in listed.stdout and secret[:10] in listed.stdout

    rotated = run("keys", "rotate", str(project), key.id)
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != secret and services.keys.find(secret) is None

    assert run("keys", "revoke", str(project), key.id).exit_code == 0
    assert services.keys.find(new_secret).status() == "revoked"
    assert "revoked" in run("keys", "list", str(project)).stdout


def test_owner_is_another_name_for_the_admin_scope(project):
    created = run("keys", "create", str(project), "--name", "boss", "--scopes", "owner")
    assert created.exit_code == 0, created.output
    services = build_services(ServeSettings(), project / ".shoptalk")
    key = services.keys.find(created.stdout.strip().splitlines()[-1])
    assert key.scopes == ["admin"]  # stored and listed under the one name the server checks
    both = services.keys.create("both", KeyLimits(scopes=["owner", "admin", "chat"])).key
    assert both.scopes == ["admin", "chat"]


def test_keys_errors_are_clear(project):
    bad = run("keys", "create", str(project), "--name", "x", "--scopes", "chat,root")
    assert bad.exit_code == 2 and "scopes: expected some of" in bad.output
    missing = run("keys", "revoke", str(project), "key_nope")
    assert missing.exit_code == 2 and "key_nope" in missing.output


def test_usage_prints_totals_per_key_and_model(project):
    services = build_services(ServeSettings(), project / ".shoptalk")
    key = services.keys.create("alice", KeyLimits()).key
    for model in ("base", "base", "sales-bot"):
        services.audit.record(
            AuditEntry(
                key_id=key.id,
                route="/v1/chat/completions",
                model=model,
                prompt_tokens=1200,
                completion_tokens=34,
                status=200,
            )
        )
    result = run("usage", str(project), "--since", "1d")
    assert result.exit_code == 0, result.output
    assert f"{key.id} alice" in result.stdout
    assert "3,702" in result.stdout  # 3 x (1200 + 34)
    assert "sales-bot" in result.stdout
    assert "--since" in run("usage", str(project), "--since", "soon").output
