"""Request and response bodies of the OpenAI-compatible API, with OpenAI's field names.

Limits live in the fields, so a bad request is a 400 naming the field before
any work starts. Unknown fields are ignored, as OpenAI's own server does, so
clients that send newer options keep working.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator


def unicode_text(text: str, where: str) -> str:
    """`text` if it is valid Unicode; a lone surrogate ("\\ud800" in JSON) is a client error."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where} holds a lone surrogate (not valid Unicode)") from err
    return text


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] = Field(description="Text, or OpenAI's list of content parts")

    @field_validator("content")
    @classmethod
    def _text_parts_are_strings(cls, content: str | list[dict]) -> str | list[dict]:
        for i, part in enumerate([] if isinstance(content, str) else content):
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"content[{i}].text must be a string")
        unicode_text(content if isinstance(content, str) else "", "content")
        for i, part in enumerate([] if isinstance(content, str) else content):
            unicode_text(part.get("text") or "", f"content[{i}].text")
        return content

    def text(self) -> str:
        """Text parts joined; images and audio are not supported by text models."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    """What both chat and text completions accept."""

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=8)
    # A seed the sampler can take (64 bits), not any integer JSON can spell.
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s]

    @model_validator(mode="after")
    def _at_most_four_stops(self) -> SamplingFields:
        if len(self.stop_strings()) > 4:
            raise ValueError("stop: at most 4 sequences")
        return self


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    rag: bool | None = Field(
        None,
        description="shoptalk extension: answer from the project's documents, with checked "
        "citations in the response (openai package: extra_body={'rag': True}); unset: as the "
        "build promoted the model's name (eval.promote), false to opt out",
    )

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


NonEmpty = Annotated[str, Field(min_length=1)]


class CompletionRequest(SamplingFields):
    prompt: NonEmpty | Annotated[list[str], Field(min_length=1)] = Field(
        description="A prompt or a list of prompts (none empty)"
    )
    echo: bool = False

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    @model_validator(mode="after")
    def _unicode_prompts(self) -> CompletionRequest:
        for prompt in self.prompts():
            unicode_text(prompt, "prompt")
        return self


class EmbeddingRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200)
    input: NonEmpty | Annotated[list[str], Field(min_length=1)] = Field(
        description="Text or texts to embed (not none)"
    )
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(None, max_length=256)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input

    @model_validator(mode="after")
    def _unicode_input(self) -> EmbeddingRequest:
        for text in self.texts():
            unicode_text(text, "input")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


def usage(prompt_tokens: int, completion_tokens: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


FinishReason = Literal["stop", "length"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    # shoptalk extension, with `rag: true`: where the first choice's facts come from,
    # and whether its reply was verified, repaired or not found (rag/verify.py).
    citations: list[dict] | None = None
    dropped_citations: int | None = None
    verification: dict | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    citations: list[dict] | None = None
    dropped_citations: int | None = None
    verification: dict | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "shoptalk"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
