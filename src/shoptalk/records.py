"""The canonical records that cross stage borders (see DESIGN.md).

Every source format becomes one of these. `source` always points back to where
a record came from (`file:line` or `file#heading`), so errors and citations can
name it; a question keeps its `file` and `line` for the same reason.
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


# A question of an eval suite; the kind is told by its keys (see data/questions.py).
SuiteKind = Literal["domain", "unanswerable", "style"]


class _Question(BaseModel, extra="allow"):
    file: str = ""
    line: int = 0

    @property
    def prompt_text(self) -> str:
        """What is sent to the model as the user message."""
        raise NotImplementedError


class DomainQuestion(_Question):
    question: str
    answer: str | None = None
    must_include: list[str]
    source: str | None = None

    @property
    def prompt_text(self) -> str:
        return self.question


class UnanswerableQuestion(_Question):
    question: str
    expect: Literal["refusal"] = "refusal"

    @property
    def prompt_text(self) -> str:
        return self.question


class StyleQuestion(_Question):
    prompt: str
    must_include: list[str] = []
    must_not_include: list[str] = []
    regex: list[str] = []

    @property
    def prompt_text(self) -> str:
        return self.prompt


Question = DomainQuestion | UnanswerableQuestion | StyleQuestion
