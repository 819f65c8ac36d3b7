"""Conversation formats -> `Conversation` records.

    chats = read_conversations(Path("support/chats.jsonl"), root=Path("."))

The data contract. A file is JSON Lines (one object a line) or a JSON list of
objects; each row's format is detected from its keys:

| format   | keys                                                              |
| -------- | ----------------------------------------------------------------- |
| openai   | messages: [{role, content}]  (tool_calls kept as JSON content)    |
| sharegpt | conversations: [{from, value}], optional system                   |
| alpaca   | instruction, optional input, output, optional system, history     |
| faq      | question and answer (or an alias in QUESTION_KEYS / ANSWER_KEYS)  |

LLaMA-Factory's `dataset_info.json` names alpaca or sharegpt files with renamed
columns and role tags; `shoptalk.data.llamafactory` honours those mappings.
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
from shoptalk.records import Conversation, Message, Role

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
        messages = alpaca_prompt(row, ALPACA) + [assistant_message(row, ALPACA.response)]
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
    return required_text(row, q_key).strip(), required_text(row, a_key).strip()


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


def assistant_message(row: dict, key: str | None) -> Message:
    return Message(role="assistant", content=required_text(row, key or "output"))


def _optional_text(row: dict, key: str | None) -> str:
    value = row.get(key) if key else None
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected '{key}' as text, found {describe(value)}")
    return value or ""


def required_text(row: dict, key: str) -> str:
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
