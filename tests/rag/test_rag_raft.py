from __future__ import annotations

import re

import pytest
from rag_fakes import fake_embedder, write_rag_project

from shoptalk.project import Project
from shoptalk.rag.answer import NOT_FOUND
from shoptalk.rag.citations import support
from shoptalk.rag.index import index_project
from shoptalk.rag.raft import RaftSettings, raft_examples
from shoptalk.rag.retrieve import open_index
from shoptalk.records import Chunk

from factories import faq_record

QA = [
    faq_record(
        "1",
        "How long do customers have to file a claim?",
        "Customers have 47 days from delivery to file a freight claim.",
    ),
    faq_record("2", "Who runs the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    faq_record("3", "When is payday?", "Salaries are paid on the 25th of each month."),
    faq_record("4", "Is there parking?", "Yes, twelve spaces behind depot B."),
]


@pytest.fixture
def index(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    embedder = fake_embedder()
    index_project(project, embedder)
    return open_index(project, embedder)


def documents(example) -> list[str]:
    return re.findall(r"<document [^>]*>\n(.*?)\n</document>", example.messages[1].content, re.S)


def test_oracle_examples_hold_the_answer_and_cite_its_number(index):
    examples = raft_examples(
        QA, index, "You are Kestrel.", RaftSettings(oracle_ratio=1.0, chunks=3)
    )
    assert [e.source for e in examples] == ["faq.csv:1", "faq.csv:2"], (
        "payday is in an hr-only document, parking in none: no example"
    )
    for example, qa in zip(examples, QA, strict=False):
        system, user, reply = example.messages
        assert system.role == "system" and system.content.startswith("You are Kestrel.")
        assert user.content.endswith(f"Question: {qa.messages[0].content}")
        number = int(re.search(r"\[(\d+)\]$", reply.content).group(1))
        cited = documents(example)[number - 1]
        assert support(qa.messages[1].content, Chunk(id="x", text=cited, source="x"))
        assert reply.content.startswith(qa.messages[1].content) and example.kind == "doc_qa"


def test_distractor_only_examples_answer_not_found_and_hold_no_answer(index):
    examples = raft_examples(QA, index, "", RaftSettings(oracle_ratio=0.0))
    assert examples and all(e.kind == "refusal" for e in examples)
    for example in examples:
        assert example.messages[-1].content == NOT_FOUND["en"]
        qa = next(q for q in QA if q.source == example.source)
        for text in documents(example):
            assert not support(qa.messages[1].content, Chunk(id="x", text=text, source="x"))


def test_restricted_chunks_are_used_only_when_asked(index):
    assert all(
        "Salaries" not in e.messages[1].content
        for e in raft_examples(QA, index, "", RaftSettings())
    )
    with_all = raft_examples(QA, index, "", RaftSettings(oracle_ratio=1.0), groups=None)
    assert "faq.csv:3" in [e.source for e in with_all]


def test_examples_are_deterministic_for_a_seed(index):
    first = raft_examples(QA * 5, index, "", RaftSettings(oracle_ratio=0.5, seed=3))
    again = raft_examples(QA * 5, index, "", RaftSettings(oracle_ratio=0.5, seed=3))
    assert first == again
    kinds = {e.kind for e in first}
    assert kinds == {"doc_qa", "refusal"}


def test_max_examples_takes_one_example_per_answer_up_to_the_cap(index):
    paraphrased = QA + [
        faq_record(
            f"p{i}", f"Remind me of the claim deadline, take {i}?", QA[0].messages[1].content
        )
        for i in range(5)
    ]
    settings = RaftSettings(oracle_ratio=1.0, max_examples=5)
    examples = raft_examples(paraphrased, index, "", settings)
    answers = [e.messages[-1].content.rsplit(" [", 1)[0] for e in examples]
    assert sorted(answers) == sorted({q.messages[1].content for q in QA[:2]}), (
        "one example per answer a public document holds, the cap not reached"
    )
    capped = raft_examples(paraphrased, index, "", settings.model_copy(update={"max_examples": 1}))
    assert len(capped) == 1
