"""Clean text before training, and say why every dropped record was dropped.

A user who sees "1,204 records in, 1,180 out" must be able to find the 24 and
the reason for each, so dropping returns `Dropped` entries instead of
silently filtering.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from pydantic import BaseModel

from shoptalk.config import CleanSettings
from shoptalk.records import Chunk, Conversation
from shoptalk.text import is_chinese


class Dropped(BaseModel):
    id: str
    source: str
    reason: str


# Page breaks and Unicode line separators end a line; other control characters
# (and zero-width spaces, byte-order marks) are extraction noise.
LINE_BREAKS = re.compile(r"\r\n?|[\f\v\u2028\u2029\x85]")
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\ufeff]")
# Interior runs only: leading indentation carries Markdown nesting and code.
SPACE_RUN = re.compile(r"(?<=\S)[^\S\n]{2,}")
TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.M)
BLANK_LINES = re.compile(r"\n{3,}")
BOILERPLATE_MIN_LEN = 8
# Full-width punctuation Chinese is written with. NFKC would make it ASCII
# ("，" -> ","), which is wrong in Chinese text: there it is kept.
CJK_PUNCTUATION = "，！？：；（）～"
_CJK_PUNCTUATION_SPLIT = re.compile(f"([{CJK_PUNCTUATION}])")


def nfkc(text: str) -> str:
    """Unicode NFKC (full-width ＡＢＣ１２３ become ABC123), but in Chinese text its
    full-width punctuation stays."""
    if not is_chinese(text):
        return unicodedata.normalize("NFKC", text)
    parts = _CJK_PUNCTUATION_SPLIT.split(text)  # odd positions hold the punctuation
    return "".join(
        part if i % 2 else unicodedata.normalize("NFKC", part) for i, part in enumerate(parts)
    )


def clean_text(text: str, settings: CleanSettings | None = None) -> str:
    settings = settings or CleanSettings()
    if settings.nfkc:
        text = nfkc(text)
    text = LINE_BREAKS.sub("\n", text)
    text = CONTROL.sub("", text)
    text = SPACE_RUN.sub(" ", text)
    text = TRAILING_SPACE.sub("", text)
    return BLANK_LINES.sub("\n\n", text).strip()


def is_structure(line: str) -> bool:
    """Table rows and headings repeat across documents by design; they are not boilerplate."""
    return line.startswith(("|", "#"))


def boilerplate_lines(texts: list[str], min_docs: int) -> set[str]:
    """Lines (stripped, at least 8 characters) found in at least `min_docs` of `texts`."""
    seen: Counter[str] = Counter()
    for text in texts:
        seen.update(
            {
                line
                for raw in text.splitlines()
                if len(line := raw.strip()) >= BOILERPLATE_MIN_LEN and not is_structure(line)
            }
        )
    return {line for line, n in seen.items() if n >= min_docs}


def conversation_problem(conv: Conversation, settings: CleanSettings) -> str | None:
    turns = [m for m in conv.messages if m.role in ("user", "assistant")]
    if not turns:
        return "no user or assistant message"
    for i, message in enumerate(conv.messages):
        if message.role not in ("user", "assistant"):
            continue
        if not message.content:
            return f"message {i + 1} ({message.role}) is empty after cleaning"
        if len(message.content) < settings.min_chars:
            return (
                f"message {i + 1} ({message.role}) has {len(message.content)} characters,"
                f" fewer than min_chars={settings.min_chars}"
            )
    total = sum(len(m.content) for m in conv.messages)
    if total > settings.max_chars:
        return f"{total} characters, more than max_chars={settings.max_chars}"
    return None


def clean_conversations(
    convs: list[Conversation], settings: CleanSettings | None = None
) -> tuple[list[Conversation], list[Dropped]]:
    """Every message cleaned; records that end up empty, too short or too long dropped."""
    settings = settings or CleanSettings()
    kept: list[Conversation] = []
    dropped: list[Dropped] = []
    for conv in convs:
        cleaned = conv
        texts = [clean_text(m.content, settings) for m in conv.messages]
        if any(t != m.content for t, m in zip(texts, conv.messages, strict=True)):
            messages = [
                m if t == m.content else m.model_copy(update={"content": t})
                for t, m in zip(texts, conv.messages, strict=True)
            ]
            cleaned = conv.model_copy(update={"messages": messages})
        problem = conversation_problem(cleaned, settings)
        if problem:
            dropped.append(Dropped(id=conv.id, source=conv.source, reason=problem))
        else:
            kept.append(cleaned)
    return kept, dropped


def source_file(source: str) -> str:
    """`docs/a.md#Returns` and `docs/a.md:12` are both `docs/a.md`."""
    return re.sub(r":\d+$", "", source.split("#", 1)[0])


def clean_chunks(
    chunks: list[Chunk], settings: CleanSettings | None = None
) -> tuple[list[Chunk], list[Dropped]]:
    """Clean chunks and remove lines repeated across source files (headers, footers).

    Repeats are counted per source file, not per chunk: a line repeated in the
    chunks of one long document is that document's content, not boilerplate.
    """
    settings = settings or CleanSettings()
    texts = [clean_text(chunk.text, settings) for chunk in chunks]
    per_file: dict[str, list[str]] = {}
    for chunk, text in zip(chunks, texts, strict=True):
        per_file.setdefault(source_file(chunk.source), []).append(text)
    boilerplate = boilerplate_lines(
        ["\n".join(parts) for parts in per_file.values()], settings.boilerplate_min_docs
    )
    kept: list[Chunk] = []
    dropped: list[Dropped] = []
    for chunk, text in zip(chunks, texts, strict=True):
        if boilerplate:
            lines = [line for line in text.splitlines() if line.strip() not in boilerplate]
            text = BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
        if len(text) < max(settings.min_chars, 1):
            reason = (
                f"{len(text)} characters after cleaning, fewer than min_chars={settings.min_chars}"
                if text
                else "empty after cleaning"
            )
            dropped.append(Dropped(id=chunk.id, source=chunk.source, reason=reason))
        else:
            kept.append(chunk.model_copy(update={"text": text}))
    return kept, dropped
