"""An Ollama `Modelfile` beside the GGUF: template, system prompt, stop tokens, parameters.

Ollama renders prompts with Go templates, not Jinja, so the chat template
must be translated. Only ChatML-style templates are translated (the default
for models without one, and SmolLM2, Qwen, ...): the translation is checked by
rendering sample conversations both ways, and anything else is refused with
an error rather than written as a template that silently differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoptalk.export import ExportError
from shoptalk.modeling.chat_format import render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
SAMPLES: list[list[dict[str, str]]] = [
    [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "规则"},
        {"role": "user", "content": "问题一"},
        {"role": "assistant", "content": "回答"},
        {"role": "user", "content": "Two\nlines"},
    ],
]


def chatml(messages: list[dict[str, str]]) -> str:
    """What Ollama renders from CHATML_GO_TEMPLATE, written in Python to compare."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def go_template(tokenizer: PreTrainedTokenizerBase) -> str:
    for messages in SAMPLES:
        jinja = render_prompt(tokenizer, messages)
        if jinja != chatml(messages):
            raise ExportError(
                "The chat template is not ChatML-style, and only ChatML is translated into an "
                f"Ollama template. It renders {jinja!r} where ChatML renders "
                f"{chatml(messages)!r}. Use --format gguf and write the TEMPLATE yourself."
            )
    return CHATML_GO_TEMPLATE


def modelfile(
    gguf_name: str,
    tokenizer: PreTrainedTokenizerBase,
    system_prompt: str,
    stops: list[int],
    context_length: int,
) -> str:
    """Greedy decoding (temperature 0), as the scorecard and the parity check ran it."""
    if '"""' in system_prompt:
        raise ExportError('The system prompt contains """, which a Modelfile cannot quote.')
    lines = [
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{go_template(tokenizer)}"""',
        f'SYSTEM """{system_prompt}"""',
    ]
    lines += [f'PARAMETER stop "{tokenizer.convert_ids_to_tokens(i)}"' for i in stops]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {context_length}"]
    return "\n".join(lines) + "\n"
