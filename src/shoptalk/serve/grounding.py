"""Answers from the project's documents through the chat API (`"rag": true`).

An extension of OpenAI's request: `extra_body={"rag": True}` in the openai
package. The last user message is the question; what the caller's key may read
(its groups; admin keys read everything) is retrieved, the model answers from
the numbered chunks, and the response carries the checked citations beside
the message (`citations`, `dropped_citations`). When nothing relevant is
found the answer says so and the model is not asked.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fastapi import FastAPI

from shoptalk.rag.answer import rag_messages
from shoptalk.rag.retrieve import RagIndex, Retrieval
from shoptalk.serve.auth import Principal, held_groups
from shoptalk.serve.errors import ApiError

_lock = threading.Lock()


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
                index = open_index(Project.open(root) if root else project_state.project())
            except ShoptalkError as exc:
                raise ApiError(
                    409, f"Retrieval is not ready: {exc}", code="no_index", param="rag"
                ) from exc
            indexes[root] = index
        return index


async def ground(
    app: FastAPI,
    principal: Principal,
    messages: list[dict[str, str]],
    system_prompt: str,
    root: Path | None = None,
) -> tuple[list[dict[str, str]] | None, Retrieval, str]:
    """(messages with the retrieved chunks, or None if nothing relevant; the retrieval; the question).

    From the served project's documents, or those of the project at `root`.
    """
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise ApiError(400, "rag needs a user message to answer", param="messages")
    question = users[-1]["content"]
    groups = held_groups(principal)
    index = await asyncio.to_thread(project_index, app, root)
    retrieval = await asyncio.to_thread(index.search, question, groups, None)
    if not retrieval.found or not retrieval.hits:
        return None, retrieval, question
    system, user = rag_messages(question, retrieval, system_prompt)
    history = [m for m in messages[: messages.index(users[-1])] if m["role"] != "system"]
    return [system, *history, user], retrieval, question
