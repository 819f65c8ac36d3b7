"""Server-sent events in OpenAI's streaming format: chunks sharing one id, then `[DONE]`.

An error after the stream has started cannot change the HTTP status any more;
it is sent as an event carrying the usual error envelope, as OpenAI does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from shoptalk.serve import schemas
from shoptalk.serve.engine import Delta
from shoptalk.serve.errors import ApiError


class Chunks:
    """Server-sent chat or text completion chunks sharing one id."""

    def __init__(self, route: str, model: str) -> None:
        self.route, self.model = route, model
        self.id = schemas.new_id("chatcmpl" if route == "chat" else "cmpl")
        self.created = int(time.time())
        self.started: set[int] = set()

    def delta(self, delta: Delta) -> str:
        if self.route != "chat":
            choice = schemas.TextChoice(
                index=delta.index, text=delta.text, finish_reason=delta.finish_reason
            )
            return self.event(schemas.Completion(id=self.id, model=self.model, choices=[choice]))
        role = None if delta.index in self.started else "assistant"
        self.started.add(delta.index)
        choice = schemas.ChunkChoice(
            index=delta.index,
            delta=schemas.ChunkDelta(role=role, content=delta.text),
            finish_reason=delta.finish_reason,
        )
        return self.event(self.chunk([choice]))

    def usage(self, usage: schemas.Usage) -> str:
        if self.route != "chat":
            return self.event(
                schemas.Completion(id=self.id, model=self.model, choices=[], usage=usage)
            )
        return self.event(self.chunk([], usage))

    def chunk(self, choices: list, usage: schemas.Usage | None = None) -> Any:
        return schemas.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    @staticmethod
    def event(model: Any) -> str:
        return f"data: {model.model_dump_json(exclude_none=False)}\n\n"


def sse_error(exc: ApiError) -> str:
    return f"data: {json.dumps(exc.body())}\n\n"
