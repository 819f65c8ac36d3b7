"""Preference pairs for DPO -> `Preference` records.

    pairs = read_preferences(Path("prefs/pairs.jsonl"), root=Path("."))

A file is JSON Lines or a JSON list; each row's format is detected from its keys:

| format              | keys                                                             |
| ------------------- | ---------------------------------------------------------------- |
| openai              | input: {messages}, preferred_output: [{role: assistant,          |
|                     | content}], non_preferred_output: [...] (OpenAI DPO fine-tuning)  |
| sharegpt (LLaMA-F.) | conversations: [{from, value}], chosen: {from, value}, rejected  |
| alpaca (LLaMA-F.)   | instruction, optional input, chosen, rejected (strings)          |
| prompt              | prompt (text or [{role, content}]), chosen, rejected (text or    |
|                     | [{role: assistant, content}]), as TRL's DPO datasets             |

A LLaMA-Factory `dataset_info.json` is read through its `ranking: true` entries.
User feedback becomes pairs too: a thumbs-down with a corrected answer says
the correction is preferred to what the model said (`preferences_from_feedback`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from shoptalk.config import PiiSettings
from shoptalk.data.documents import content_id, report, source_path
from shoptalk.data.formats import (
    ALPACA,
    ROLE_NAMES,
    alpaca_prompt,
    describe,
    messages_id,
    parse_turns,
    read_json_rows,
    required_text,
    sharegpt_prompt,
)
from shoptalk.data.llamafactory import read_llamafactory
from shoptalk.data.pii import redact
from shoptalk.errors import SourceError
from shoptalk.records import Message, Preference

if TYPE_CHECKING:
    from shoptalk.config import DataSettings

logger = logging.getLogger(__name__)

PREFERENCE_SUFFIXES = (".jsonl", ".json")
LLAMAFACTORY_INFO = "dataset_info.json"


def read_preferences(
    path: Path, root: Path, errors: list[SourceError] | None = None
) -> list[Preference]:
    """Every pair of a preference file; the format is detected per row."""
    if path.name == LLAMAFACTORY_INFO:
        conversations, pairs = read_llamafactory(path, root, errors)
        if conversations:
            logger.warning(
                "%s: %d conversations from entries without 'ranking: true' are not preference "
                "pairs; list the file under sources.conversations to train on them",
                path,
                len(conversations),
            )
        return pairs
    relpath = source_path(path, root)
    pairs: list[Preference] = []
    try:
        for line, where, row in read_json_rows(path, errors):
            try:
                pairs.append(row_preference(row, f"{relpath}:{line}"))
            except ValueError as err:
                report(SourceError(path, line, f"{where}{err}"), errors)
    except SourceError as err:  # the file as a whole (binary, undecodable)
        report(err, errors)
    return pairs


def row_preference(row: dict, source: str) -> Preference:
    """One row in any supported format as a `Preference`."""
    if "preferred_output" in row or "non_preferred_output" in row:
        prompt = openai_prompt(row)
        chosen = single_answer(row, "preferred_output")
        rejected = single_answer(row, "non_preferred_output")
    elif "chosen" in row and "rejected" in row:
        prompt = ranking_prompt(row)
        chosen = answer_text(row, "chosen")
        rejected = answer_text(row, "rejected")
    else:
        raise ValueError(
            "expected a preference pair: 'input', 'preferred_output' and 'non_preferred_output' "
            "(OpenAI DPO), or 'chosen' and 'rejected' with 'conversations', 'instruction' or "
            f"'prompt'; found keys {sorted(row)}"
        )
    if not prompt or prompt[-1].role not in ("user", "tool"):
        found = f"a {prompt[-1].role} turn" if prompt else "no turns"
        raise ValueError(f"expected the prompt to end with a user turn, found {found}")
    return Preference(
        id=content_id(messages_id(source, prompt), chosen, rejected),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=source,
    )


def openai_prompt(row: dict) -> list[Message]:
    prompt = row.get("input")
    if not isinstance(prompt, dict) or "messages" not in prompt:
        found = f"keys {sorted(prompt)}" if isinstance(prompt, dict) else describe(prompt)
        raise ValueError(f"expected 'input' as an object with 'messages', found {found}")
    return parse_turns(prompt["messages"], "input.messages", "role", "content", ROLE_NAMES)


def single_answer(row: dict, key: str) -> str:
    """The one assistant message of an OpenAI `preferred_output`/`non_preferred_output`."""
    turns = parse_turns(row.get(key), key, "role", "content", ROLE_NAMES)
    if len(turns) != 1 or turns[0].role != "assistant":
        found = [t.role for t in turns]
        raise ValueError(f"expected '{key}' to hold one assistant message, found roles {found}")
    return turns[0].content


def ranking_prompt(row: dict) -> list[Message]:
    if "conversations" in row:
        return sharegpt_prompt(row, "conversations", "system", "from", "value", ROLE_NAMES)
    if "instruction" in row:
        return alpaca_prompt(row, ALPACA)
    if "prompt" not in row:
        raise ValueError(
            f"expected the prompt as 'conversations', 'instruction' or 'prompt', found keys {sorted(row)}"
        )
    if isinstance(row["prompt"], list):
        return parse_turns(row["prompt"], "prompt", "role", "content", ROLE_NAMES)
    return [Message(role="user", content=required_text(row, "prompt"))]


def answer_text(row: dict, key: str) -> str:
    """A chosen/rejected answer written as text, a {from, value} turn or a list of one turn."""
    value = row[key]
    if isinstance(value, dict) and "value" in value:
        return required_text(value, "value")
    if isinstance(value, list):
        turns = parse_turns(value, key, "role", "content", ROLE_NAMES)
        if len(turns) != 1 or turns[0].role != "assistant":
            found = [t.role for t in turns]
            raise ValueError(f"expected '{key}' to hold one assistant message, found roles {found}")
        return turns[0].content
    return required_text(row, key)


# --- feedback from users ------------------------------------------------------------


class Feedback(BaseModel, extra="forbid"):
    """One rating a user gave an answer (the console stores these)."""

    id: str
    prompt: list[Message] = Field(description="The conversation up to the rated answer")
    answer: str = Field(description="What the model answered")
    rating: Literal["up", "down"]
    correction: str | None = Field(None, description="The answer the user says is right")
    model: str | None = Field(None, description="The run that answered")
    created_at: datetime | None = None
    key_id: str | None = Field(
        None,
        description="The API key that rated: the answer may quote what its groups read, so "
        "only keys that read as much review it (serve.feedback_api)",
    )
    groups: list[str] | None = Field(
        None,
        description="The groups whose documents the rated answer or correction may quote: the "
        "rating key's groups, those of the passages the answer cited and of the model that "
        "answered. Trained only when `train.groups` holds every one (data.feedback."
        "may_train); None (rated before groups were recorded): never trained",
    )


def preferences_from_feedback(feedback: Iterable[Feedback]) -> list[Preference]:
    """A thumbs-down with a correction: the correction is chosen, the model's answer rejected.

    Other feedback says nothing about which of two answers is better and is skipped.
    """
    pairs = []
    for item in feedback:
        correction = (item.correction or "").strip()
        if item.rating != "down" or not correction or correction == item.answer.strip():
            continue
        source = f"feedback:{item.id}"
        pairs.append(
            Preference(
                id=content_id(messages_id(source, item.prompt), correction, item.answer),
                prompt=item.prompt,
                chosen=correction,
                rejected=item.answer,
                source=source,
            )
        )
    return pairs


def redact_preference(
    pair: Preference, settings: PiiSettings | None = None
) -> tuple[Preference, dict[str, int]]:
    """Redact prompt and both answers with placeholders numbered across the pair.

    Shared numbering matters here: the chosen and rejected answers must name the
    same customer with the same placeholder, or DPO learns a difference that is
    only in the redaction.
    """
    mapping: dict[str, str] = {}
    counts: Counter[str] = Counter()

    def clean(text: str) -> str:
        result = redact(text, settings, mapping)
        counts.update(result.counts)
        return result.text

    prompt = [m.model_copy(update={"content": clean(m.content)}) for m in pair.prompt]
    chosen, rejected = clean(pair.chosen), clean(pair.rejected)
    if not counts:
        return pair, {}
    update = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return pair.model_copy(update=update), dict(counts)


# --- the `sources.preferences` key --------------------------------------------------


def read_preference_sources(
    root: Path, entries: list[str], errors: list[SourceError] | None = None
) -> list[Preference]:
    """Every pair in the files and folders listed under `sources.preferences`, in sorted order."""
    pairs: list[Preference] = []
    for entry in entries:
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if path.is_dir():
            info = path / LLAMAFACTORY_INFO
            files = (
                [info]
                if info.is_file()
                else sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in PREFERENCE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif not path.exists():
            message = "file or folder not found (listed under sources.preferences in shoptalk.yaml)"
            report(SourceError(path, None, message), errors)
            continue
        elif path.suffix.lower() not in PREFERENCE_SUFFIXES:
            found = path.suffix or "no suffix"
            message = f"expected a .jsonl or .json preference file, found {found!r}"
            report(SourceError(path, None, message), errors)
            continue
        else:
            files = [path]
        for file in files:
            pairs += read_preferences(file, root, errors)
    return pairs


def prepare_preferences(
    pairs: list[Preference], settings: DataSettings, counts: Counter[str]
) -> list[Preference]:
    """Redacted (counted into `counts`) like every other record, exact duplicates dropped."""
    kept: dict[str, Preference] = {}
    for pair in pairs:
        if settings.redact_pii:
            pair, found = redact_preference(pair, settings.pii)
            counts.update(found)
        kept.setdefault(pair.id, pair)
    return list(kept.values())
