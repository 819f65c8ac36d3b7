"""Conversation formats -> `Conversation` and `Preference` records.

    chats = read_conversations(Path("support/chats.jsonl"), root=Path("."))
    chats, prefs = read_llamafactory(Path("lf/dataset_info.json"), root=Path("."))

The data contract. A file is JSON Lines (one object a line) or a JSON list of
objects; each row's format is detected from its keys:

| format   | keys                                                              |
| -------- | ----------------------------------------------------------------- |
| openai   | messages: [{role, content}]  (tool_calls kept as JSON content)    |
| sharegpt | conversations: [{from, value}], optional system                   |
| alpaca   | instruction, optional input, output, optional system, history     |
| faq      | question and answer (or an alias in QUESTION_KEYS / ANSWER_KEYS)  |

LLaMA-Factory's `dataset_info.json` names alpaca or sharegpt files with renamed
columns and role tags; `read_llamafactory` honours those mappings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from shoptalk.data.documents import content_id, decode_text, report, source_path
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message, Preference, Role

logger = logging.getLogger(__name__)

CONVERSATION_SUFFIXES = (".jsonl", ".json")
QUESTION_KEYS = ("question", "q", "prompt", "问题", "提问")
ANSWER_KEYS = ("answer", "a", "response", "reply", "答案", "回答")

# Role names as OpenAI, ShareGPT and LLaMA-Factory spell them. A function call is
# something the assistant says; its result is what a tool says.
ROLE_NAMES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "developer": "system",
    "human": "user",
    "gpt": "assistant",
    "function_call": "assistant",
    "function": "tool",
    "observation": "tool",
}

_WHITESPACE = re.compile(r"\s*")
Rows = Iterator[tuple[int, str, dict]]


def describe(value: object) -> str:
    """What a JSON value is, for "expected ..., found <this>" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def find_key(keys: Iterable[str], aliases: Iterable[str]) -> str | None:
    """The first of `keys` naming one of `aliases`, ignoring case and spaces."""
    wanted = {alias.casefold() for alias in aliases}
    return next((key for key in keys if key.strip(" \t\ufeff").casefold() in wanted), None)


# --- JSON Lines and JSON lists, with line numbers -----------------------------------


def read_json_rows(path: Path, errors: list[SourceError] | None) -> Rows:
    """(line, where, row) for each object of a JSON Lines file or a JSON list.

    `line` is the physical line where the row starts. `where` is "item N: " for
    list items, so an error in a minified one-line file still says which row.
    Bad rows are reported (see `report`) and skipped.
    """
    text = decode_text(path, "JSON text file")
    start = _WHITESPACE.match(text).end()
    if text.startswith("[", start):
        yield from _json_list_rows(path, text, start, errors)
        return
    if text.startswith("{", start):  # a single pretty-printed object is one row
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(text)
            yield text.count("\n", 0, start) + 1, "", row
            return
    yield from _json_lines_rows(path, text, errors)


def _json_lines_rows(path: Path, text: str, errors: list[SourceError] | None) -> Rows:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            found = f"invalid JSON: {err.msg} (column {err.colno})"
            report(SourceError(path, number, f"expected a JSON object, found {found}"), errors)
            continue
        if isinstance(row, dict):
            yield number, "", row
        else:
            found = describe(row)
            report(SourceError(path, number, f"expected a JSON object, found {found}"), errors)


def _json_list_rows(path: Path, text: str, pos: int, errors: list[SourceError] | None) -> Rows:
    """Items of a JSON list, decoded one at a time so each knows its line."""
    decoder = json.JSONDecoder()
    line, counted, index = 1, 0, 0
    pos = _WHITESPACE.match(text, pos + 1).end()
    while not text.startswith("]", pos):
        line, counted = line + text.count("\n", counted, pos), pos
        index += 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            found = f"invalid JSON: {err.msg} (column {err.colno})"
            message = f"item {index}: expected a JSON list of objects, found {found}"
            report(SourceError(path, err.lineno, message), errors)
            return  # the rest of the list cannot be located reliably
        if isinstance(item, dict):
            yield line, f"item {index}: ", item
        else:
            message = f"item {index}: expected a JSON object, found {describe(item)}"
            report(SourceError(path, line, message), errors)
        pos = _WHITESPACE.match(text, pos).end()
        if text.startswith(",", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()
        elif not text.startswith("]", pos):
            found = repr(text[pos]) if pos < len(text) else "the end of the file"
            message = f"item {index}: expected ',' or ']' after the item, found {found}"
            report(SourceError(path, line + text.count("\n", counted, pos), message), errors)
            return


# --- one row -> messages ------------------------------------------------------------


def detect_format(row: dict) -> str:
    """Which format a row is in, from its keys: "openai", "sharegpt", "alpaca" or "faq"."""
    if "messages" in row:
        return "openai"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row:
        return "alpaca"
    if find_key(row, QUESTION_KEYS) and find_key(row, ANSWER_KEYS):
        return "faq"
    raise ValueError(
        "expected the keys of a known format: 'messages' (OpenAI), 'conversations' (ShareGPT), "
        "'instruction' and 'output' (Alpaca) or 'question' and 'answer' (FAQ); "
        f"found keys {sorted(row)}"
    )


def row_messages(row: dict) -> list[Message]:
    """The messages of one row in any supported format."""
    fmt = detect_format(row)
    if fmt == "faq":
        return qa_messages(*qa_pair(row))
    if fmt == "alpaca":
        messages = alpaca_prompt(row, ALPACA) + [_assistant(row, ALPACA.response)]
    elif fmt == "openai":
        messages = parse_turns(row["messages"], "messages", "role", "content", ROLE_NAMES)
    else:
        # Many "ShareGPT" exports spell turns {role, content}; accept both.
        keys = ("role", "content") if _uses_role_keys(row["conversations"]) else ("from", "value")
        messages = sharegpt_prompt(row, "conversations", "system", *keys, ROLE_NAMES)
    require_assistant(messages, row)
    return messages


def qa_pair(row: dict) -> tuple[str, str]:
    """(question, answer) of a FAQ row, both stripped and non-empty."""
    q_key, a_key = find_key(row, QUESTION_KEYS), find_key(row, ANSWER_KEYS)
    if q_key is None or a_key is None:
        raise ValueError(
            f"expected a question key (one of {', '.join(QUESTION_KEYS)}) and an answer key "
            f"(one of {', '.join(ANSWER_KEYS)}), found keys {sorted(row)}"
        )
    return _required_text(row, q_key).strip(), _required_text(row, a_key).strip()


def qa_messages(question: str, answer: str) -> list[Message]:
    return [Message(role="user", content=question), Message(role="assistant", content=answer)]


def parse_turns(
    raw: object, key: str, role_key: str, content_key: str, roles: Mapping[str, Role]
) -> list[Message]:
    """A list of {role, content}-like turns as messages; empty system prompts dropped."""
    shape = f"{{{role_key}, {content_key}}}"
    if not isinstance(raw, list):
        raise ValueError(f"expected '{key}' as a list of {shape} objects, found {describe(raw)}")
    messages = []
    for index, turn in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(turn, dict):
            raise ValueError(f"expected {where} as a {shape} object, found {describe(turn)}")
        if role_key not in turn:
            raise ValueError(f"expected {where} to have a '{role_key}', found keys {sorted(turn)}")
        name = turn[role_key]
        if not isinstance(name, str) or name not in roles:
            accepted = ", ".join(roles)
            raise ValueError(f"expected {where}.{role_key} to be one of {accepted}, found {name!r}")
        role, content = roles[name], _turn_content(turn, content_key, where)
        if not content.strip() and role == "system":
            continue  # an empty system prompt says nothing
        if not content.strip() and role in ("user", "assistant"):
            found = describe(content)
            raise ValueError(f"expected {where}.{content_key} to be non-empty, found {found}")
        messages.append(Message(role=role, content=content))
    return messages


def _turn_content(turn: dict, key: str, where: str) -> str:
    """A turn's text; OpenAI content parts are joined, tool calls kept as JSON."""
    content = turn.get(key)
    if isinstance(content, list):
        content = _text_parts(content, where)
    if turn.get("tool_calls") and (content is None or isinstance(content, str)):
        return "\n".join(t for t in (content, _tool_calls_text(turn["tool_calls"], where)) if t)
    if key not in turn:
        raise ValueError(f"expected {where} to have a '{key}', found keys {sorted(turn)}")
    if not isinstance(content, str):
        raise ValueError(f"expected {where}.{key} as text, found {describe(content)}")
    return content


def _text_parts(parts: list, where: str) -> str:
    texts = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text":
            part = part.get("text")
        if not isinstance(part, str):
            found = f"a {part.get('type')!r} part" if isinstance(part, dict) else describe(part)
            raise ValueError(f"expected only text parts in {where}, found {found}")
        texts.append(part)
    return "".join(texts)


def _tool_calls_text(calls: object, where: str) -> str:
    """OpenAI tool_calls as {"name", "arguments"} JSON, the shape ShareGPT data uses."""
    rendered = []
    for call in calls if isinstance(calls, list) else [None]:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict):
            found = describe(calls)
            raise ValueError(f"expected {where}.tool_calls as a list of objects, found {found}")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):  # else keep the string as written
                arguments = json.loads(arguments)
        rendered.append({"name": function.get("name"), "arguments": arguments})
    return json.dumps(rendered[0] if len(rendered) == 1 else rendered, ensure_ascii=False)


def sharegpt_prompt(
    row: dict,
    key: str,
    system_key: str | None,
    role_key: str,
    content_key: str,
    roles: Mapping[str, Role],
) -> list[Message]:
    """The turns under `key`, with the row's `system_key` prompt first if it has one."""
    if key not in row:
        raise ValueError(f"expected a '{key}' list of turns, found keys {sorted(row)}")
    messages = parse_turns(row[key], key, role_key, content_key, roles)
    system = _optional_text(row, system_key)
    if system.strip() and not (messages and messages[0].role == "system"):
        messages.insert(0, Message(role="system", content=system))
    return messages


def _uses_role_keys(turns: object) -> bool:
    first = turns[0] if isinstance(turns, list) and turns else None
    return isinstance(first, dict) and "role" in first and "from" not in first


class AlpacaColumns(NamedTuple):
    prompt: str | None = "instruction"
    query: str | None = "input"
    response: str | None = "output"
    system: str | None = "system"
    history: str | None = "history"


ALPACA = AlpacaColumns()


def alpaca_prompt(row: dict, columns: AlpacaColumns) -> list[Message]:
    """System, history pairs, then the instruction with its input after a blank line."""
    system = _optional_text(row, columns.system)
    messages = [Message(role="system", content=system)] if system.strip() else []
    history = row.get(columns.history) if columns.history else None
    for index, pair in enumerate(history or []):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
        ):
            found = describe(pair)
            raise ValueError(
                f"expected {columns.history}[{index}] as [user, assistant], found {found}"
            )
        messages += qa_messages(*pair)
    parts = [_optional_text(row, key) for key in (columns.prompt, columns.query)]
    if not any(part.strip() for part in parts):
        raise ValueError(f"expected a non-empty '{columns.prompt}', found keys {sorted(row)}")
    messages.append(Message(role="user", content="\n\n".join(p for p in parts if p.strip())))
    return messages


def _assistant(row: dict, key: str | None) -> Message:
    return Message(role="assistant", content=_required_text(row, key or "output"))


def _optional_text(row: dict, key: str | None) -> str:
    value = row.get(key) if key else None
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected '{key}' as text, found {describe(value)}")
    return value or ""


def _required_text(row: dict, key: str) -> str:
    if key not in row:
        raise ValueError(f"expected '{key}', found keys {sorted(row)}")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty '{key}', found {describe(value)}")
    return value


def require_assistant(messages: list[Message], row: dict) -> None:
    if any(m.role == "assistant" for m in messages):
        return
    hint = ""
    if "chosen" in row and "rejected" in row:
        hint = ' (preference data: list its dataset_info.json with "ranking": true)'
    roles = [m.role for m in messages]
    raise ValueError(f"expected at least one assistant turn, found roles {roles}{hint}")


def messages_id(source: str, messages: list[Message]) -> str:
    return content_id(source, *(f"{m.role}\n{m.content}" for m in messages))


def warn_dropped_tools(path: Path, rows: int) -> None:
    """`Conversation` has no field for tool definitions yet; say so rather than hide it."""
    if rows:
        logger.warning(
            "%s: %d rows define 'tools'; the definitions are not kept "
            "(the turns, including function calls and their results, are)",
            path,
            rows,
        )


# --- conversation files -------------------------------------------------------------


def read_conversations(
    path: Path, root: Path, errors: list[SourceError] | None = None
) -> list[Conversation]:
    """Every row of a JSONL/JSON conversation file; the format is detected per row."""
    relpath = source_path(path, root)
    records: list[Conversation] = []
    with_tools = 0
    try:
        for line, where, row in read_json_rows(path, errors):
            with_tools += bool(row.get("tools"))
            try:
                messages = row_messages(row)
            except ValueError as err:
                report(SourceError(path, line, f"{where}{err}"), errors)
                continue
            source = f"{relpath}:{line}"
            record_id = messages_id(source, messages)
            records.append(Conversation(id=record_id, messages=messages, source=source))
    except SourceError as err:  # the file as a whole (binary, undecodable)
        report(err, errors)
    warn_dropped_tools(path, with_tools)
    return records


# --- LLaMA-Factory dataset_info.json ------------------------------------------------

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
        messages.append(_assistant(row, dataset.columns["response"]))
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
        return _required_text(value, content_key)
    return _required_text(row, key)
