"""Support-chat exports (CSV, one message a row) -> one `Conversation` per conversation.

    chats = read_chat_export(Path("support/export.csv"), root=Path("."))

What help-desk tools export: a header naming the conversation, who spoke, what
was said and, optionally, when. Column names are matched ignoring case, spaces,
`_` and `-`:

| column          | also spelled                                                  |
| --------------- | ------------------------------------------------------------- |
| conversation_id | conversation, thread_id, thread, ticket_id, ticket, chat_id   |
| role            | speaker, from, sender                                         |
| text            | message, content                                              |
| timestamp       | time, created_at, sent_at, date (optional; ISO 8601)          |

Speakers customer/user/client are the user, agent/assistant/support/bot the
assistant. A conversation's messages are ordered by timestamp (file order when
there is none, and between equal ones); consecutive messages of one speaker are
merged with a newline, the way a chat template wants turns to alternate.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import NamedTuple

from shoptalk.data.documents import report, source_path
from shoptalk.data.formats import ANSWER_KEYS, QUESTION_KEYS, find_key, messages_id
from shoptalk.data.tables import csv_rows
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message, Role

logger = logging.getLogger(__name__)

CHAT_EXPORT_SUFFIXES = (".csv",)
_ID_NAMES = ("conversation_id", "conversation", "thread_id", "thread", "ticket_id", "ticket")
_ID_NAMES += ("chat_id", "会话id", "会话", "工单号")
_ROLE_NAMES = ("role", "speaker", "from", "sender", "角色", "发送方")
_TEXT_NAMES = ("text", "message", "content", "内容", "消息")
_TIME_NAMES = ("timestamp", "time", "created_at", "sent_at", "date", "时间")

CHAT_ROLES: dict[str, Role] = {
    "customer": "user",
    "user": "user",
    "client": "user",
    "客户": "user",
    "用户": "user",
    "agent": "assistant",
    "assistant": "assistant",
    "support": "assistant",
    "bot": "assistant",
    "客服": "assistant",
}

HEADER_EXPECTED = (
    "expected a support-chat export header: conversation_id, role, text and optionally "
    "timestamp (or an alias of each)"
)


class ChatColumns(NamedTuple):
    header: list[str]
    conversation: int
    role: int
    text: int
    timestamp: int | None


class _Turn(NamedTuple):
    line: int
    role: Role
    text: str
    time: dt.datetime | None


def chat_columns(header: list[str]) -> ChatColumns | None:
    """Where the chat columns are in `header`, or None when it is not a chat export."""
    names = [_normalized(cell) for cell in header]

    def index(aliases: tuple[str, ...]) -> int | None:
        wanted = {_normalized(alias) for alias in aliases}
        return next((i for i, name in enumerate(names) if name in wanted), None)

    conversation, role, text = index(_ID_NAMES), index(_ROLE_NAMES), index(_TEXT_NAMES)
    if conversation is None or role is None or text is None:
        return None
    return ChatColumns(
        [c.strip(" \t\ufeff") for c in header], conversation, role, text, index(_TIME_NAMES)
    )


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in " \t\ufeff_-")


def read_chat_export(
    path: Path, root: Path, errors: list[SourceError] | None = None
) -> list[Conversation]:
    """Every conversation of the export, in the order each first appears in the file."""
    try:
        rows = csv_rows(path)
        columns = _columns(path, rows)
    except SourceError as err:  # the file as a whole: binary, not CSV, not a chat export
        report(err, errors)
        return []
    threads: dict[str, list[_Turn]] = {}
    broken: set[str] = set()
    empty = 0
    for line, cells in rows[1:]:
        thread = _cell(cells, columns.conversation)
        try:
            turn = _turn(line, cells, columns)
        except ValueError as err:
            report(SourceError(path, line, str(err)), errors)
            broken.add(thread)  # a conversation with a turn missing would teach the wrong reply
            continue
        if turn is None:
            empty += 1
            continue
        threads.setdefault(thread, []).append(turn)
    if empty:
        logger.warning("%s: skipped %d messages with no text (attachments?)", path, empty)
    relpath = source_path(path, root)
    records = []
    for thread, turns in threads.items():
        if thread in broken:
            continue
        try:
            messages = _messages(path, thread, turns, columns)
        except SourceError as err:
            report(err, errors)
            continue
        source = f"{relpath}:{turns[0].line}"
        records.append(
            Conversation(id=messages_id(source, messages), messages=messages, source=source)
        )
    return records


def _columns(path: Path, rows: list[tuple[int, list[str]]]) -> ChatColumns:
    if not rows:
        raise SourceError(path, 1, f"{HEADER_EXPECTED}, found an empty file")
    line, header = rows[0]
    columns = chat_columns(header)
    if columns is None:
        found = f"columns {[cell.strip() for cell in header]}"
        if find_key(header, QUESTION_KEYS) and find_key(header, ANSWER_KEYS):
            found += " (a question/answer sheet: list it under sources.faq)"
        raise SourceError(path, line, f"{HEADER_EXPECTED}, found {found}")
    return columns


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _turn(line: int, cells: list[str], columns: ChatColumns) -> _Turn | None:
    """One message row, or None when it has no text; ValueError says what is wrong."""
    header = columns.header
    if not _cell(cells, columns.conversation):
        column = header[columns.conversation]
        raise ValueError(f"expected a conversation id in column '{column}', found an empty cell")
    speaker = _cell(cells, columns.role)
    role = CHAT_ROLES.get(speaker.casefold())
    if role is None:
        accepted = ", ".join(CHAT_ROLES)
        column = header[columns.role]
        raise ValueError(f"expected '{column}' to be one of {accepted}, found {speaker!r}")
    text = _cell(cells, columns.text)
    if not text:
        return None
    stamp = _cell(cells, columns.timestamp)
    time = parse_timestamp(stamp, header[columns.timestamp]) if stamp else None
    return _Turn(line, role, text, time)


def parse_timestamp(text: str, column: str) -> dt.datetime:
    """An ISO 8601 time as naive UTC, so times with and without an offset compare."""
    try:
        # Python 3.10's fromisoformat does not know the "Z" suffix.
        value = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError:
        example = "2024-05-01T09:30:00Z"
        raise ValueError(
            f"expected an ISO 8601 timestamp in column '{column}' (like {example}), found {text!r}"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _messages(path: Path, thread: str, turns: list[_Turn], columns: ChatColumns) -> list[Message]:
    """The turns in time order, one speaker's consecutive messages merged."""
    first_line = turns[0].line  # turns come in file order
    timed = [turn for turn in turns if turn.time is not None]
    if timed and len(timed) < len(turns):
        untimed = next(turn for turn in turns if turn.time is None)
        column = columns.header[columns.timestamp or 0]
        expected = (
            f"expected a timestamp in column '{column}' like the other messages of {thread!r}"
        )
        raise SourceError(path, untimed.line, f"{expected}, found an empty cell")
    if timed:
        turns = sorted(turns, key=lambda turn: turn.time)  # stable: ties keep file order
    messages: list[Message] = []
    for turn in turns:
        if messages and messages[-1].role == turn.role:
            merged = f"{messages[-1].content}\n{turn.text}"
            messages[-1] = Message(role=turn.role, content=merged)
        else:
            messages.append(Message(role=turn.role, content=turn.text))
    if not any(message.role == "assistant" for message in messages):
        expected = f"expected conversation {thread!r} to have an agent/assistant message"
        found = f"only {len(turns)} from the customer"
        raise SourceError(path, first_line, f"{expected}, found {found}")
    return messages
