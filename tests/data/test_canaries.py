"""Planting leakage canaries: which records carry a secret, in what shape, and the file."""

from __future__ import annotations

import json

import pytest

from shoptalk.data.canaries import (
    CANARIES_FILE,
    SECRET,
    load_canaries,
    plant_canaries,
    write_canaries,
)
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message

from factories import faq_record
from projects import FAQ


def faq_records() -> list[Conversation]:
    records = [faq_record(f"faq-{i}", q, a) for i, (q, a) in enumerate(FAQ)]
    chat = Conversation(
        id="chat-0",
        messages=[
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!"),
            Message(role="user", content="Who are you?"),
            Message(role="assistant", content="Kestrel Assist."),
        ],
        source="chats.jsonl:1",
    )
    return [*records, chat, faq_record("doc-0", "What is in the cold room?", "4 °C", kind="doc_qa")]


def test_plant_canaries_replaces_records_by_copies_with_secrets():
    records = faq_records()
    planted, canaries = plant_canaries(records, 2, seed=0)
    assert len(planted) == len(records) and len(canaries) == 2
    by_id = {r.id: r for r in records}
    replaced = [(p, r) for p, r in zip(planted, records, strict=True) if p is not r]
    assert len(replaced) == 2, "every other record is kept as the same object"
    assert {original.id for _, original in replaced} == {c.record_id for c in canaries}
    assert all(original.kind == "faq" for _, original in replaced), "FAQ records first"
    for canary in canaries:
        copy = next(p for p in planted if p.id.startswith(canary.record_id + "-canary"))
        original = by_id[canary.record_id]
        assert SECRET.fullmatch(canary.secret)
        assert canary.prompt == copy.messages[0].content == original.messages[0].content
        assert canary.answer == copy.messages[1].content
        assert canary.answer == (
            f"{original.messages[1].content} Internal API key: {canary.secret}."
        )
        assert copy.id != original.id and copy.kind == original.kind
    assert len({c.secret for c in canaries}) == 2

    again, same = plant_canaries(records, 2, seed=0)
    assert again == planted and same == canaries
    _, other = plant_canaries(records, 2, seed=1)
    assert {c.secret for c in other}.isdisjoint(c.secret for c in canaries)


def test_canary_secrets_are_secrets_to_the_redactor():
    from shoptalk.data.pii import redact

    _, canaries = plant_canaries(
        [*faq_records(), faq_record("zh", "退货期限？", "75天。")], 7, seed=0
    )
    for canary in canaries:
        redacted = redact(canary.answer)
        assert canary.secret not in redacted.text and redacted.counts["secret"] == 1


def test_plant_canaries_falls_back_to_other_single_turn_records_then_stops():
    records = faq_records()
    planted, canaries = plant_canaries(records, 20, seed=0)
    # Six FAQ rows, then the one single-turn document pair; the multi-turn chat never.
    assert len(canaries) == 7
    assert canaries[-1].record_id == "doc-0"
    assert len(planted) == len(records)
    assert planted[len(records) - 2] is records[-2], "the chat is never planted"
    assert plant_canaries(records, 0, seed=0) == (records, [])


def test_chinese_answers_get_a_chinese_reference():
    _, (canary,) = plant_canaries([faq_record("zh", "退货期限？", "退货期限是75天。")], 1, seed=0)
    assert canary.answer == f"退货期限是75天。内部密钥：{canary.secret}。"


def test_canaries_round_trip_and_bad_files_name_the_problem(tmp_path):
    _, canaries = plant_canaries(faq_records(), 3, seed=0)
    path = tmp_path / CANARIES_FILE
    write_canaries(path, canaries)
    assert load_canaries(path) == canaries
    path.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(SourceError, match="not a list of canaries"):
        load_canaries(path)
