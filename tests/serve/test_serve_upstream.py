"""The upstream engine, with a second shoptalk server on 127.0.0.1 standing in for vLLM."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from serve_harness import base_catalog, serving

HELLO = [{"role": "user", "content": "Who runs the Oslo depot?"}]


@pytest.fixture(scope="module")
def upstream(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(tmp_path_factory.mktemp("upstream"), model_dir=tiny_model) as s:
        yield s


@pytest.fixture(scope="module")
def front(upstream, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SHOPTALK_UPSTREAM_KEY", upstream.keys["alice"])
        with serving(
            tmp_path_factory.mktemp("front"), engine="upstream", upstream_url=upstream.url + "/v1"
        ) as s:
            yield s


def ask(client, **options):
    return client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=6, temperature=0, **options
    )


def test_answers_and_usage_come_from_the_upstream(upstream, front):
    direct = ask(upstream.client())
    through = ask(front.client())
    assert through.choices[0].message.content == direct.choices[0].message.content
    assert through.usage == direct.usage
    streamed = ask(front.client(), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        direct.choices[0].message.content
    )
    text = front.client().completions.create(model="base", prompt="退货", max_tokens=3)
    assert text.usage.completion_tokens == 3


def test_models_and_errors_pass_through(front):
    embedder = front.app.state.embedder.name  # the front's own embedding model
    assert {m.id for m in front.client().models.list()} == {"base", "tiny", embedder}
    with pytest.raises(openai.NotFoundError) as caught:
        front.client().chat.completions.create(model="nope", messages=HELLO)
    assert caught.value.code == "model_not_found"


def test_the_front_server_still_checks_its_own_keys(front):
    with pytest.raises(openai.AuthenticationError):
        front.client("sk-st-wrong").chat.completions.create(model="base", messages=HELLO)


def test_both_engines_are_engines(front, tiny_model):
    from shoptalk.serve.engine import Engine, TransformersEngine
    from shoptalk.serve.upstream import UpstreamEngine

    assert isinstance(front.engine, UpstreamEngine) and isinstance(front.engine, Engine)
    local = TransformersEngine(base_catalog(tiny_model))
    try:
        assert isinstance(local, Engine)
    finally:
        local.batcher.close()
