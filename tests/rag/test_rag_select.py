"""Sentence selection: the sentence that holds the fact comes first, in English and Chinese."""

from __future__ import annotations

import pytest
from rag_fakes import fake_embedder, write_rag_project

from shoptalk.config import SelectSettings
from shoptalk.project import Project
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import Hit, open_index
from shoptalk.rag.select import select_passages, within_budget
from shoptalk.records import Chunk


@pytest.fixture
def index(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    embedder = fake_embedder()
    index_project(project, embedder)
    return open_index(project, embedder)


def test_the_sentence_holding_the_fact_is_selected_first(index):
    question = "How many days do customers have to file a freight claim?"
    hits = index.search(question, None).hits
    passages = select_passages(question, hits, index.embedder, SelectSettings(sentences=2))
    assert "47 days" in passages[0].text
    assert passages[0].source == "docs/handbook.md#Claims"
    assert passages[0].text in passages[0].chunk.text, "a passage is verbatim from its chunk"
    assert len(passages) == 2 and passages[0].score >= passages[1].score


def test_chinese_sentences_are_cut_and_matched_by_jieba_words(index):
    question = "退货期限是多少天？"
    hits = index.search(question, None).hits
    passages = select_passages(question, hits, index.embedder, SelectSettings(sentences=3))
    assert passages[0].text == "退货期限是75天。"


def test_a_sentence_repeated_by_overlapping_chunks_is_read_once(index):
    chunk = Chunk(id="a", text="The depot opens at 06:00. It closes at 22:00.", source="d.md")
    overlap = Chunk(id="b", text="It closes at 22:00. Staff park in lot B.", source="d.md")
    hits = [Hit(chunk, 1.0, 0.5), Hit(overlap, 0.9, 0.4)]
    passages = select_passages("When does it close?", hits, index.embedder, SelectSettings())
    texts = [p.text for p in passages]
    assert sorted(texts) == sorted(set(texts)) and len(texts) == 3


def test_neighbours_widen_a_sentence_within_its_chunk(index):
    chunk = Chunk(id="a", text="First rule. The depot opens at 06:00. Last rule.", source="d.md")
    settings = SelectSettings(sentences=1, neighbours=1)
    [passage] = select_passages(
        "When does the depot open?", [Hit(chunk, 1, 1)], index.embedder, settings
    )
    assert passage.text == chunk.text


def test_the_budget_keeps_the_best_sentence_and_stops_before_it_overflows(index):
    chunk = Chunk(id="a", text="One two three. Four five six seven eight.", source="d.md")
    passages = select_passages("one two", [Hit(chunk, 1, 1)], index.embedder, SelectSettings())
    assert [p.text for p in within_budget(passages, index.embedder, 1)] == ["One two three."]
    assert len(within_budget(passages, index.embedder, 100)) == 2
