"""The canonical records that cross stage borders (see DESIGN.md).

Every source format becomes one of these. `source` always points back to where
a record came from (`file:line` or `file#heading`), so errors and citations can
name it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]

# What a conversation is for; the data stage and the scorecard group by it.
Kind = Literal["faq", "chat", "doc_qa", "doc_text", "paraphrase", "refusal"]


class Message(BaseModel, extra="forbid"):
    role: Role
    content: str


class Conversation(BaseModel, extra="forbid"):
    id: str
    messages: list[Message]
    source: str
    kind: Kind = "chat"


class Chunk(BaseModel, extra="forbid"):
    id: str
    text: str
    source: str
    headings: list[str] = Field(default_factory=list)
    acl: list[str] = Field(default_factory=list)


class Preference(BaseModel, extra="forbid"):
    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str
