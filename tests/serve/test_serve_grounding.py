"""The API's grounded reply is checked as `ask` and the scorecard check it: verified against
the passages, and a draft held to the organization's style rules."""

from __future__ import annotations

from shoptalk.artifacts import write_json
from shoptalk.data.style import StyleRules
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, Abstention
from shoptalk.rag.select import Passage
from shoptalk.records import Chunk
from shoptalk.serve.app import create_app
from shoptalk.serve.grounding import Grounding, project_voice

from projects import write_ops_project

RULES = StyleRules(greeting="Hello {first name},", sign_off="Kind regards,\nThe Care Team")
DRAFT = "Draft a reply to this customer: 'How long do I have to file a claim? - Ana Ruiz'"


def test_a_verified_draft_is_shown_in_the_guides_frame() -> None:
    chunk = Chunk(id="c1", text="Claims must be filed within 30 days.", source="docs/claims.md")
    passage = Passage(text=chunk.text, chunk=chunk, score=1.0)
    grounding = Grounding(
        DRAFT,
        [passage],
        Abstention(DEFAULT_RULE, {}),
        "You are Ridge.",
        style=RULES.model_dump(),
    )
    checked = grounding.check("Claims must be filed within 30 days [1].")
    assert checked.status == "verified"
    assert checked.message.startswith("Hello Ana,")
    assert checked.message.endswith("Kind regards,\nThe Care Team")
    assert "within 30 days [1]" in checked.message


def test_a_refusal_is_said_in_the_organizations_own_words() -> None:
    chunk = Chunk(id="c1", text="Claims must be filed within 30 days.", source="docs/claims.md")
    passage = Passage(text=chunk.text, chunk=chunk, score=1.0)
    own = "Sorry, we don't have that on file."
    grounding = Grounding(
        "Who audits the accounts?",
        [passage],
        Abstention(DEFAULT_RULE, {}),
        "You are Ridge.",
        refusal=own,
    )
    refused = grounding.refused()
    assert refused.status == "not_found"
    assert refused.message == f"{own} (Searched: docs/claims.md.)"
    # A reply the passages do not support is refused in the same words.
    checked = grounding.check("I could not find this in the documents.")
    assert checked.status == "not_found" and checked.message.startswith(own)
    # A draft the documents do not support is for the adviser: in their words, unframed.
    draft = Grounding(
        DRAFT,
        [passage],
        Abstention(DEFAULT_RULE, {}),
        "You are Ridge.",
        style=RULES.model_dump(),
        refusal=own,
    ).check("I could not find this in the documents.")
    assert draft.message.startswith(own) and "Kind regards" not in draft.message


def test_the_server_reads_the_projects_style_rules_and_refusal(tmp_path, tiny_model) -> None:
    root = write_ops_project(tmp_path / "p", tiny_model)
    write_json(Project.open(root).style_file, RULES.model_dump())
    config = root / "shoptalk.yaml"
    own = "Sorry, we don't have that on file."
    config.write_text(config.read_text() + f"data:\n  refusal_answer: {own}\n")
    voice = project_voice(create_app(root))
    assert voice.style == RULES.model_dump()
    assert voice.refusal == own
    assert Project.open(root).config.data.own_refusal_answer == own
