"""Render records into token ids with the model's own chat template.

The same functions render prompts at training, evaluation and chat time, so a
prompt the model sees in use is byte-for-byte the prompt it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoptalk.records import Conversation, Message

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100

# End-of-turn markers of common chat templates; generation stops at any of them.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>")

# For base models that ship no chat template. ChatML is what most open
# instruct models use; it is written into the saved tokenizer so evaluation,
# serving and export render exactly what training rendered.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Example:
    """One tokenized training example; `labels` is IGNORE where no loss is taken."""

    input_ids: list[int]
    labels: list[int]


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def stop_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in END_OF_TURN if t in vocab}
    return sorted(ids)


_STYLE_EN = {
    "greeting": 'Open every reply with "{}".',
    "sign_off": 'End every reply with "{}".',
    "forbidden": "Never write: {}.",
    "reference": "Quote the customer's reference or case number when they give one.",
    "apology": "When something went wrong, apologize once and plainly.",
    "formal": "Write formally.",
    "informal": "Write in a friendly, informal register.",
    "max_words": "Keep replies under {} words.",
}
_STYLE_ZH = {
    "greeting": "回复以“{}”开头。",
    "sign_off": "回复以“{}”结尾。",
    "forbidden": "禁止使用：{}。",
    "reference": "客户提供单号或编号时，在回复中注明。",
    "apology": "出现问题时，简洁地致歉一次。",
    "formal": "使用正式、礼貌的语气（称“您”）。",
    "informal": "语气亲切、口语化。",
    "max_words": "回复不超过{}字。",
}


def style_lines(style: dict, chinese: bool = False) -> list[str]:
    """The style rules (data.style.StyleRules as a dict) as instructions, one per rule."""
    words = _STYLE_ZH if chinese else _STYLE_EN
    lines = [words[k].format(style[k]) for k in ("greeting", "sign_off") if style.get(k)]
    if style.get("forbidden"):
        joined = ("、" if chinese else ", ").join(f'"{p}"' for p in style["forbidden"])
        lines.append(words["forbidden"].format(joined))
    lines += [words[k] for k in style.get("required", []) if k in words]
    if style.get("formality") in words:
        lines.append(words[style["formality"]])
    if style.get("max_words"):
        lines.append(words["max_words"].format(style["max_words"]))
    return lines


def styled_system_prompt(system_prompt: str, style: dict) -> str:
    """The config's system prompt, then the organization's style rules: the one prompt every
    mode (closed book and retrieval, training, evaluation, serving) puts first. Without
    style rules it is the config's prompt unchanged."""
    chinese = sum("\u4e00" <= ch <= "\u9fff" for ch in system_prompt) > len(system_prompt) / 4
    lines = style_lines(style, chinese)
    if not lines:
        return system_prompt
    return "\n".join([system_prompt, *lines]) if system_prompt else "\n".join(lines)


def with_system(messages: list[Message], system_prompt: str) -> list[dict[str, str]]:
    """The system prompt from the config goes first unless the record has its own."""
    rendered = [m.model_dump() for m in messages]
    if system_prompt and (not rendered or rendered[0]["role"] != "system"):
        rendered.insert(0, {"role": "system", "content": system_prompt})
    return rendered


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    return encode(tokenizer, render_prompt(tokenizer, messages))


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # The chat template already contains any BOS/special tokens it wants.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, system_prompt: str
) -> Example:
    """Loss on assistant turns only (their text and end-of-turn token).

    The conversation is rendered once per assistant turn: the text before the
    turn (with the generation prompt) is context, the rest of that turn is
    target. Tokenizing segment by segment keeps the mask exact.
    """
    messages = with_system(conversation.messages, system_prompt)
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_prompt(tokenizer, messages[:i])
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not before.startswith(rendered) or not upto.startswith(before):
            raise ValueError(
                f"{conversation.source}: the chat template does not render turns as a prefix "
                "of the conversation; cannot mask the loss to assistant turns"
            )
        context = encode(tokenizer, before[len(rendered) :])
        target = encode(tokenizer, upto[len(before) :])
        input_ids += context + target
        labels += [IGNORE] * len(context) + target
        rendered = upto
    return Example(input_ids, labels)


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> Example:
    """Continued-pretraining text: every token is a target, ending in EOS."""
    ids = encode(tokenizer, text)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return Example(ids, list(ids))
