"""The scorecard's retrieval modes: what each question reads, and how its answers are checked.

    grounded = grounded_prompts(project, index, suites)   # once, for both models
    replies, claims = verified_replies(grounded[suite], texts)

Base+RAG and tuned+RAG read the same selected sentences (`rag.select`) with
the prompt `rag.answer` sends, when the abstention rule finds that they answer
(`rag.answer.select_for`, as `shoptalk ask` and the API decide; otherwise the
reply is "not in the documents" and no model is asked); their answers are
verified and repaired as `shoptalk ask` shows them (`rag.verify`), and the
repaired text is what is scored. Every mode also counts its *unsupported claims before repair*: the
share of answers holding a value (number, code, e-mail, name) that the
question's passages do not hold, the closed-book modes included (against the
passages their question retrieves), and the RAG modes count the answers repaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import Scorecard

if TYPE_CHECKING:
    from shoptalk.modeling.embed import Embedder
    from shoptalk.project import Project
    from shoptalk.rag.abstain import Abstention
    from shoptalk.rag.retrieve import RagIndex
    from shoptalk.rag.select import Passage

UNSUPPORTED = "unsupported_claims"
REPAIRED = "repaired"


@dataclass
class Grounded:
    """One question with retrieval: the passages and messages, or the reply when they do not answer."""

    question: str
    passages: list[Passage]
    messages: list[dict] | None  # None: the passages do not answer (rag.answer.select_for)
    abstention: Abstention  # the index's: repairs decide as the model was asked
    reply: str = ""
    verify: bool = True  # False: a question about the assistant, answered closed book

    def sources(self) -> list[str] | None:
        """What the answer's numbers must come from (`modeling.copy_numbers`), as `ask` asks."""
        from shoptalk.rag.answer import passage_sources

        return passage_sources(self.passages, self.question) if self.verify else None


def grounded_prompts(
    project: Project, index: RagIndex, suites: list[Suite]
) -> dict[str, list[Grounded]]:
    """Retrieval and sentence selection for each question of `suites`, built once for both models."""
    from shoptalk.rag.answer import passage_messages, refusal, select_for
    from shoptalk.rag.voice import closed_book_messages, route

    abstention = index.abstention
    out: dict[str, list[Grounded]] = {}
    for suite in suites:
        items = []
        for question in progress.track(suite.questions, f"eval: retrieving for {suite.name}"):
            text = question.prompt_text
            if route(text) == "assistant":  # as `ask` answers it: closed book (rag.voice)
                messages = closed_book_messages(text, project.system_prompt)
                items.append(Grounded(text, [], messages, abstention, verify=False))
                continue
            selection = select_for(index, text, None)
            if selection.answerable:
                messages = passage_messages(text, selection.passages, project.system_prompt)
                items.append(Grounded(text, selection.passages, messages, abstention))
            else:
                reply = refusal(selection).message
                items.append(Grounded(text, selection.passages, None, abstention, reply))
        out[suite.name] = items
    return out


def verified_replies(
    items: list[Grounded],
    texts: list[str],
    style: dict | None = None,
    persona: str = "",
    organization: str = "",
    embedder: Embedder | None = None,
    refusal: str = "",
) -> tuple[list[str], dict[str, list[float]]]:
    """The replies shown (verified, repaired or not found, drafts held to the `style` rules,
    "not found" in the organization's words `refusal` when it has its own) and, per answer,
    the claim flags.

    `texts` are the generated answers of the items that have messages, in order; a
    question about the assistant is shown as far as the system prompt `persona` supports
    it, else as the assistant's introduction from it and `organization` (the config's
    `name`; `rag.persona.self_reply`), as `ask` and the API show it.
    """
    from shoptalk.rag.answer import checked_reply
    from shoptalk.rag.verify import in_own_words
    from shoptalk.rag.voice import follow_style, verify_reply

    replies: list[str] = []
    flags: dict[str, list[float]] = {UNSUPPORTED: [], REPAIRED: []}
    generated = iter(texts)
    for item in items:
        if item.messages is None:
            replies.append(in_own_words(item.reply, item.question, refusal))
            flags[UNSUPPORTED].append(0.0)
            flags[REPAIRED].append(0.0)
            continue
        if not item.verify:
            own = checked_reply(
                item.question, next(generated), [], item.abstention, persona, organization
            )
            replies.append(in_own_words(own.message, item.question, refusal))
            flags[UNSUPPORTED].append(0.0)
            flags[REPAIRED].append(float(own.status == "repaired"))
            continue
        checked = verify_reply(
            item.question, next(generated), item.passages, item.abstention, persona
        )
        styled = follow_style(item.question, checked.message, style, embedder)
        replies.append(in_own_words(styled, item.question, refusal))
        flags[UNSUPPORTED].append(float(bool(checked.unsupported)))
        flags[REPAIRED].append(float(checked.status == "repaired"))
    return replies, flags


def closed_book_flags(items: list[Grounded], answers: list[str]) -> dict[str, list[float]]:
    """Per closed-book answer: does it state a value its question's passages do not hold?"""
    from shoptalk.rag.verify import unsupported_values

    return {
        UNSUPPORTED: [
            float(item.verify and bool(unsupported_values(answer, item.passages)))
            for item, answer in zip(items, answers, strict=True)
        ]
    }


def add_claim_metrics(
    card: Scorecard, flags: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]]
) -> None:
    """`flags[suite]` = (first model's, second model's) per-answer flags: means and change."""
    for suite, (first, second) in flags.items():
        scores = card.suites.get(suite)
        if scores is None:
            continue
        for metric, base in first.items():
            tuned = second[metric]
            if not base:
                continue
            scores.base[metric] = sum(base) / len(base)
            scores.tuned[metric] = sum(tuned) / len(tuned)
            scores.diff[metric] = list(bootstrap_diff(base, tuned))
