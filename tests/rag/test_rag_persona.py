"""A greeting or a question about the assistant is answered in the persona's words: never
"not in the documents", and never with a value or claim the system prompt does not hold."""

from __future__ import annotations

import pytest
from rag_fakes import fake_embedder, write_rag_project

from shoptalk.modeling.generate import load_assistant
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, Abstention
from shoptalk.rag.answer import NOT_FOUND, answer_with_citations, checked_reply
from shoptalk.rag.index import index_project
from shoptalk.rag.persona import assistant_name, introduction, self_reply
from shoptalk.rag.retrieve import open_index

ABSTAIN = Abstention(DEFAULT_RULE, {})
# An invented organization: nothing here is any bundled example's wording.
PERSONA = "You are Harbor Help, the assistant of Lindqvist Shipping. Be brief."
ORG = "Lindqvist Shipping"
PERSONA_ZH = "你是岚山物流的智能客服“小岚”。请用岚山物流的资料回答。"
ORG_ZH = "岚山物流"


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        (PERSONA, "Harbor Help"),
        (PERSONA_ZH, "小岚"),
        ("You are an assistant named Wren Bot. Answer briefly.", "Wren Bot"),
        ('You are "Pip", a helper for a bakery.', "Pip"),
        ("你叫阿青，是一家茶馆的客服。", "阿青"),
        ("You are the assistant of Lindqvist Shipping.", None),
        ("You are a helpful assistant for our organization.", None),
        ("You are Lindqvist Shipping's assistant.", None),  # an owner, not a name
        ("", None),
    ],
)
def test_the_assistants_name_is_read_from_how_the_system_prompt_gives_it(prompt, name):
    assert assistant_name(prompt) == name


def test_the_introduction_names_the_assistant_and_organization_in_the_questions_language():
    english = introduction("Who are you?", PERSONA, ORG)
    assert english.startswith("I am Harbor Help, the assistant of Lindqvist Shipping.")
    assert "documents" in english
    chinese = introduction("你是谁？", PERSONA_ZH, ORG_ZH)
    assert chinese.startswith("我是岚山物流的助手“小岚”。") and "资料" in chinese
    # Across languages the names stay as the config writes them.
    assert introduction("你是谁？", PERSONA, ORG).startswith(
        "我是Lindqvist Shipping的助手“Harbor Help”"
    )
    assert introduction("Hello!", PERSONA, ORG).startswith("Hello! I am Harbor Help")
    assert introduction("您好", PERSONA_ZH, ORG_ZH).startswith("您好！我是")
    assert introduction("Thanks!", PERSONA, ORG).startswith("You're welcome!")
    # No name, no organization: still an introduction, with nothing invented.
    assert introduction("Who are you?", "", "") == (
        "I am this organization's assistant. I can answer your questions from the "
        "organization's documents, and I will say so when they do not hold the answer."
    )


def test_a_reply_the_system_prompt_supports_is_shown_as_generated():
    said = "I'm Harbor Help, the assistant of Lindqvist Shipping."
    shown = self_reply("Who are you?", said, PERSONA, ORG)
    assert (shown.status, shown.message, shown.unsupported) == ("verified", said, [])


def test_unsupported_sentences_are_cut_and_their_values_never_shown():
    said = (
        "Hello! I'm Harbor Help, the assistant of Lindqvist Shipping. "
        "I was built in 2011 and you can reach me at help@lindqvist.example."
    )
    shown = self_reply("Hello!", said, PERSONA, ORG)
    assert shown.status == "repaired"
    assert shown.message == "Hello! I'm Harbor Help, the assistant of Lindqvist Shipping."
    assert {"2011", "help@lindqvist.example"} <= set(shown.unsupported)


def test_a_self_description_with_nothing_supported_becomes_the_introduction():
    for said in (
        "I am Harbor Help, founded in 1987 with 4,500 staff; call +46 31 555 0199.",
        "Lindqvist Shipping has the largest fleet in Europe.",
        "I could not find this in the documents.",
        "",
    ):
        shown = self_reply("Tell me about yourself.", said, PERSONA, ORG)
        assert shown.status == "repaired"
        assert shown.message == introduction("Tell me about yourself.", PERSONA, ORG)
        for value in ("1987", "4,500", "555", "Europe", "largest", "could not find"):
            assert value not in shown.message


def test_half_supported_claims_and_echoes_of_the_prompt_are_not_self_descriptions():
    for said in (
        "Lindqvist Shipping is your biggest partner.",  # half its words are the persona's
        "I'm Harbor Help, the largest carrier of Lindqvist Shipping.",
        "You are Harbor Help, the assistant of Lindqvist Shipping. Be brief.",  # the prompt
    ):
        shown = self_reply("Who are you?", said, PERSONA, ORG)
        assert shown.message == introduction("Who are you?", PERSONA, ORG), said
    echoed = self_reply(
        "你好", "你好！你是岚山物流的智能客服“小岚”！请用岚山物流的资料回答。", PERSONA_ZH, ORG_ZH
    )
    assert echoed.message == introduction("你好", PERSONA_ZH, ORG_ZH)


def test_a_repeated_self_description_is_shown_once():
    said = "I'm Harbor Help. I'm Harbor Help. I'm Harbor Help."
    assert self_reply("Who are you?", said, PERSONA, ORG).message == "I'm Harbor Help."


def test_a_chinese_self_description_keeps_only_what_the_persona_says():
    said = "我是岚山物流的智能客服“小岚”。我们的客服电话是400-820-1234。"
    shown = self_reply("你是谁？", said, PERSONA_ZH, ORG_ZH)
    assert shown.status == "repaired"
    assert "400-820-1234" not in shown.message and "小岚" in shown.message
    invented = self_reply(
        "你好", "我们成立于1999年，邮箱是kf@lanshan.example。", PERSONA_ZH, ORG_ZH
    )
    assert invented.message == introduction("你好", PERSONA_ZH, ORG_ZH)
    assert "1999" not in invented.message and "kf@lanshan.example" not in invented.message


def test_checked_reply_never_refuses_the_assistant_route_and_keeps_the_rest():
    for question in ("Who are you?", "Hello!", "你是谁？", "What can you do?"):
        shown = checked_reply(question, "Nonsense 42.", [], ABSTAIN, PERSONA, ORG)
        assert shown.found and shown.status == "repaired"
        assert not shown.message.startswith((NOT_FOUND["en"], NOT_FOUND["zh"]))
        assert "42" not in shown.message and "Harbor Help" in shown.message
    # A document question with no passage is unchanged: its reply is not shown.
    other = checked_reply("How much is a pallet?", "It is 42 euros.", [], ABSTAIN, PERSONA, ORG)
    assert other.message == NOT_FOUND["en"] and other.status == "not_found"


def test_ask_introduces_the_assistant_with_a_tiny_model(tmp_path, tiny_model, one_thread):
    root = write_rag_project(tmp_path / "p")
    project = Project.open(root)
    embedder = fake_embedder()
    index_project(project, embedder)
    index = open_index(project, embedder)
    assistant = load_assistant(str(tiny_model))
    for question in ("Who are you?", "你好"):
        result = answer_with_citations(
            assistant, index, question, None, PERSONA, 8, organization=ORG
        )
        assert result.found and result.retrieved == [] and result.citations == []
        assert "Harbor Help" in result.message
        assert not result.message.startswith((NOT_FOUND["en"], NOT_FOUND["zh"]))


def test_the_organization_is_the_configs_name_unless_nobody_chose_one(tmp_path):
    project = Project.open(write_rag_project(tmp_path / "p"))
    named = project.config.model_copy(update={"name": " Lindqvist Shipping "})
    unset = project.config.model_copy(update={"name": "My organization"})
    assert Project(project.root, named).organization == "Lindqvist Shipping"
    assert Project(project.root, unset).organization == ""
