"""The served greedy answer is the scorecard's answer: same model, same prompt, same text.

The scorecard (`eval.run`) asks through `modeling.generate.answer`; the server
through its batching engine. If they drifted apart, a scorecard would vouch for
answers users never get.
"""

from __future__ import annotations

import pytest
import yaml
from openai import OpenAI

from shoptalk.artifacts import ABSTAIN_RULE
from shoptalk.eval.grounded import grounded_prompts
from shoptalk.eval.questions import Suite
from shoptalk.eval.run import answer_suites
from shoptalk.modeling.chat_format import with_system
from shoptalk.modeling.generate import answer, load_assistant
from shoptalk.pipeline import index_documents
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, save_rule
from shoptalk.rag.answer import NOT_FOUND, answer_with_citations, select_for
from shoptalk.rag.retrieve import open_index
from shoptalk.records import DomainQuestion, Message
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

from projects import write_project

QUESTIONS = [
    "How long is the claim window?",
    "Who manages the Oslo depot?",
    "How often do forklift drivers renew their licence?",
]
# Retrieval finds the forklift section, but it does not say: the abstention rule refuses.
UNANSWERED = "Is there a bonus for forklift drivers who work night shifts at weekends?"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def talker(tmp_path_factory, tiny_model):
    """The tiny model with its own random output layer: with tied embeddings it only
    repeats the prompt's last token (a newline), and every answer strips to ""."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("talker")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.tie_word_embeddings = False
    torch.manual_seed(1)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory, talker) -> Project:
    root = write_project(tmp_path_factory.mktemp("parity"), talker)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    # The fitted rule refuses only when asked to (off by default); every path must then read it.
    config.setdefault("rag", {}).setdefault("select", {})["refuse_on_coverage"] = True
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    index_documents(project)
    # A rule as a fit writes it beside the index (six FAQ rows are too few to fit one):
    # refuse below 40% of the question's weighted terms covered. Every path must read it.
    strict = DEFAULT_RULE.model_copy(update={"bias": -8.0})
    save_rule(strict, project.index / ABSTAIN_RULE)
    return project


@pytest.fixture(scope="module")
def client(project: Project):
    app = create_app(project.root)
    # An admin key reads every document, as the scorecard's retrieval does.
    secret = app.state.services.keys.create("owner", KeyLimits(scopes=["admin"])).secret
    with BackgroundServer(app) as url:
        yield OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)


def served(client: OpenAI, question: str, rag: bool) -> str:
    reply = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": question}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"rag": rag},
    )
    return reply.choices[0].message.content.strip()


def test_served_greedy_answers_are_the_scorecards(project: Project, client, talker):
    system = project.config.system_prompt
    prompts = [with_system([Message(role="user", content=q)], system) for q in QUESTIONS]
    scorecard = answer(load_assistant(str(talker), device="cpu"), prompts, MAX_TOKENS)
    assert [served(client, q, rag=False) for q in QUESTIONS] == scorecard
    assert any(scorecard), "a model that only stops at once would prove nothing"


def test_served_greedy_answers_with_retrieval_are_the_scorecards(project: Project, client, talker):
    # The scorecard's '+rag' mode itself: its retrieval, selected passages, prompt and
    # verification (eval.run.answer_suites), against the API's `rag: true`.
    questions = [DomainQuestion(question=q, must_include=["x"]) for q in QUESTIONS]
    suite = Suite(name="parity", kind="domain", questions=questions, path="")
    grounded = grounded_prompts(project, open_index(project), [suite])
    assert any(g.messages for g in grounded["parity"]), "retrieval must find something"
    assistant = load_assistant(str(talker), device="cpu")
    project.config.eval.max_new_tokens = MAX_TOKENS
    answers, _ = answer_suites(project, assistant, [suite], grounded)
    assert [served(client, q, rag=True) for q in QUESTIONS] == answers["parity+rag"]


def test_passages_that_do_not_answer_are_refused_alike_and_no_model_is_asked(
    project: Project, client
):
    index = open_index(project)
    selection = select_for(index, UNANSWERED, None)
    assert selection.passages and not selection.answerable, "retrieved, and refused by the rule"
    suite = Suite(
        name="parity",
        kind="domain",
        questions=[DomainQuestion(question=UNANSWERED, must_include=["x"])],
        path="",
    )
    scorecard = grounded_prompts(project, index, [suite])["parity"][0]
    assert scorecard.messages is None  # no prompt: neither model is asked
    asked = answer_with_citations(None, index, UNANSWERED, None)  # None: a call would fail
    served = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": UNANSWERED}],
        max_tokens=MAX_TOKENS,
        extra_body={"rag": True},
    )
    assert served.usage.completion_tokens == 0
    assert served.choices[0].message.content == asked.message == scorecard.reply
    assert asked.message.startswith(NOT_FOUND["en"])
    assert selection.passages[0].source in asked.message  # what was searched is named
    assert served.model_extra["verification"]["status"] == asked.status == "not_found"


def test_a_question_about_the_assistant_is_shown_alike_and_never_refused(
    project: Project, client, talker
):
    # The talker's reply is empty: every path shows the assistant's introduction instead.
    questions = ["Who are you?", "你好"]
    suite = Suite(
        name="parity",
        kind="domain",
        questions=[DomainQuestion(question=q, must_include=["x"]) for q in questions],
        path="",
    )
    index = open_index(project)
    grounded = grounded_prompts(project, index, [suite])
    assert all(g.messages and not g.passages for g in grounded["parity"])
    assistant = load_assistant(str(talker), device="cpu")
    project.config.eval.max_new_tokens = MAX_TOKENS
    scorecard = answer_suites(project, assistant, [suite], grounded)[0]["parity+rag"]
    asked = [
        answer_with_citations(
            assistant,
            index,
            q,
            None,
            project.system_prompt,
            MAX_TOKENS,
            organization=project.organization,
        ).message
        for q in questions
    ]
    assert [served(client, q, rag=True) for q in questions] == scorecard == asked
    assert all(project.organization in reply for reply in scorecard)
    assert not any(reply.startswith((NOT_FOUND["en"], NOT_FOUND["zh"])) for reply in scorecard)
