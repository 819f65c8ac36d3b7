"""LLaMA-Factory's `dataset_info.json`: its datasets, read with their column and tag mappings.

Compatibility with the most used training tool's data registry means a team
can point shoptalk at the data they already have. Alpaca and ShareGPT entries
become conversations; `ranking: true` entries become preference pairs.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import NamedTuple

from shoptalk.data.documents import content_id, decode_text, report, source_path
from shoptalk.data.formats import (
    CONVERSATION_SUFFIXES,
    AlpacaColumns,
    alpaca_prompt,
    assistant_message,
    describe,
    messages_id,
    read_json_rows,
    require_assistant,
    required_text,
    sharegpt_prompt,
    warn_dropped_tools,
)
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message, Preference, Role

logger = logging.getLogger(__name__)


# As in LLaMA-Factory: an entry's `columns` replaces these defaults (a column it
# does not name is unused), and its `tags` replace the tag defaults.
_COMMON_COLUMNS = ("system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None}
_SHAREGPT_COLUMNS = {"messages": "conversations"}
_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
_TAG_ROLES: dict[str, Role] = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "assistant",
    "system_tag": "system",
}
_REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


class LlamaFactoryDataset(NamedTuple):
    name: str
    path: Path
    alpaca: bool  # else sharegpt
    ranking: bool
    columns: dict[str, str | None]
    tags: dict[str, str | None]


def read_llamafactory(
    dataset_info: Path, root: Path, errors: list[SourceError] | None = None
) -> tuple[list[Conversation], list[Preference]]:
    """Every local dataset a LLaMA-Factory `dataset_info.json` names, in its order.

    Hub-only entries, missing files and kinds shoptalk cannot train on yet (KTO,
    multimodal, pretraining text) are skipped, with one logged warning per reason.
    """
    conversations: list[Conversation] = []
    preferences: list[Preference] = []
    try:
        text = decode_text(dataset_info, "JSON text file")
        info = _parse_dataset_info(dataset_info, text)
    except SourceError as err:
        report(err, errors)
        return conversations, preferences
    skipped: dict[str, list[str]] = {}
    for name, entry in info.items():
        try:
            dataset = _dataset(dataset_info, _key_line(text, name), name, entry)
        except SourceError as err:
            report(err, errors)
            continue
        if isinstance(dataset, str):
            skipped.setdefault(dataset, []).append(name)
            continue
        for path in _data_files(dataset, errors):
            chats, prefs = _read_dataset_file(path, dataset, root, errors)
            conversations += chats
            preferences += prefs
    for reason, names in skipped.items():
        logger.warning("%s: skipped %d datasets (%s): %s", dataset_info, len(names), reason, names)
    return conversations, preferences


def _parse_dataset_info(path: Path, text: str) -> dict:
    expected = "expected a JSON object of datasets"
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        found = f"invalid JSON: {err.msg} (column {err.colno})"
        raise SourceError(path, err.lineno, f"{expected}, found {found}") from err
    if not isinstance(info, dict):
        raise SourceError(path, 1, f"{expected}, found {describe(info)}")
    return info


def _key_line(text: str, name: str) -> int | None:
    """The line defining `"name":`, so an error in that entry can point at it."""
    quoted = re.escape(json.dumps(name, ensure_ascii=False))
    match = re.search(rf"^\s*{quoted}\s*:", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _dataset(path: Path, line: int | None, name: str, entry: object) -> LlamaFactoryDataset | str:
    """The entry resolved against LLaMA-Factory's defaults, or why it is skipped."""
    if not isinstance(entry, dict):
        raise SourceError(
            path, line, f"expected dataset '{name}' as an object, found {describe(entry)}"
        )
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        expected = f"expected dataset '{name}' formatting 'alpaca' or 'sharegpt'"
        raise SourceError(path, line, f"{expected}, found {formatting!r}")
    for key in ("columns", "tags"):
        if not isinstance(entry.get(key, {}), dict):
            found = describe(entry[key])
            raise SourceError(
                path, line, f"expected dataset '{name}' {key} as an object, found {found}"
            )
    defaults = dict.fromkeys(_COMMON_COLUMNS)
    defaults |= _ALPACA_COLUMNS if formatting == "alpaca" else _SHAREGPT_COLUMNS
    columns = {k: entry["columns"].get(k) for k in defaults} if "columns" in entry else defaults
    tags = {k: entry["tags"].get(k) for k in _TAGS} if "tags" in entry else _TAGS
    file_name = entry.get("file_name")
    skip = _unsupported(columns, formatting == "alpaca", bool(entry.get("ranking")))
    if skip is None and not file_name:
        remote = [key for key in _REMOTE_KEYS if key in entry]
        if not remote:
            expected = f"expected dataset '{name}' to have a 'file_name'"
            raise SourceError(path, line, f"{expected}, found keys {sorted(entry)}")
        skip = "on a hub or behind a script, no local file_name"
    if skip is None and not (path.parent / file_name).exists():
        skip = f"file_name not found in {path.parent}"
    if skip is not None:
        return skip
    ranking = bool(entry.get("ranking", False))
    alpaca = formatting == "alpaca"
    return LlamaFactoryDataset(name, path.parent / file_name, alpaca, ranking, columns, tags)


def _unsupported(columns: dict[str, str | None], alpaca: bool, ranking: bool) -> str | None:
    if columns["kto_tag"]:
        return "KTO (kto_tag) is not supported yet"
    if any(columns[key] for key in ("images", "videos", "audios")):
        return "multimodal (images, videos, audios) is not supported yet"
    if alpaca and not columns["response"] and not ranking:
        return "pretraining text without a response column, not conversations"
    return None


def _data_files(dataset: LlamaFactoryDataset, errors: list[SourceError] | None) -> list[Path]:
    """The dataset's file, or the files of its folder (LLaMA-Factory allows both)."""
    paths = [dataset.path]
    if dataset.path.is_dir():
        paths = sorted(p for p in dataset.path.rglob("*") if p.is_file())
        paths = [p for p in paths if not p.name.startswith(".")]
    for path in paths:
        if path.suffix.lower() not in CONVERSATION_SUFFIXES:
            expected = f"expected a .json or .jsonl data file for dataset '{dataset.name}'"
            report(
                SourceError(path, None, f"{expected}, found {path.suffix or 'no suffix'!r}"), errors
            )
    return [p for p in paths if p.suffix.lower() in CONVERSATION_SUFFIXES]


def _read_dataset_file(
    path: Path, dataset: LlamaFactoryDataset, root: Path, errors: list[SourceError] | None
) -> tuple[list[Conversation], list[Preference]]:
    relpath = source_path(path, root)
    conversations: list[Conversation] = []
    preferences: list[Preference] = []
    tools, with_tools = dataset.columns["tools"], 0
    try:
        for line, where, row in read_json_rows(path, errors):
            with_tools += bool(tools and row.get(tools))
            source = f"{relpath}:{line}"
            try:
                if dataset.ranking:
                    preferences.append(_preference(row, dataset, source))
                else:
                    conversations.append(_conversation(row, dataset, source))
            except ValueError as err:
                report(SourceError(path, line, f"{where}{err}"), errors)
    except SourceError as err:  # the file as a whole (binary, undecodable)
        report(err, errors)
    warn_dropped_tools(path, with_tools)
    return conversations, preferences


def _prompt(row: dict, dataset: LlamaFactoryDataset) -> list[Message]:
    columns, tags = dataset.columns, dataset.tags
    if dataset.alpaca:
        names = ("prompt", "query", "response", "system", "history")
        return alpaca_prompt(row, AlpacaColumns(*(columns[n] for n in names)))
    roles = {tags[tag]: role for tag, role in _TAG_ROLES.items() if tags[tag]}
    key = columns["messages"] or "conversations"
    role_key, content_key = tags["role_tag"] or "from", tags["content_tag"] or "value"
    return sharegpt_prompt(row, key, columns["system"], role_key, content_key, roles)


def _conversation(row: dict, dataset: LlamaFactoryDataset, source: str) -> Conversation:
    messages = _prompt(row, dataset)
    if dataset.alpaca:
        messages.append(assistant_message(row, dataset.columns["response"]))
    require_assistant(messages, row)
    return Conversation(id=messages_id(source, messages), messages=messages, source=source)


def _preference(row: dict, dataset: LlamaFactoryDataset, source: str) -> Preference:
    prompt = _prompt(row, dataset)
    if not prompt or prompt[-1].role not in ("user", "tool"):
        found = f"a {prompt[-1].role} turn" if prompt else "no turns"
        raise ValueError(f"expected the prompt to end with a user turn, found {found}")
    content_key = dataset.tags["content_tag"] or "value"
    chosen = _response(row, dataset.columns["chosen"] or "chosen", content_key)
    rejected = _response(row, dataset.columns["rejected"] or "rejected", content_key)
    return Preference(
        id=content_id(messages_id(source, prompt), chosen, rejected),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=source,
    )


def _response(row: dict, key: str, content_key: str) -> str:
    """A chosen/rejected answer: a string (alpaca) or a {from, value} turn (sharegpt)."""
    value = row.get(key)
    if isinstance(value, dict):
        if content_key not in value:
            found = sorted(value)
            raise ValueError(f"expected '{key}' to have a '{content_key}', found keys {found}")
        return required_text(value, content_key)
    return required_text(row, key)
