from __future__ import annotations

import logging
import re

import pytest
from rag_fakes import FAQ_ROWS, fake_embedder, write_faq_project

from shoptalk.config import RagSettings
from shoptalk.modeling.chat_format import styled_system_prompt
from shoptalk.project import Project
from shoptalk.rag.abstain import AbstainRule
from shoptalk.rag.answer import NOT_FOUND, passage_messages, select_for
from shoptalk.rag.citations import support
from shoptalk.rag.index import index_project
from shoptalk.rag.raft import RaftSettings, publish, raft_examples, view_key
from shoptalk.rag.retrieve import open_index
from shoptalk.records import Chunk

from factories import faq_record

# The FAQ rows (indexed as chunks, rag.index_faq), asked as training questions.
QA = [faq_record(str(n), q, a) for n, (q, a) in enumerate(FAQ_ROWS, start=2)]
PUBLIC_IN_DOCUMENTS = {FAQ_ROWS[i][1] for i in (0, 1, 2, 3, 6)}  # public documents state them
HR_ONLY = {FAQ_ROWS[i][1] for i in (4, 5)}  # only docs/hr/pay.md states them
FAQ_ONLY = FAQ_ROWS[7][1]  # no document holds it


@pytest.fixture
def index(tmp_path):
    project = Project.open(write_faq_project(tmp_path / "p"))
    embedder = fake_embedder()
    index_project(project, embedder)
    return open_index(project, embedder)


def passages(example) -> list[tuple[str, str]]:
    """(source, text) of each numbered passage the example's user turn holds, in order."""
    return re.findall(r"^\[\d+\] \((.*?)\) (.*)$", example.messages[1].content, re.M)


def answer_of(example) -> str:
    """The known answer of the conversation the example was made from."""
    return next(q.messages[1].content for q in QA if q.source == example.source)


def test_examples_are_the_prompt_answering_builds_without_the_faq_row_itself(index):
    examples = raft_examples(QA, index, "You are Kestrel.", RaftSettings())
    assert examples and {answer_of(e) for e in examples} <= PUBLIC_IN_DOCUMENTS
    for example in examples:
        system, user, reply = example.messages
        question = user.content.rsplit("Question: ", 1)[1]
        own = frozenset(c.id for c in index.stored.chunks if c.text == answer_of(example))
        selection = select_for(index, question, [], excluded=own)
        assert [system.model_dump(), user.model_dump()] == [
            {"role": m["role"], "content": m["content"]}
            for m in passage_messages(question, selection.passages, "You are Kestrel.")
        ], "exactly the messages answer_with_citations sends the model"
        read = passages(example)
        assert read and example.source not in [source for source, _ in read], (
            "retrieval is blind to the question's own FAQ row: it reads another passage"
        )
        assert example.kind == "doc_qa"


def test_the_reply_is_the_answers_supported_sentences_each_citing_its_passage(index):
    examples = raft_examples(QA, index, "", RaftSettings())
    for example in examples:
        reply = example.messages[-1].content
        cited = re.findall(r"([^\[]*?)\s?\[(\d+)\]([.。]?)\s*", reply)
        assert cited and all(c + end in answer_of(example) for c, _, end in cited), (
            "the answer's own sentences, values as written"
        )
        for claim, number, _ in cited:
            passage = passages(example)[int(number) - 1][1]
            assert support(claim, Chunk(id="x", text=passage, source="x")), (claim, passage)


def test_a_sentence_no_passage_supports_is_left_out_of_the_reply(index):
    extra = "Customers have 47 days to file a claim. The portal is slow."
    qa = faq_record("x", FAQ_ROWS[0][0], extra)
    (example,) = raft_examples([qa], index, "", RaftSettings())
    assert example.messages[-1].content.startswith("Customers have 47 days to file a claim [")
    assert "slow" not in example.messages[-1].content


def test_unsupported_answers_get_no_example(index):
    examples = raft_examples(QA, index, "", RaftSettings())
    assert all(NOT_FOUND["en"] not in e.messages[-1].content for e in examples)
    assert FAQ_ONLY not in {answer_of(e) for e in examples}, "only the FAQ row holds it"


def test_refusals_ask_answered_questions_over_passages_without_their_answer(index):
    examples = raft_examples(QA, index, "", RaftSettings(refusal_ratio=1.0))
    answers = [e for e in examples if e.kind == "doc_qa"]
    refusals = [e for e in examples if e.kind == "refusal"]
    assert refusals and len(refusals) <= len(answers)
    asked = {e.messages[1].content.split("Question: ")[1] for e in answers}
    for refusal in refusals:
        assert refusal.messages[-1].content == NOT_FOUND["en"]
        assert refusal.messages[1].content.split("Question: ")[1] in asked, "the same question"
        known = answer_of(refusal)
        read = " ".join(text for _, text in passages(refusal))
        assert support(known, Chunk(id="r", source="r", text=read)) is None
    half = raft_examples(QA, index, "", RaftSettings(refusal_ratio=0.5))
    assert sum(e.kind == "refusal" for e in half) <= round(len(answers) * 0.5)


def test_passages_the_abstention_rule_refuses_are_not_trained_on(index):
    assert raft_examples(QA, index, "", RaftSettings())
    index.rule = AbstainRule(weights=[0.0, 0.0], bias=-10.0, threshold=0.5)  # refuses all
    select = index.settings.select.model_copy(update={"refuse_on_coverage": True})
    index.settings = index.settings.model_copy(update={"select": select})
    del index.abstention  # the cached decision of the old rule
    assert raft_examples(QA, index, "", RaftSettings()) == []


def test_restricted_chunks_are_read_only_when_asked(index):
    public = raft_examples(QA, index, "", RaftSettings())
    assert not HR_ONLY & {answer_of(e) for e in public}
    assert all("docs/hr/" not in e.messages[1].content for e in public)
    everything = raft_examples(QA, index, "", RaftSettings(), groups=None)
    assert HR_ONLY & {answer_of(e) for e in everything}


def test_questions_about_the_assistant_get_no_example(index):
    about = faq_record("a", "Who are you?", "Customers have 47 days to file a claim.")
    assert raft_examples([about], index, "", RaftSettings()) == []


def test_max_examples_takes_one_example_per_answer_up_to_the_cap(index):
    paraphrased = QA + [
        faq_record(f"p{i}", f"Remind me of the claim deadline, take {i}?", FAQ_ROWS[0][1])
        for i in range(5)
    ]
    settings = RaftSettings(max_examples=50)
    examples = raft_examples(paraphrased, index, "", settings)
    answers = [answer_of(e) for e in examples if e.kind == "doc_qa"]
    assert len(answers) == len(set(answers)), "one example per answer"
    assert examples == raft_examples(paraphrased, index, "", settings), "deterministic"
    capped = raft_examples(paraphrased, index, "", settings.model_copy(update={"max_examples": 1}))
    assert len(capped) == 1


def test_removed_keys_load_with_a_warning_naming_them(caplog):
    with caplog.at_level(logging.WARNING):
        settings = RaftSettings.model_validate({"chunks": 4, "oracle_ratio": 0.8, "seed": 2})
    assert settings.seed == 2
    assert "rag.raft.chunks" in caplog.text and "rag.raft.oracle_ratio" in caplog.text
    with pytest.raises(ValueError):
        RaftSettings.model_validate({"chunkz": 4})


def test_the_view_is_named_by_selection_settings_the_abstention_rule_and_the_prompt(index):
    rag = index.settings.model_copy(update={"raft": RaftSettings()})
    key = view_key(index, rag, "You help.")
    select = rag.select.model_copy(update={"sentences": 5})
    assert view_key(index, rag.model_copy(update={"select": select}), "You help.") != key
    # The examples hold the system prompt: another prompt, another view (style rules aside:
    # no example is a draft).
    assert view_key(index, rag, "You are Ridge.") != key
    styled = styled_system_prompt("You help.", {"sign_off": "Kind regards"})
    assert view_key(index, rag, styled) == key
    index.rule = AbstainRule(weights=[0.0, 0.0], bias=-10.0, threshold=0.5)
    assert view_key(index, rag, "You help.") != key
    assert isinstance(rag, RagSettings)


def test_a_rule_fitted_on_another_machine_names_the_same_view(index):
    # The same fit differs in the 15th digit between machines; the view must not.
    rag = index.settings.model_copy(update={"raft": RaftSettings()})
    index.rule = AbstainRule(weights=[0.4131, 1.25], bias=-2.0, threshold=0.3)
    key = view_key(index, rag, "")
    index.rule = AbstainRule(weights=[0.4131000000000003, 1.25], bias=-2.0, threshold=0.3)
    assert view_key(index, rag, "") == key
    index.rule = AbstainRule(weights=[0.4132, 1.25], bias=-2.0, threshold=0.3)
    assert view_key(index, rag, "") != key


def test_a_document_question_reads_the_passage_that_is_its_answer_word_for_word(index):
    # Only a FAQ row and its paraphrases are blind to the row: a document question (a
    # teacher's or a rule's) reads the passage its answer was copied from, whole.
    question, answer = FAQ_ROWS[7]
    assert raft_examples([faq_record("8", question, answer)], index, "", RaftSettings()) == []
    document_question = faq_record("d", question, answer, kind="doc_qa")
    (example,) = raft_examples([document_question], index, "", RaftSettings())
    assert ("faq.csv:9", answer) in passages(example)
    assert example.messages[-1].content.startswith(answer.rstrip(".") + " [")


def test_a_view_another_rank_published_first_is_kept_and_a_stale_one_replaced(tmp_path):
    view = tmp_path / "raft-1"
    view.mkdir()
    (view / "train.jsonl").write_text("first\n")
    mine = tmp_path / ".raft-1.2.tmp"
    mine.mkdir()
    (mine / "train.jsonl").write_text("second\n")
    publish(mine, view, view / "train.jsonl")
    assert (view / "train.jsonl").read_text() == "first\n" and not mine.exists()

    (view / "train.jsonl").unlink()
    (view / "other.jsonl").write_text("stale\n")
    mine.mkdir()
    (mine / "train.jsonl").write_text("second\n")
    publish(mine, view, view / "train.jsonl")
    assert [p.name for p in view.iterdir()] == ["train.jsonl"] and not mine.exists()
