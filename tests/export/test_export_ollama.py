"""The Modelfile: ChatML translated to Ollama's Go template, anything else refused."""

from __future__ import annotations

import json
import re
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


def parse_modelfile(text: str) -> dict[str, list[str]]:
    """Ollama's Modelfile syntax: `INSTRUCTION value` lines, `#` comments, values bare,
    "quoted" or \"\"\"triple-quoted\"\"\" (which may span lines). PARAMETER keeps `name value`."""
    found: dict[str, list[str]] = {}
    pattern = re.compile(
        r'^(?P<op>[A-Za-z]+)[ \t]+(?:"""(?P<triple>.*?)"""|"(?P<quoted>[^"\n]*)"|(?P<bare>[^\n]*))'
        r"[ \t]*$|^[ \t]*(?:#[^\n]*)?$",
        re.M | re.S,
    )
    pos = 0
    while pos < len(text):
        match = pattern.match(text, pos)
        assert match, f"not Modelfile syntax at {text[pos : pos + 40]!r}"
        if match["op"]:
            value = next(v for v in match.group("triple", "quoted", "bare") if v is not None)
            found.setdefault(match["op"].upper(), []).append(value)
        pos = match.end() + 1
    return found


def render_go_template(template: str, messages: list[dict[str, str]]) -> str:
    """The part of Go's text/template Ollama's ChatML template uses: range, end, .Role,
    .Content, and the `{{-`/`-}}` whitespace trims."""
    parts = re.split(r"({{-?\s*.*?\s*-?}})", template)
    for i, part in enumerate(parts):  # trims apply to the neighbouring text
        if part.startswith("{{-"):
            parts[i - 1] = parts[i - 1].rstrip()
        if part.endswith("-}}"):
            parts[i + 1] = parts[i + 1].lstrip()

    def run(start: int, message: dict[str, str] | None) -> tuple[str, int]:
        out, i = "", start
        while i < len(parts):
            part = parts[i]
            action = part.strip("{}-").strip() if part.startswith("{{") else None
            if action is None:
                out += part
            elif action == "range .Messages":
                end = i
                for m in messages:
                    text, end = run(i + 1, m)
                    out += text
                i = end if messages else skip_to_end(i + 1)
            elif action == "end":
                return out, i
            elif action in (".Role", ".Content"):
                assert message is not None, f"{action} outside range"
                out += message[action[1:].lower()]
            else:
                raise AssertionError(f"unexpected action {action!r}")
            i += 1
        return out, i

    def skip_to_end(i: int) -> int:
        while parts[i].strip("{}-").strip() != "end":
            i += 1
        return i

    return run(0, None)[0]


def test_the_modelfile_renders_what_the_chat_format_renders(tokenizer) -> None:
    from shoptalk.modeling.chat_format import render_prompt, stop_ids, with_system
    from shoptalk.records import Message

    system = "你是 Kestrel 的助手。\nAnswer briefly."
    text = modelfile("model-q4_k_m.gguf", tokenizer, system, stop_ids(tokenizer), 2048)
    parsed = parse_modelfile(text)

    assert parsed["FROM"] == ["./model-q4_k_m.gguf"] and parsed["SYSTEM"] == [system]
    conversation = [
        Message(role="user", content="退货需要什么？"),
        Message(role="assistant", content="Receipt.\nAnd the box."),
        Message(role="user", content="How long?"),
    ]
    # Ollama puts the Modelfile's SYSTEM first when the request has no system message.
    ollama_messages = [{"role": "system", "content": parsed["SYSTEM"][0]}] + [
        m.model_dump() for m in conversation
    ]
    (template,) = parsed["TEMPLATE"]
    expected = render_prompt(tokenizer, with_system(conversation, system))
    assert render_go_template(template, ollama_messages) == expected
    params = [p.split(None, 1) for p in parsed["PARAMETER"]]
    stops = [json.loads(v) for k, v in params if k == "stop"]
    assert tokenizer.convert_tokens_to_ids(stops) == stop_ids(tokenizer)
    assert ["temperature", "0"] in params and ["num_ctx", "2048"] in params


def test_the_go_template_renderer_follows_go_semantics() -> None:
    # Whitespace trims, and a range over no messages renders nothing of its body.
    assert render_go_template("a \n{{- range .Messages }}[{{ .Role }}]{{ end -}}\n b", []) == "ab"
    one = [{"role": "user", "content": "x"}]
    assert render_go_template("{{ range .Messages }}{{ .Content }};{{ end }}", one) == "x;"
