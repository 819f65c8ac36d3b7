"""`shoptalk data check`: every problem in every source at once, before any training.

It also renders a few training examples exactly as the model will see them,
with the tokens that carry the loss marked, so a wrong template or mask is
visible before hours of training rather than after.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rich.text import Text

from shoptalk.data.pii import redact_conversation
from shoptalk.data.sources import Ingested, read_sources
from shoptalk.errors import SourceError
from shoptalk.modeling.chat_format import IGNORE, encode_conversation, ensure_chat_template
from shoptalk.project import Project
from shoptalk.records import Conversation

REPLACEMENT = "\ufffd"
# UTF-8 needs at most 4 bytes a character: waiting longer means the text itself holds U+FFFD.
MAX_TOKENS_PER_CHARACTER = 4


@dataclass
class CheckResult:
    problems: list[SourceError]
    counts: dict[str, int]
    samples: list[Text] = field(default_factory=list)


def check_sources(project: Project, n_samples: int = 3, render: bool = True) -> CheckResult:
    cfg = project.config
    problems: list[SourceError] = []
    sources = read_sources(project.root, cfg.sources, problems)
    counts = {
        "document sections": len(sources.chunks),
        "FAQ rows": len(sources.faq),
        "conversations": len(sources.conversations),
        "preference pairs": len(sources.preferences),
        "questions": len(sources.questions),
    }
    result = CheckResult(problems, counts)
    if render:
        result.samples = render_samples(project, sources, n_samples)
    return result


def render_samples(project: Project, sources: Ingested, n: int) -> list[Text]:
    from shoptalk.modeling.load import load_tokenizer, resolve_base_model

    tokenizer = load_tokenizer(resolve_base_model(project.config.base_model, project.root))
    ensure_chat_template(tokenizer)
    pool = sources.faq + sources.conversations
    picked = random.Random(0).sample(pool, min(n, len(pool)))
    if project.config.data.redact_pii:
        # Shown as the model will see them, and a terminal is a log too.
        picked = [redact_conversation(c, project.config.data.pii)[0] for c in picked]
    return [marked(tokenizer, c, project.config.system_prompt) for c in picked]


def marked(tokenizer, conversation: Conversation, system_prompt: str) -> Text:
    """The rendered example: context dim, trained tokens bold green.

    A byte-level tokenizer splits a Chinese character over several tokens, and one
    of them alone decodes to U+FFFD: tokens are decoded together until the
    character is whole, styled by the token that completes it.
    """
    example = encode_conversation(tokenizer, conversation, system_prompt)
    text = Text(f"{conversation.source}\n", style="bold")
    pending: list[int] = []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        pending.append(token)
        piece = tokenizer.decode(pending)
        if piece.endswith(REPLACEMENT) and len(pending) < MAX_TOKENS_PER_CHARACTER:
            continue
        text.append(piece, style="dim" if label == IGNORE else "bold green")
        pending = []
    if pending:
        text.append(tokenizer.decode(pending), style="dim")
    return text
