"""The Modelfile: ChatML translated to Ollama's Go template, anything else refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoptalk.export import ExportError
from shoptalk.export.ollama import CHATML_GO_TEMPLATE, chatml, modelfile


@pytest.fixture
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_chatml_template_becomes_a_modelfile(tokenizer) -> None:
    stops = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    text = modelfile("model-f16.gguf", tokenizer, "你是助手。", stops, 2048)

    assert text.splitlines()[0] == "FROM ./model-f16.gguf"
    assert f'TEMPLATE """{CHATML_GO_TEMPLATE}"""' in text
    assert 'SYSTEM """你是助手。"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text


def test_python_rendering_of_the_go_template_matches_jinja(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert chatml(messages) == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def test_a_non_chatml_template_is_refused(tokenizer) -> None:
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    )
    with pytest.raises(ExportError, match="not ChatML-style.*--format gguf"):
        modelfile("m.gguf", tokenizer, "S", [1], 2048)


def test_triple_quotes_in_the_system_prompt_are_refused(tokenizer) -> None:
    with pytest.raises(ExportError, match='contains """'):
        modelfile("m.gguf", tokenizer, 'Say """hi"""', [1], 2048)
