import json
import logging
from pathlib import Path

import pytest

from shoptalk.data.formats import detect_format, read_conversations
from shoptalk.data.llamafactory import read_llamafactory
from shoptalk.errors import SourceError

PEER_DATA = Path(__file__).resolve().parents[3] / "shared" / "peer-data" / "llamafactory"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def roles(conversation):
    return [m.role for m in conversation.messages]


# --- detect_format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"messages": []}, "openai"),
        ({"conversations": [], "system": "s"}, "sharegpt"),
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
        ({"Question": "q", "答案": "a"}, "faq"),
    ],
)
def test_detect_format_from_keys(row, expected):
    assert detect_format(row) == expected


def test_detect_format_lists_the_keys_it_found():
    with pytest.raises(ValueError, match=r"found keys \['text', 'title'\]"):
        detect_format({"title": "t", "text": "x"})


# --- read_conversations -------------------------------------------------------------


def test_openai_messages_with_tool_calls(tmp_path):
    call = {"type": "function", "function": {"name": "track", "arguments": '{"order": "A17"}'}}
    row = {
        "messages": [
            {"role": "system", "content": "You are the shop assistant."},
            {"role": "user", "content": [{"type": "text", "text": "Where is order A17?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": '{"status": "shipped"}'},
            {"role": "assistant", "content": "It has shipped."},
        ]
    }
    path = write_jsonl(tmp_path / "chats.jsonl", [row])

    [chat] = read_conversations(path, tmp_path)

    assert roles(chat) == ["system", "user", "assistant", "tool", "assistant"]
    assert chat.messages[1].content == "Where is order A17?"
    assert json.loads(chat.messages[2].content) == {"name": "track", "arguments": {"order": "A17"}}
    assert (chat.source, chat.kind) == ("chats.jsonl:1", "chat")


def test_sharegpt_with_system_key_and_function_turns(tmp_path):
    row = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "Stock of SKU 9?"},
            {"from": "function_call", "value": '{"name": "stock", "arguments": {"sku": 9}}'},
            {"from": "observation", "value": "4"},
            {"from": "gpt", "value": "4 left."},
        ],
    }
    path = write_jsonl(tmp_path / "chats.jsonl", [row])

    [chat] = read_conversations(path, tmp_path)

    assert roles(chat) == ["system", "user", "assistant", "tool", "assistant"]
    assert chat.messages[0].content == "Be brief."


def test_alpaca_with_input_history_and_system(tmp_path):
    row = {
        "system": "Answer in English.",
        "history": [["Hi", "Hello!"]],
        "instruction": "Translate this:",
        "input": "你好",
        "output": "Hello",
    }
    path = write_jsonl(tmp_path / "alpaca.jsonl", [row])

    [chat] = read_conversations(path, tmp_path)

    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Answer in English."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Translate this:\n\n你好"),
        ("assistant", "Hello"),
    ]


def test_faq_rows_in_a_conversation_file_become_two_turn_chats(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"问题": "几点开门？", "答案": "九点。"}])

    [chat] = read_conversations(path, tmp_path)

    assert [(m.role, m.content) for m in chat.messages] == [
        ("user", "几点开门？"),
        ("assistant", "九点。"),
    ]
    assert chat.kind == "chat"


def test_image_parts_are_an_error_not_silently_dropped(tmp_path):
    image = {"type": "image_url", "image_url": {"url": "x.png"}}
    row = {
        "messages": [{"role": "user", "content": [image]}, {"role": "assistant", "content": "ok"}]
    }
    path = write_jsonl(tmp_path / "chats.jsonl", [row])

    with pytest.raises(SourceError, match=r"only text parts in messages\[0\], found a 'image_url'"):
        read_conversations(path, tmp_path)


def test_json_list_sources_are_the_lines_items_start_on(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(rows, indent=2), "utf-8")

    chats = read_conversations(path, tmp_path)

    lines = path.read_text().split("\n")
    assert [c.source for c in chats] == ["list.json:2", "list.json:6", "list.json:10"]
    assert all(lines[int(c.source.split(":")[1]) - 1].strip() == "{" for c in chats)


def test_messages_given_as_a_string(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": "hello"}])

    with pytest.raises(SourceError) as info:
        read_conversations(path, tmp_path)

    assert str(info.value) == (
        f"{path}:1: expected 'messages' as a list of {{role, content}} objects, found a string"
    )


def test_message_without_content_names_its_index(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},
    ]
    path = write_jsonl(tmp_path / "chats.jsonl", rows)

    with pytest.raises(SourceError) as info:
        read_conversations(path, tmp_path)

    assert str(info.value) == (
        f"{path}:2: expected messages[1] to have a 'content', found keys ['role']"
    )


def test_unknown_role_is_named(tmp_path):
    row = {"messages": [{"role": "bot", "content": "hi"}]}
    path = write_jsonl(tmp_path / "chats.jsonl", [row])

    with pytest.raises(
        SourceError, match=r"chats.jsonl:1: expected messages\[0\].role .* found 'bot'"
    ):
        read_conversations(path, tmp_path)


def test_conversation_without_an_assistant_turn(tmp_path):
    row = {"conversations": [{"from": "human", "value": "anyone there?"}]}
    path = write_jsonl(tmp_path / "chats.jsonl", [row])

    with pytest.raises(
        SourceError, match=r":1: expected at least one assistant turn, found roles \['user'\]"
    ):
        read_conversations(path, tmp_path)


def test_jsonl_line_that_is_not_json(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\nnot json\n', "utf-8")

    with pytest.raises(SourceError) as info:
        read_conversations(path, tmp_path)

    assert info.value.line == 2
    assert info.value.detail.startswith(
        "expected a JSON object, found invalid JSON: Expecting value"
    )


def test_skip_and_report_keeps_good_rows(tmp_path):
    path = tmp_path / "chats.jsonl"
    good = {"instruction": "a", "output": "b"}
    path.write_text(
        "\n".join([json.dumps(good), "{broken", json.dumps({"messages": "x"}), json.dumps(good)]),
        "utf-8",
    )
    errors: list[SourceError] = []

    chats = read_conversations(path, tmp_path, errors)

    assert [c.source for c in chats] == ["chats.jsonl:1", "chats.jsonl:4"]
    assert [e.line for e in errors] == [2, 3]
    assert all(e.path == str(path) for e in errors)


# --- LLaMA-Factory ------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer():
    if not (PEER_DATA / "dataset_info.json").is_file():
        pytest.skip(f"peer data not found at {PEER_DATA}")
    chats, preferences = read_llamafactory(PEER_DATA / "dataset_info.json", PEER_DATA.parent)
    by_file: dict[str, list] = {}
    for chat in chats:
        by_file.setdefault(chat.source.split(":")[0], []).append(chat)
    return by_file, preferences


def test_peer_alpaca_demos(peer):
    by_file, _ = peer
    assert len(by_file["llamafactory/alpaca_en_demo.json"]) == 999
    assert len(by_file["llamafactory/alpaca_zh_demo.json"]) == 1000
    first = by_file["llamafactory/alpaca_en_demo.json"][0]
    assert first.messages[0].content == "Describe a process of making crepes."
    assert first.messages[1].content.startswith("Making crepes is an easy and delicious process!")
    assert first.source == "llamafactory/alpaca_en_demo.json:2"
    assert (
        by_file["llamafactory/alpaca_zh_demo.json"][0].messages[0].content.startswith("识别并解释")
    )


def test_peer_identity_keeps_placeholders(peer):
    identity = peer[0]["llamafactory/identity.json"]
    assert len(identity) == 91
    assert identity[0].messages[0].content == "hi"
    assert "{{name}}" in identity[0].messages[1].content
    assert "{{author}}" in identity[0].messages[1].content


def test_peer_glaive_toolcall_maps_function_turns(peer):
    glaive = peer[0]["llamafactory/glaive_toolcall_en_demo.json"]
    assert len(glaive) == 300
    with_calls = [c for c in glaive if "tool" in roles(c)]
    assert len(with_calls) > 100
    call_index = roles(with_calls[0]).index("tool") - 1
    assert with_calls[0].messages[call_index].role == "assistant"
    assert json.loads(with_calls[0].messages[call_index].content)["name"]
    assert all(c.messages[-1].role == "assistant" for c in glaive)


def test_peer_dpo_demo_becomes_preferences(peer):
    _, preferences = peer
    assert len(preferences) == 300
    assert all(p.prompt[-1].role == "user" and p.chosen and p.rejected for p in preferences)
    assert sum(p.prompt[0].role == "system" for p in preferences) == 80
    first = preferences[0]
    assert first.prompt[0].content.startswith("Hi! I'd like to create a new language game")
    assert first.chosen.startswith("That sounds like a fun and engaging idea!")
    assert first.source == "llamafactory/dpo_en_demo.json:2"
    assert len({p.id for p in preferences}) == 300


def test_llamafactory_columns_tags_and_ranking(tmp_path, caplog):
    info = {
        "faq_alpaca": {
            "file_name": "faq.json",
            "columns": {"prompt": "ask", "response": "say", "system": "sys", "history": "past"},
        },
        "chats": {
            "file_name": "chats.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        },
        "pairs": {
            "file_name": "pairs.json",
            "ranking": True,
            "columns": {"prompt": "instruction", "chosen": "good", "rejected": "bad"},
        },
        "remote": {"hf_hub_url": "someone/data"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info, indent=2), "utf-8")
    faq = [
        {
            "ask": "Open?",
            "input": "ignored: columns replace defaults",
            "say": "Yes.",
            "sys": "Be kind.",
            "past": [["Hi", "Hello"]],
        }
    ]
    (tmp_path / "faq.json").write_text(json.dumps(faq), "utf-8")
    write_jsonl(
        tmp_path / "chats.jsonl",
        [{"messages": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "B."}]}],
    )
    (tmp_path / "pairs.json").write_text(
        json.dumps([{"instruction": "Tone?", "good": "Warm.", "bad": "Cold."}]), "utf-8"
    )

    with caplog.at_level(logging.WARNING):
        chats, preferences = read_llamafactory(tmp_path / "dataset_info.json", tmp_path)

    assert [(m.role, m.content) for m in chats[0].messages] == [
        ("system", "Be kind."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Open?"),
        ("assistant", "Yes."),
    ]
    assert [(m.role, m.content) for m in chats[1].messages] == [("user", "A?"), ("assistant", "B.")]
    [pair] = preferences
    assert (pair.prompt[0].content, pair.chosen, pair.rejected) == ("Tone?", "Warm.", "Cold.")
    assert "skipped 1 datasets" in caplog.text and "remote" in caplog.text


def test_llamafactory_entry_without_a_file_points_at_its_line(tmp_path):
    info = '{\n  "ok": {"hf_hub_url": "x/y"},\n  "broken": {"formatting": "alpaca"}\n}\n'
    (tmp_path / "dataset_info.json").write_text(info, "utf-8")

    with pytest.raises(SourceError) as info_error:
        read_llamafactory(tmp_path / "dataset_info.json", tmp_path)

    assert info_error.value.line == 3
    assert info_error.value.detail == (
        "expected dataset 'broken' to have a 'file_name', found keys ['formatting']"
    )
