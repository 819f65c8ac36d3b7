"""Answers from the project's documents through the chat API (`"rag": true`).

An extension of OpenAI's request: `extra_body={"rag": True}` in the openai
package. The last user message is the question; what the caller's key may read
(its groups; admin keys read everything) is retrieved, its best sentences are
selected, and the model answers from them exactly as the scorecard's RAG modes
and `shoptalk ask` ask it (`rag.answer.passage_messages`; writing no number the
passages do not hold, `modeling.copy_numbers`, in the in-process engines). The reply is then
verified the same way (`rag.answer.checked_reply`): a value no passage holds is
never shown as fact, and the response carries the checked citations and the
verification beside the message. When the passages do not answer the question
(`rag.answer.select_for`: the abstention rule `ask` and the scorecard apply
too) the answer says so, naming what was searched, and the model is not asked.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from shoptalk.modeling.chat_format import with_system_dicts
from shoptalk.modeling.embed import Embedder
from shoptalk.rag.abstain import Abstention
from shoptalk.rag.answer import (
    RagAnswer,
    Selection,
    checked_reply,
    passage_messages,
    passage_sources,
    refusal,
    select_for,
)
from shoptalk.rag.retrieve import RagIndex
from shoptalk.rag.select import Passage
from shoptalk.rag.verify import in_own_words
from shoptalk.rag.voice import follow_style, route
from shoptalk.serve.auth import Principal, held_groups
from shoptalk.serve.errors import ApiError

_lock = threading.Lock()


@dataclass(frozen=True)
class Voice:
    """How the project `project_index` opened speaks: its name (`rag.persona`), its style
    rules (`data.style`) and its own "not in the documents" (`data.own_refusal_answer`)."""

    organization: str = ""
    style: dict = field(default_factory=dict)
    refusal: str = ""


def project_index(app: FastAPI, root: Path | None = None) -> RagIndex:
    """The retrieval index of the served project (or of the project at `root`), opened once."""
    with _lock:
        indexes = app.state.__dict__.setdefault("rag_indexes", {})
        index = indexes.get(root)
        if index is None:
            project_state = getattr(app.state, "project", None)
            if project_state is None:
                raise ApiError(
                    400, "This server has no project documents to retrieve from.", param="rag"
                )
            from shoptalk.errors import ShoptalkError
            from shoptalk.project import Project
            from shoptalk.rag.retrieve import open_index

            try:
                project = Project.open(root) if root else project_state.project()
                index = open_index(project)
            except ShoptalkError as exc:
                raise ApiError(
                    409, f"Retrieval is not ready: {exc}", code="no_index", param="rag"
                ) from exc
            indexes[root] = index
            voices = app.state.__dict__.setdefault("rag_voices", {})
            refusal = project.config.data.own_refusal_answer
            voices[root] = Voice(project.organization, project.style, refusal)
        return index


def project_voice(app: FastAPI, root: Path | None = None) -> Voice:
    """The `Voice` of the served project (or of the project at `root`)."""
    project_index(app, root)
    return app.state.__dict__.get("rag_voices", {}).get(root, Voice())


@dataclass
class Grounding:
    """What a reply is checked against: the question's passages (none: nothing relevant)."""

    question: str
    passages: list[Passage]
    abstention: Abstention
    persona: str
    organization: str = ""  # the config's `name`: how the assistant introduces itself
    copy_numbers: str = "tuned"  # the project's rag.copy_numbers
    style: dict = field(default_factory=dict)  # the style rules drafts are held to (rag.voice)
    embedder: Embedder | None = None  # tells a draft's situation (rag.voice.situation_for)
    refusal: str = ""  # the organization's "not in the documents" (data.own_refusal_answer)

    def check(self, text: str) -> RagAnswer:
        """The reply as `ask` and the scorecard show it: verified, and a draft in the guide's
        frame (`rag.voice.follow_style`)."""
        checked = checked_reply(
            self.question, text, self.passages, self.abstention, self.persona, self.organization
        )
        styled = follow_style(self.question, checked.message, self.style, self.embedder)
        checked.message = in_own_words(styled, self.question, self.refusal)
        return checked

    def sources(self) -> list[str] | None:
        """What the reply may take its numbers from (`modeling.copy_numbers`); None: any
        (a question about the assistant, answered from the system prompt; or
        `rag.copy_numbers: never`). Whether the model asked is held to them is the
        engine's to apply (`Params.numbers_for_base`)."""
        if not self.passages or self.copy_numbers == "never":
            return None
        return passage_sources(self.passages, self.question)

    def refused(self) -> RagAnswer:
        """The passages do not answer: "not in the documents", naming them; no model asked."""
        refused = refusal(Selection(self.question, self.passages, False))
        refused.message = in_own_words(refused.message, self.question, self.refusal)
        return refused


async def ground(
    app: FastAPI,
    principal: Principal,
    messages: list[dict[str, str]],
    system_prompt: str,
    root: Path | None = None,
) -> tuple[list[dict[str, str]] | None, Grounding]:
    """(the messages to ask, or None when the model need not be asked; what to check against).

    From the served project's documents, or those of the project at `root`.
    """
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise ApiError(400, "rag needs a user message to answer", param="messages")
    question = users[-1]["content"]
    history = [m for m in messages[: messages.index(users[-1])] if m["role"] != "system"]
    if route(question) == "assistant":  # who the assistant is: the system prompt, no document
        index = await asyncio.to_thread(project_index, app, root)
        voice = project_voice(app, root)
        # As training renders it: the config's prompt, no style rules (not a draft).
        persona = with_system_dicts([users[-1]], system_prompt)[:-1]
        grounding = Grounding(
            question,
            [],
            index.abstention,
            system_prompt,
            voice.organization,
            style=voice.style,
            embedder=index.embedder,
            refusal=voice.refusal,
        )
        return [*persona, *history, users[-1]], grounding
    groups = held_groups(principal)
    index = await asyncio.to_thread(project_index, app, root)
    selection = await asyncio.to_thread(select_for, index, question, groups)
    voice = project_voice(app, root)
    grounding = Grounding(
        question,
        selection.passages,
        index.abstention,
        system_prompt,
        copy_numbers=index.settings.copy_numbers,
        style=voice.style,
        embedder=index.embedder,
        refusal=voice.refusal,
    )
    if not selection.answerable:
        return None, grounding
    system, user = passage_messages(question, selection.passages, system_prompt)
    return [system, *history, user], grounding
