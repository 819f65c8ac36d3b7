"""Access control of the real app: every route needs a key, limits hold under concurrency,
and no raw key or personal data reaches logs, audit rows or metrics."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import openai
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from serve_harness import base_catalog, serving
from sqlalchemy import select
from starlette.routing import Mount, Route

from shoptalk.config import ServeSettings
from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.services import build_services

OPEN_ROUTES = {"/health"}
QUESTION = [{"role": "user", "content": "What is the claim window?"}]


def app_for(tmp_path: Path, tiny_model: Path, **settings):
    serve_settings = ServeSettings(**settings)
    services = build_services(serve_settings, tmp_path)
    return create_app(settings=serve_settings, services=services, catalog=base_catalog(tiny_model))


def every_request(app) -> list[tuple[str, str, str]]:
    """(method, concrete path, route path) for every route the app serves."""
    requests = []
    # iter_route_contexts flattens included routers (FastAPI resolves them lazily).
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            requests.append(("GET", route.path.rstrip("/") + "/x", route.path))
        elif isinstance(route.original_route, (APIRoute, Route)):
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            requests += [(m, path, route.path) for m in sorted(route.methods - {"HEAD"})]
        else:
            raise AssertionError(f"a route of a kind this test does not walk: {route!r}")
    return requests


@pytest.mark.parametrize("public_metrics", [False, True])
def test_every_route_needs_a_key_except_health(tmp_path, tiny_model, public_metrics):
    app = app_for(tmp_path, tiny_model, public_metrics=public_metrics)
    requests = every_request(app)
    walked = {route for _, _, route in requests}
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"} <= walked
    assert {"/v1/admin/keys", "/v1/admin/usage", "/metrics"} <= walked
    open_routes = OPEN_ROUTES | ({"/metrics"} if public_metrics else set())

    client = TestClient(app)
    for method, path, route in requests:
        for headers in ({}, {"Authorization": "Bearer sk-st-not-a-real-key-0123456789"}):
            answer = client.request(method, path, headers=headers, json={})
            if route in open_routes:
                assert answer.status_code == 200, (method, path)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.json()["error"]["code"] == "invalid_api_key"


def test_fastapis_own_schema_and_docs_routes_are_off(tmp_path, tiny_model):
    client = TestClient(app_for(tmp_path, tiny_model))
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 404


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(tmp_path_factory.mktemp("state"), model_dir=tiny_model) as s:
        yield s


def fire_at_once(client: openai.OpenAI, count: int, **request) -> list:
    """`count` threads released by one barrier; each result is a completion or the error."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = client.chat.completions.create(**request)
        except openai.APIStatusError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def check_exactly(results: list, admitted: int) -> None:
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(errors) == admitted, [str(e) for e in errors]
    for error in errors:
        assert isinstance(error, openai.RateLimitError), error
        assert int(error.response.headers["retry-after"]) >= 1
        assert error.body["code"] == "rate_limit_exceeded"


def test_barrier_rpm_exactly_k_of_n_succeed(served):
    keys = served.app.state.services.keys
    secret = keys.create("burst", KeyLimits(scopes=["chat"], rpm=3)).secret
    results = fire_at_once(served.client(secret), 8, model="base", messages=QUESTION, max_tokens=2)
    check_exactly(results, 3)


def test_barrier_token_quota_exactly_k_of_n_succeed(served):
    # A greedy answer on the tiny model runs to max_tokens, so every admitted request
    # uses exactly what it reserved: the quota admits exactly k whatever the order.
    request = {"model": "base", "messages": QUESTION, "max_tokens": 4, "temperature": 0}
    probe = served.client().chat.completions.create(**request)
    assert probe.usage.completion_tokens == 4
    budget = probe.usage.prompt_tokens + 4
    keys = served.app.state.services.keys
    secret = keys.create("quota", KeyLimits(tokens_per_day=3 * budget + budget // 2)).secret
    results = fire_at_once(served.client(secret), 8, **request)
    check_exactly(results, 3)
    assert "Daily quota" in next(r for r in results if isinstance(r, Exception)).body["message"]


class Captured(logging.Handler):
    """Every server-side log record, at every level, as text."""

    CLIENT_LOGGERS = ("openai", "httpx", "httpcore")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(self.CLIENT_LOGGERS):
            self.lines.append(self.format(record))


def test_raw_keys_and_pii_reach_no_log_audit_row_or_metric(tiny_model, tmp_path, one_thread):
    from shoptalk.cli import setup_logging

    log_dir = tmp_path / "logs"
    setup_logging(log_dir)  # the server's log file, as `shoptalk serve` writes it
    captured = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(captured)
    root.setLevel(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # SQL and its parameters
    pii = ["li.wei@example.com", "13812345678", "11010519491231002X"]
    try:
        with serving(tmp_path / "state", model_dir=tiny_model, store_prompts=True) as s:
            key = s.keys["alice"]
            planted = f"My key is {key}; mail {pii[0]}, call {pii[1]}, ID {pii[2]}"
            messages = [{"role": "user", "content": planted}]
            client = s.client()
            client.chat.completions.create(model="base", messages=messages, max_tokens=3)
            stream = client.chat.completions.create(
                model="base", messages=messages, max_tokens=3, stream=True
            )
            assert list(stream)
            client.completions.create(model="base", prompt=planted, max_tokens=3)
            client.embeddings.create(model="default", input=[planted])
            with pytest.raises(openai.AuthenticationError) as refused:
                s.client(key + "x").models.list()
            assert key not in str(refused.value.body)
            with pytest.raises(openai.NotFoundError):  # PII as a model name
                client.chat.completions.create(model=pii[0], messages=messages, max_tokens=1)
            metrics = TestClient(s.app).get(
                "/metrics", headers={"Authorization": f"Bearer {s.keys['admin']}"}
            )
            assert metrics.status_code == 200
            with s.app.state.services.audit.sessions() as session:
                rows = session.scalars(select(AuditRow)).all()
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

    stored_prompts = [row.prompt for row in rows if row.prompt]
    assert len(stored_prompts) >= 4 and all("<EMAIL_1>" in p for p in stored_prompts)
    audit_text = "\n".join(repr(vars(row)) for row in rows)
    log_text = "\n".join(captured.lines)
    log_files = "\n".join(p.read_text(encoding="utf-8") for p in log_dir.rglob("*") if p.is_file())
    assert captured.lines, "the capture saw no server log records at all"
    for secret in [key, key + "x", *pii]:
        for where, text in [
            ("audit rows", audit_text),
            ("log records", log_text),
            ("log files", log_files),
            ("/metrics", metrics.text),
        ]:
            assert secret not in text, f"{secret[:8]}... found in {where}"
