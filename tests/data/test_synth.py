"""Teacher-written document QA, against a real model served in-process by `shoptalk serve`."""

from __future__ import annotations

import pytest

from shoptalk.config import ServeSettings
from shoptalk.data.synth import (
    TeacherSettings,
    parse_pairs,
    teacher_examples,
    unsupported_numbers,
)
from shoptalk.records import Chunk
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.catalog import Catalog, ModelEntry
from shoptalk.serve.server import BackgroundServer
from shoptalk.serve.services import build_services

CHUNKS = [
    Chunk(
        id=f"c{i}",
        text=f"Depot {i} opens at {7 + i}:00 on weekdays.",
        source=f"docs/depots.md#Depot {i}",
    )
    for i in range(3)
]


@pytest.fixture
def teacher(tmp_path, tiny_model, monkeypatch):
    settings = ServeSettings()
    services = build_services(settings, tmp_path / "state")
    key = services.keys.create("data team", KeyLimits(scopes=["chat"])).secret
    monkeypatch.setenv("TEACHER_KEY", key)
    base = ModelEntry("base", "base", tiny_model)
    app = create_app(settings=settings, services=services, catalog=Catalog({"base": base}))
    with BackgroundServer(app) as url:
        yield TeacherSettings(
            base_url=url + "/v1", model="base", api_key_env="TEACHER_KEY", max_tokens=24
        )


def test_teacher_is_asked_once_per_chunk_then_cached(tmp_path, teacher):
    cache = tmp_path / "cache"
    _, first = teacher_examples(CHUNKS, teacher, cache, chinese=False)
    assert (first.requests, first.cached, first.failed) == (3, 0, 0)
    _, again = teacher_examples(CHUNKS, teacher, cache, chinese=False)
    assert (again.requests, again.cached) == (0, 3), "a rerun asks nothing"
    assert len(list(cache.glob("*.json"))) == 3


def test_cost_cap_skips_the_rest(tmp_path, teacher):
    capped = teacher.model_copy(update={"max_requests": 1})
    _, report = teacher_examples(CHUNKS, capped, tmp_path / "cache", chinese=False)
    assert (report.requests, report.skipped_over_cap) == (1, 2)


def test_a_refused_teacher_fails_its_chunks_not_the_build(tmp_path, teacher, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", "sk-st-wrong")
    _, report = teacher_examples(CHUNKS, teacher, tmp_path / "cache", chinese=False)
    assert report.failed == 3 and report.pairs == 0


def test_pairs_are_parsed_from_prose_and_traced_to_their_chunk(tmp_path, monkeypatch):
    reply = (
        'Sure! Here they are:\n{"question": "When does Depot 1 open?", "answer": "At 8:00."}\n'
        '{"question": "", "answer": "dropped"}\nnot json {broken\n'
        '{"question": "几点开门？", "answer": "早上八点。"}'
    )
    assert parse_pairs(reply) == [
        ("When does Depot 1 open?", "At 8:00."),
        ("几点开门？", "早上八点。"),
    ]
    monkeypatch.setattr("shoptalk.data.synth.Teacher.complete", lambda self, prompt: reply)
    settings = TeacherSettings(base_url="http://127.0.0.1:9/v1", model="m")
    pairs, report = teacher_examples(CHUNKS[1:2], settings, tmp_path / "cache", chinese=False)
    assert report.pairs == 2
    assert [p.source for p in pairs] == ["docs/depots.md#Depot 1"] * 2
    assert pairs[0].id == "synth-c1-0" and pairs[0].kind == "doc_qa"


def test_a_pair_with_a_number_the_excerpt_does_not_hold_is_dropped(tmp_path, monkeypatch):
    assert unsupported_numbers("It opens at 8:00 and costs £1200.", "8:00; fee £1,200") == set()
    assert unsupported_numbers("退货期限是７５天。", "退货期限是75 天") == set()
    assert unsupported_numbers("It opens at 9:00.", "Depot 1 opens at 8:00.") == {"9"}
    reply = (
        '{"question": "When does Depot 1 open?", "answer": "At 8:00 on weekdays."}\n'
        '{"question": "And on Sundays?", "answer": "At 10:00 on Sundays."}\n'
        '{"question": "Is it open on weekdays?", "answer": "Yes, every weekday."}'
    )
    monkeypatch.setattr("shoptalk.data.synth.Teacher.complete", lambda self, prompt: reply)
    settings = TeacherSettings(base_url="http://127.0.0.1:9/v1", model="m")
    pairs, report = teacher_examples(CHUNKS[1:2], settings, tmp_path / "cache", chinese=False)
    assert [p.messages[0].content for p in pairs] == [
        "When does Depot 1 open?",
        "Is it open on weekdays?",
    ]
    assert (report.pairs, report.unsupported) == (2, 1)
