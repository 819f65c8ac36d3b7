from pathlib import Path

import pytest

from shoptalk.data.chat_export import chat_columns, read_chat_export
from shoptalk.errors import SourceError

# Two conversations, their rows interleaved and out of time order, as exports
# sorted by agent or by ticket often are.
EXPORT = """\
conversation_id,role,text,timestamp
c2,agent,"Your parcel left today.",2024-05-02T10:05:00Z
c1,customer,Hi,2024-05-01T09:00:00Z
c2,customer,Where is my parcel?,2024-05-02T10:00:00Z
c1,agent,Hello! How can I help?,2024-05-01T09:00:30Z
c1,customer,Can I return shoes?,2024-05-01T09:01:00Z
c1,customer,"They are unworn,
still in the box.",2024-05-01T09:01:20Z
c1,agent,Yes: within 30 days.,2024-05-01T11:02:00+02:00
c2,customer,Thanks!,2024-05-02T10:06:00Z
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def turns(conversation):
    return [(m.role, m.content) for m in conversation.messages]


def test_conversations_are_grouped_ordered_by_time_and_merged(tmp_path):
    path = write(tmp_path / "chats" / "export.csv", EXPORT)

    c2, c1 = read_chat_export(path, tmp_path)

    assert turns(c1) == [
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "Can I return shoes?\nThey are unworn,\nstill in the box."),
        ("assistant", "Yes: within 30 days."),  # 11:02+02:00 is 09:02Z, after 09:01:20Z
    ]
    assert turns(c2) == [
        ("user", "Where is my parcel?"),
        ("assistant", "Your parcel left today."),
        ("user", "Thanks!"),
    ]
    # In the order each conversation first appears; source is that first line.
    assert [c.source for c in (c2, c1)] == ["chats/export.csv:2", "chats/export.csv:3"]
    assert all(c.kind == "chat" for c in (c1, c2))
    assert c1.id != c2.id


def test_aliases_and_file_order_without_timestamps(tmp_path):
    text = (
        "Ticket ID;Speaker;Message\nT-1;Client;Hello\nT-1;Bot;Hi there\nT-1;Support;A human now\n"
    )
    path = write(tmp_path / "tickets.csv", text)

    [ticket] = read_chat_export(path, tmp_path)

    assert turns(ticket) == [("user", "Hello"), ("assistant", "Hi there\nA human now")]


def test_chinese_header_in_gbk(tmp_path):
    text = "会话ID,角色,内容,时间\n1,客户,怎么退货？,2024-05-01 09:00:00\n1,客服,七天内可退。,2024-05-01 09:01:00\n"
    path = write(tmp_path / "导出.csv", text, encoding="gbk")

    [chat] = read_chat_export(path, tmp_path)

    assert turns(chat) == [("user", "怎么退货？"), ("assistant", "七天内可退。")]


def test_unknown_role_names_the_line_and_drops_that_conversation(tmp_path):
    text = (
        "conversation_id,role,text\n"
        "a,user,Hi\na,manager,I take over\na,agent,Hello\n"
        "b,user,Hours?\nb,agent,9-17\n"
    )
    path = write(tmp_path / "export.csv", text)
    errors: list[SourceError] = []

    chats = read_chat_export(path, tmp_path, errors)

    assert [c.source for c in chats] == ["export.csv:5"]
    [error] = errors
    assert (error.path, error.line) == (str(path), 3)
    assert error.detail == (
        "expected 'role' to be one of customer, user, client, 客户, 用户, agent, assistant, "
        "support, bot, 客服, found 'manager'"
    )


def test_conversation_without_an_agent_reply_names_its_first_line(tmp_path):
    text = "conversation_id,role,text\nx,user,Hi\nx,user,Anyone?\ny,user,Q\ny,agent,A\n"
    path = write(tmp_path / "export.csv", text)

    with pytest.raises(SourceError) as info:
        read_chat_export(path, tmp_path)

    assert str(info.value) == (
        f"{path}:2: expected conversation 'x' to have an agent/assistant message, "
        "found only 2 from the customer"
    )


def test_bad_and_missing_timestamps_name_the_line(tmp_path):
    bad = write(
        tmp_path / "bad.csv",
        "conversation_id,role,text,timestamp\nx,user,Hi,2024-05-01T09:00\nx,agent,Yo,yesterday\n",
    )
    gap = write(
        tmp_path / "gap.csv",
        "conversation_id,role,text,timestamp\nx,user,Hi,2024-05-01T09:00\nx,agent,Yo,\n",
    )

    with pytest.raises(SourceError) as bad_info:
        read_chat_export(bad, tmp_path)
    with pytest.raises(SourceError) as gap_info:
        read_chat_export(gap, tmp_path)

    assert bad_info.value.line == 3
    assert bad_info.value.detail.startswith("expected an ISO 8601 timestamp in column 'timestamp'")
    assert gap_info.value.line == 3
    assert gap_info.value.detail.endswith("found an empty cell")


def test_a_faq_sheet_is_not_a_chat_export(tmp_path):
    path = write(tmp_path / "faq.csv", "question,answer\nQ,A\n")

    with pytest.raises(SourceError) as info:
        read_chat_export(path, tmp_path)

    assert info.value.line == 1
    assert info.value.detail.startswith("expected a support-chat export header: conversation_id")
    assert info.value.detail.endswith(
        "found columns ['question', 'answer'] (a question/answer sheet: list it under sources.faq)"
    )


def test_header_detection():
    assert chat_columns(["Conversation ID", "From", "Content"]) is not None
    assert chat_columns(["thread", "role", "text", "created_at"]).timestamp == 3
    assert chat_columns(["id", "role", "text"]) is None  # no conversation column
