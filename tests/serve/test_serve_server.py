"""`shoptalk serve`: safe binding by default, graceful shutdown."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from serve_harness import base_catalog, serving
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.config import ServeSettings
from shoptalk.errors import ConfigError
from shoptalk.serve.server import check_bind

from projects import write_project


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_nothing(host: str):
    check_bind(host, ServeSettings(), insecure=False)


def test_a_reachable_address_needs_tls_or_insecure():
    with pytest.raises(ConfigError, match="tls_certfile"):
        check_bind("0.0.0.0", ServeSettings(), insecure=False)
    check_bind("0.0.0.0", ServeSettings(), insecure=True)
    check_bind("0.0.0.0", ServeSettings(tls_certfile="c.pem", tls_keyfile="k.pem"), insecure=False)


def test_the_cli_refuses_to_serve_on_all_interfaces(tiny_model: Path, tmp_path: Path):
    project = write_project(tmp_path / "p", tiny_model)
    result = CliRunner().invoke(app, ["serve", str(project), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    # The CLI redacts IP addresses from errors, but not the server's own address.
    assert "Refusing to serve on 0.0.0.0" in result.output and "--insecure" in result.output


@pytest.mark.parametrize(("flag", "started"), [([], True), (["--no-worker"], False)])
def test_serve_starts_the_worker_process_unless_told_not_to(
    tiny_model: Path, tmp_path: Path, monkeypatch, flag, started
):
    import uvicorn

    from shoptalk.serve.console import WorkerProcess

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **_options: served.setdefault("app", app))
    project = write_project(tmp_path / "p", tiny_model)
    result = CliRunner().invoke(app, ["serve", str(project), *flag])
    assert result.exit_code == 0, result.output
    assert isinstance(served["app"].state.worker, WorkerProcess) is started


def test_shutdown_lets_in_flight_requests_finish(tiny_model: Path, tmp_path: Path, one_thread):
    answers = []
    with serving(tmp_path, base_catalog(tiny_model)) as served:
        client = served.client()
        started = threading.Event()

        def long_request() -> None:
            stream = client.chat.completions.create(
                model="base",
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=200,
                temperature=0,
                stream=True,
            )
            for chunk in stream:
                started.set()
                answers.append(chunk)

        worker = threading.Thread(target=long_request)
        worker.start()
        assert started.wait(30)
    # Leaving `serving` asked uvicorn to exit while the answer was streaming.
    worker.join(60)
    finishes = [c.choices[0].finish_reason for c in answers if c.choices]
    assert finishes[-1] == "length"
    assert served.engine.batcher._thread.is_alive() is False
