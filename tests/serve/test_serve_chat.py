"""Chat and text completions through the official openai client against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_harness import serving

from shoptalk.train.render import prompt_ids

HELLO = [{"role": "user", "content": "What is the claim window? 退货期限是多少天？"}]


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory, one_thread):
    with serving(tmp_path_factory.mktemp("state"), model_dir=tiny_model) as s:
        yield s


def test_chat_answers_with_usage_counted_like_training(served, tiny_model: Path):
    client = served.client()
    answer = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=6, temperature=0
    )
    catalog = served.engine.catalog
    tokenizer = catalog.tokenizer(catalog.resolve("base"))
    assert answer.usage.prompt_tokens == len(prompt_ids(tokenizer, HELLO))
    assert answer.usage.completion_tokens == 6
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 6
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
