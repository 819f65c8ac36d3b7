"""Error cases answer in OpenAI's envelope with OpenAI's status codes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml
from serve_harness import serving

from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

from projects import write_project

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(
        tmp_path_factory.mktemp("state"),
        model_dir=tiny_model,
        max_tokens_limit=64,
        max_body_bytes=20_000,
    ) as s:
        yield s


def test_unknown_model_is_404_listing_the_served_ones(served):
    with pytest.raises(openai.NotFoundError) as caught:
        served.client().chat.completions.create(model="gpt-4", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "base" in caught.value.message


def test_too_long_prompt_is_400_naming_the_counts(served):
    long = [{"role": "user", "content": "claim window " * 600}]
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model="base", messages=long, max_tokens=8)
    message = caught.value.message
    assert caught.value.code == "context_length_exceeded"
    assert "1024" in message and "8 for the completion" in message
    assert "in the prompt" in message


def test_more_prompts_than_a_batch_holds_is_400_not_a_thousand_rows(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().completions.create(model="base", prompt=["hi"] * 1000, max_tokens=2)
    assert caught.value.code == "too_many_completions"
    assert "1000 completions" in caught.value.message
    assert served.engine.batcher.depth == 0


def test_bad_key_is_401_and_never_echoed(served):
    with pytest.raises(openai.AuthenticationError) as caught:
        served.client("sk-st-not-a-real-key").chat.completions.create(model="base", messages=HELLO)
    assert "sk-st-not-a-real-key" not in str(caught.value)


def test_max_tokens_over_the_limit_is_400(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model="base", messages=HELLO, max_tokens=65)
    assert caught.value.param == "max_tokens"
    assert "64" in caught.value.message


def test_invalid_field_is_400_naming_it(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model="base", messages=HELLO, temperature=5)
    assert caught.value.param == "temperature"


def test_body_over_the_limit_is_413(served):
    response = httpx.post(
        served.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {served.keys['alice']}"},
        json={"model": "base", "messages": [{"role": "user", "content": "x" * 25_000}]},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def walk(routes, prefix: str = ""):
    """(path, methods) of every route, included routers too."""
    for route in routes:
        if hasattr(route, "original_router"):
            inner = prefix + route.include_context.prefix
            yield from walk(route.original_router.routes, inner)
        else:
            yield prefix + route.path, getattr(route, "methods", None) or set()


def assert_every_route_needs_a_key(app, url: str, public: tuple[str, ...] = ()) -> int:
    """Walk the app's own route table, so a route added later is covered too."""
    walked = 0
    for path, methods in walk(app.routes):
        # "/" only redirects to the console, whose files hold no data.
        if path in ("/health", "/") or (public and path.startswith(public)):
            continue
        path = re.sub(r"\{[^}]+\}", "x", path)
        for method in methods & {"GET", "POST", "DELETE", "PUT", "PATCH"}:
            walked += 1
            response = httpx.request(method, url + path, json={})
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    return walked


def test_every_route_but_health_needs_a_key(served):
    walked = assert_every_route_needs_a_key(served.app, served.url)
    assert walked >= 10  # chat, completions, embeddings, models, metrics, admin...


def test_every_route_of_a_project_server_needs_a_key(tiny_model: Path, tmp_path: Path):
    """The full server of a project: the console's jobs and project APIs included."""
    from shoptalk.serve.console import PUBLIC_PREFIXES

    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    app = create_app(root)
    with BackgroundServer(app) as url:
        walked = assert_every_route_needs_a_key(app, url, PUBLIC_PREFIXES)
    assert walked >= 25


def test_metrics_need_an_admin_key_and_count_per_model(served):
    served.client().chat.completions.create(model="base", messages=HELLO, max_tokens=2)
    assert httpx.get(served.url + "/metrics").status_code == 401
    user = httpx.get(
        served.url + "/metrics", headers={"Authorization": f"Bearer {served.keys['alice']}"}
    )
    assert user.status_code == 403
    admin = httpx.get(
        served.url + "/metrics", headers={"Authorization": f"Bearer {served.keys['admin']}"}
    )
    assert admin.status_code == 200
    assert (
        'shoptalk_requests_total{adapter="",model="base",route="/v1/chat/completions",status="200"}'
        in admin.text
    )
    assert "shoptalk_time_to_first_token_seconds_bucket" in admin.text
    assert "shoptalk_queue_depth" in admin.text


def test_cors_is_closed_by_default(served):
    response = httpx.options(
        served.url + "/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_opened_allows_the_consoles_project_header(tiny_model: Path, tmp_path: Path):
    """A console served from another origin edits projects (PATCH) and names them in a header."""
    with serving(tmp_path, model_dir=tiny_model, cors_origins=["https://console.example"]) as s:
        response = httpx.options(
            s.url + "/v1/project",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, x-shoptalk-project",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://console.example"
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert "x-shoptalk-project" in response.headers["access-control-allow-headers"].lower()
