"""Render records into token ids with the model's own chat template.

The same functions render prompts at training, evaluation and chat time, so a
prompt the model sees in use is byte-for-byte the prompt it was trained on.
"""

from __future__ import annotations

import re
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
    "formats": "Write codes, dates and amounts as in: {}.",
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
    "formats": "编号、日期和金额的写法如：{}。",
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
    if style.get("formats"):
        examples = ("、" if chinese else ", ").join(f["example"] for f in style["formats"])
        lines.append(words["formats"].format(examples))
    return lines


# The style rules are for replies to customers: they follow this line, and only a drafting
# request is asked with them (`for_request`), in training, evaluation and serving alike.
# Measured on an organization with a tone guide: on every example they were 221 of its
# tokens (the config's prompt: 37), 65% of all training tokens, and they told the model to
# greet, sign off and stay under N words when answering a plain question.
STYLE_HEADER = ("When you draft a reply to a customer:", "起草给客户的回复时：")
# A request to draft a reply: an imperative "write/draft a reply", English and Chinese.
# The instruction may open the request or follow the case it is about ("Ms. Chen's order
# arrived damaged. Reply to her with next steps."): any sentence may give it.
_LETTER = r"(?:reply|response|answer|email|e-mail|message|letter|update|confirmation|note|apology|acknowledge?ment)"
_ADDRESSEE = r"(?:him|her|them|mr|ms|mrs|miss|mx|dr|prof)\b"
# Whom a reply goes to, named or not: "Marcus Hale", "Harold Jensen's email", "a rider",
# "this comment", "an email from ...". A name is capitalized whatever the request's case.
_PERSON = r"(?-i:[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+)+)"
_RECIPIENT = (
    rf"(?:{_ADDRESSEE}|{_PERSON}|(?:a|an|the|this|that|our)\s+(?:\w+\s+){{0,2}}?"
    rf"(?:{_LETTER}|comment|post|review|rider|customer|client|member|patient|caller|guest"
    r"|tenant|passenger|resident|applicant|policyholder)s?\b)"
)
_DRAFT = re.compile(
    r"(?:^|[.!?:]\s+|\n)\W*(?:please\s+|(?:can|could|would|will)\s+you\s+(?:please\s+)?)?(?:"
    rf"(?:draft|write|compose|prepare)\b.{{0,40}}\b{_LETTER}\b"
    r"|draft\s+(?:a|an|the|my|our|this|that|me|him|her|them|quick|short|brief|polite)\b"
    rf"|write\s+(?:back\s+)?(?:to\s+)?{_ADDRESSEE}"
    rf"|(?:reply|respond|write\s+back)\s+(?:to\s+{_RECIPIENT}|confirming\b|with\b)"
    # "Email Olivia Brandt back: ...", "Email her back."
    rf"|e-?mail\s+(?:{_ADDRESSEE}|{_PERSON})\s+back\b"
    # "Send her a reply.", "Answer him.", "Need a quick confirmation for Mr. Vo."
    rf"|send\s+(?:{_ADDRESSEE}\s+)?(?:(?:a|an|the|our)\s+)?(?:\w+\s+)?{_LETTER}\b"
    rf"|answer\s+{_ADDRESSEE}"
    rf"|need\s+(?:a|an)\s+(?:\w+\s+){{0,2}}{_LETTER}(?:\s+\w+)?\s+(?:to|for)\s+{_RECIPIENT}"
    # "Printed letter going to the service address for Mr. Okonkwo."
    rf"|(?:\w+\s+)?(?:letter|email|e-mail)\s+(?:going\s+)?(?:out\s+)?to\b[^.?!]{{0,40}}\b(?:for|to)\s+{_ADDRESSEE})"
    r"|\b(reply|respond)\s+to\s+(this|the|a|our)\s+(customer|client|message|email|e-mail|complaint)"
    # The reply to a message the request quotes: "reply goes out by email: 'If my water ...'".
    r"|\b(?:reply|response)\b[^.?!'\"‘“]{0,40}[:：]\s*['\"‘“]"
    r"|(起草|撰写|写一封|写一条|拟一封|拟写).{0,12}(回复|邮件|信|消息)|回复(这位|该|这个)(客户|用户|顾客)",
    re.IGNORECASE,
)


def drafting(request: str) -> bool:
    """`request` asks for a reply to be drafted (to a customer, a message, a complaint)."""
    return bool(_DRAFT.search(request.strip()))


def styled_system_prompt(system_prompt: str, style: dict) -> str:
    """The config's system prompt, then the organization's style rules under STYLE_HEADER.
    Without style rules it is the config's prompt unchanged."""
    chinese = sum("\u4e00" <= ch <= "\u9fff" for ch in system_prompt) > len(system_prompt) / 4
    lines = style_lines(style, chinese)
    if not lines:
        return system_prompt
    return "\n".join(p for p in [system_prompt, STYLE_HEADER[chinese], *lines] if p)


def for_request(system_prompt: str, request: str) -> str:
    """`system_prompt` as `request` is asked with it: its style rules only for a drafting
    request, the prompt above them for any other."""
    if drafting(request):
        return system_prompt
    for header in STYLE_HEADER:
        at = system_prompt.find(header)
        if at >= 0:
            return system_prompt[:at].rstrip()
    return system_prompt


def with_system(messages: list[Message], system_prompt: str) -> list[dict[str, str]]:
    """The system prompt from the config goes first unless the record has its own; its style
    rules only before a drafting request (`for_request`: the last user message's)."""
    rendered = [m.model_dump() for m in messages]
    return with_system_dicts(rendered, system_prompt)


def with_system_dicts(messages: list[dict[str, str]], system_prompt: str) -> list[dict[str, str]]:
    """`with_system` for messages already as role/content dicts (the chat API's)."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return messages
    asked = [m["content"] for m in messages if m["role"] == "user"]
    system = for_request(system_prompt, asked[-1] if asked else "")
    return [{"role": "system", "content": system}, *messages] if system else messages


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
