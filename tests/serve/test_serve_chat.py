"""Chat and text completions through the official openai client against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_harness import serving

from shoptalk.modeling.chat_format import prompt_ids

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


def test_streaming_sends_the_same_text_in_chunks_and_usage_last(served):
    client = served.client()
    whole = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=8, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="base",
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


def test_n_choices_and_a_seed_reproduces_them(served):
    client = served.client()

    def sample(seed: int) -> list[str]:
        answer = client.chat.completions.create(
            model="base", messages=HELLO, max_tokens=8, n=3, seed=seed, temperature=1.0
        )
        assert [c.index for c in answer.choices] == [0, 1, 2]
        assert answer.usage.completion_tokens == 24
        return [c.message.content for c in answer.choices]

    first = sample(7)
    assert sample(7) == first
    assert len(set(first)) > 1  # each choice samples on its own
    assert sample(8) != first


def test_stop_string_ends_the_answer_before_it(served):
    client = served.client()
    free = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=12, temperature=0
    ).choices[0]
    stop = free.message.content[3:5]
    cut = free.message.content[: free.message.content.index(stop)]
    stopped = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=12, temperature=0, stop=[stop]
    ).choices[0]
    assert stopped.message.content == cut
    assert stopped.finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="base", messages=HELLO, max_tokens=12, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut


def test_text_completions_take_raw_prompts(served):
    answer = served.client().completions.create(
        model="tiny", prompt=["Who runs the Oslo depot?", "退货期限"], max_tokens=4, temperature=0
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in answer.choices)
    assert answer.usage.completion_tokens == 8
