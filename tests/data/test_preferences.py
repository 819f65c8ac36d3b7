"""Preference pairs from files (OpenAI DPO, LLaMA-Factory, prompt/chosen/rejected) and feedback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shoptalk.data.preferences import (
    Feedback,
    preferences_from_feedback,
    read_preference_sources,
    read_preferences,
    redact_preference,
)
from shoptalk.errors import SourceError
from shoptalk.records import Message

LLAMAFACTORY = Path("/work/shared/peer-data/llamafactory")


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.skipif(not LLAMAFACTORY.is_dir(), reason="peer data not present")
def test_llamafactory_dpo_demo_read_directly_and_through_dataset_info(tmp_path):
    direct = read_preferences(LLAMAFACTORY / "dpo_en_demo.json", LLAMAFACTORY)
    raw = json.loads((LLAMAFACTORY / "dpo_en_demo.json").read_text(encoding="utf-8"))
    assert len(direct) == len(raw) == 300
    first = direct[0]
    assert [m.role for m in first.prompt] == ["user"]
    assert first.prompt[0].content == raw[0]["conversations"][0]["value"]
    assert first.chosen == raw[0]["chosen"]["value"]
    assert first.rejected == raw[0]["rejected"]["value"]
    assert first.source == "dpo_en_demo.json:2"

    for name in ("dataset_info.json", "dpo_en_demo.json", "alpaca_en_demo.json"):
        shutil.copy(LLAMAFACTORY / name, tmp_path / name)
    via_info = read_preference_sources(tmp_path, ["."])
    # Only the `ranking: true` entries are pairs; alpaca_en_demo is left to sources.conversations.
    assert [p.model_dump() for p in via_info] == [p.model_dump() for p in direct]


def test_openai_dpo_format(tmp_path):
    row = {
        "input": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How cold is San Francisco today?"},
            ],
            "tools": [],
            "parallel_tool_calls": True,
        },
        "preferred_output": [{"role": "assistant", "content": "About 12 °C."}],
        "non_preferred_output": [{"role": "assistant", "content": "It is not cold."}],
    }
    [pair] = read_preferences(write_jsonl(tmp_path / "openai.jsonl", [row]), tmp_path)
    assert [(m.role, m.content) for m in pair.prompt] == [
        ("system", "Be brief."),
        ("user", "How cold is San Francisco today?"),
    ]
    assert (pair.chosen, pair.rejected) == ("About 12 °C.", "It is not cold.")
    assert pair.source == "openai.jsonl:1"


def test_prompt_chosen_rejected_as_text_or_messages_and_in_chinese(tmp_path):
    rows = [
        {"prompt": "退货期限是多少天？", "chosen": "退货期限是75天。", "rejected": "我不知道。"},
        {
            "prompt": [{"role": "user", "content": "Who runs Oslo?"}],
            "chosen": [{"role": "assistant", "content": "Ingrid Solberg."}],
            "rejected": [{"role": "assistant", "content": "Nobody."}],
        },
        {"instruction": "Name the fee.", "input": "pallets", "chosen": "$18.", "rejected": "Free."},
    ]
    pairs = read_preferences(write_jsonl(tmp_path / "pairs.jsonl", rows), tmp_path)
    assert [(p.prompt[-1].content, p.chosen, p.rejected) for p in pairs] == [
        ("退货期限是多少天？", "退货期限是75天。", "我不知道。"),
        ("Who runs Oslo?", "Ingrid Solberg.", "Nobody."),
        ("Name the fee.\n\npallets", "$18.", "Free."),
    ]
    assert len({p.id for p in pairs}) == 3


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "Hi", "chosen": "Hello"}, "expected a preference pair.*found keys"),
        (
            {
                "input": {"messages": [{"role": "user", "content": "Hi"}]},
                "preferred_output": [
                    {"role": "assistant", "content": "A"},
                    {"role": "assistant", "content": "B"},
                ],
                "non_preferred_output": [{"role": "assistant", "content": "C"}],
            },
            "'preferred_output' to hold one assistant message",
        ),
        ({"input": "Hi", "preferred_output": [], "non_preferred_output": []}, "'input' as an"),
        ({"prompt": "Hi", "chosen": "", "rejected": "No"}, "non-empty 'chosen'"),
        (
            {"prompt": [{"role": "assistant", "content": "Hi"}], "chosen": "A", "rejected": "B"},
            "end with a user turn",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    good = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, row])
    with pytest.raises(SourceError, match=message) as caught:
        read_preferences(path, tmp_path)
    assert str(caught.value).startswith(f"{path}:2: ")
    errors: list[SourceError] = []
    assert len(read_preferences(path, tmp_path, errors)) == 1  # skip-and-report keeps the good one
    assert [e.line for e in errors] == [2]


def test_sources_preferences_entries(tmp_path):
    with pytest.raises(SourceError, match="listed under sources.preferences"):
        read_preference_sources(tmp_path, ["missing.jsonl"])
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\n", encoding="utf-8")
    with pytest.raises(SourceError, match="expected a .jsonl or .json preference file"):
        read_preference_sources(tmp_path, ["pairs.csv"])


def test_feedback_with_a_correction_becomes_a_pair():
    prompt = [Message(role="user", content="How long is the claim window?")]
    feedback = [
        Feedback(id="f1", prompt=prompt, answer="30 days.", rating="down", correction="47 days."),
        Feedback(id="f2", prompt=prompt, answer="47 days.", rating="up"),
        Feedback(id="f3", prompt=prompt, answer="30 days.", rating="down"),
        Feedback(id="f4", prompt=prompt, answer="47 days.", rating="down", correction="47 days."),
    ]
    [pair] = preferences_from_feedback(feedback)
    assert (pair.chosen, pair.rejected, pair.source) == ("47 days.", "30 days.", "feedback:f1")
    assert pair.prompt == prompt


def test_redaction_numbers_placeholders_across_the_pair():
    [pair] = preferences_from_feedback(
        [
            Feedback(
                id="f1",
                prompt=[Message(role="user", content="Email ana@example.com about the claim")],
                answer="I wrote to bob@example.com.",
                rating="down",
                correction="I wrote to ana@example.com.",
            )
        ]
    )
    redacted, counts = redact_preference(pair)
    assert counts == {"email": 3}
    assert "ana@example.com" not in redacted.model_dump_json()
    prompt_placeholder = redacted.prompt[0].content.split()[1]
    assert prompt_placeholder in redacted.chosen  # the same person, the same placeholder
    assert prompt_placeholder not in redacted.rejected  # a different person
