"""Retrieval-aware training data (RAFT): questions paired with retrieved chunks.

    examples = raft_examples(qa_conversations, index, cfg.system_prompt, RaftSettings())

The base model barely uses retrieved text, so the tuned one is taught to with
conversations in exactly the prompt `answer_with_citations` builds:
- the chunk that holds the answer ("oracle") among distractors retrieved for
  the same question, answered with the known answer and a citation `[n]`;
- sometimes distractors only, answered "I could not find this in the
  documents" (in the question's language), so the model learns to refuse.
The oracle is the retrieved chunk that supports the answer (the citation
checker's test), so FAQ rows whose answer no document holds get no example.
Distractors are the question's own top hits: near misses, the hard kind.

Only chunks open to everyone are used by default: a tuned model answers every
caller, so it must not learn text that some groups may not read.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, Field

from shoptalk.data.documents import content_id
from shoptalk.rag.answer import not_found_message, rag_messages
from shoptalk.rag.citations import support
from shoptalk.rag.retrieve import RagIndex, Retrieval
from shoptalk.records import Conversation, Message


class RaftSettings(BaseModel, extra="forbid"):
    chunks: int = Field(3, ge=1, le=10, description="Chunks in each training prompt")
    oracle_ratio: float = Field(
        0.8, ge=0.0, le=1.0, description="Share of examples whose chunks hold the answer"
    )
    candidates: int = Field(10, ge=2, description="Hits retrieved per question to pick from")
    seed: int = Field(0, description="Seed for which examples get the oracle and their order")


def raft_examples(
    conversations: list[Conversation],
    index: RagIndex,
    system_prompt: str,
    settings: RaftSettings,
    groups: tuple[str, ...] | None = (),
) -> list[Conversation]:
    """One RAFT example per one-turn QA conversation whose answer a document holds.

    `groups`: () uses only chunks open to everyone; None every chunk.
    """
    rng = random.Random(settings.seed)
    readable = None if groups is None else list(groups)
    examples = []
    for conversation in conversations:
        pair = _question_answer(conversation)
        if pair is None:
            continue
        question, answer = pair
        hits = index.search(question, readable, settings.candidates).hits
        oracles = [h for h in hits if support(answer, h.chunk)]
        if not oracles:
            continue
        distractors = [h for h in hits if h not in oracles]
        if rng.random() < settings.oracle_ratio:
            chosen = [oracles[0], *distractors[: settings.chunks - 1]]
            rng.shuffle(chosen)
            reply, kind = f"{answer} [{chosen.index(oracles[0]) + 1}]", "doc_qa"
        else:
            chosen, reply, kind = (
                distractors[: settings.chunks],
                not_found_message(question),
                "refusal",
            )
        if not chosen:
            continue
        messages = rag_messages(question, Retrieval(chosen, True), system_prompt)
        examples.append(_conversation(conversation, messages, reply, kind))
    return examples


def _question_answer(conversation: Conversation) -> tuple[str, str] | None:
    turns = [m for m in conversation.messages if m.role != "system"]
    if len(turns) != 2 or [m.role for m in turns] != ["user", "assistant"]:
        return None
    return turns[0].content, turns[1].content


def _conversation(
    original: Conversation, messages: list[dict[str, str]], reply: str, kind: str
) -> Conversation:
    records = [Message(role=m["role"], content=m["content"]) for m in messages]
    return Conversation(
        id=content_id("raft", original.id, messages[-1]["content"], reply),
        messages=[*records, Message(role="assistant", content=reply)],
        source=original.source,
        kind=kind,
    )
