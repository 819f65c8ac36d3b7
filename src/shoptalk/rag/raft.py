"""Retrieval-aware training data (RAFT): questions paired with retrieved chunks.

    examples = raft_examples(qa_conversations, index, cfg.system_prompt, RaftSettings())
    dataset = raft_view(dataset, index, cfg.system_prompt, cfg.rag)   # in `shoptalk build`

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

import hashlib
import random
import shutil

from shoptalk import progress
from shoptalk.artifacts import DatasetArtifact, write_jsonl
from shoptalk.config import RaftSettings, RagSettings
from shoptalk.data.documents import content_id
from shoptalk.rag.answer import not_found_message, rag_messages
from shoptalk.rag.citations import lexical_support
from shoptalk.rag.retrieve import RagIndex, Retrieval
from shoptalk.records import Conversation, Message


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
    if settings.max_examples is not None:
        conversations = _one_per_answer(conversations)
        rng.shuffle(conversations)
    examples: list[Conversation] = []
    # One retrieval per question: thousands of FAQ rows and chats take minutes on a CPU.
    for conversation in progress.track(conversations, "input: retrieving for RAFT examples"):
        if settings.max_examples is not None and len(examples) == settings.max_examples:
            break
        pair = _question_answer(conversation)
        if pair is None:
            continue
        question, answer = pair
        hits = index.search(question, readable, settings.candidates).hits
        oracles = [h for h in hits if lexical_support(answer, h.chunk)]
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


def _one_per_answer(conversations: list[Conversation]) -> list[Conversation]:
    """The first conversation of each final answer: the FAQ and its paraphrases share one."""
    first: dict[str, Conversation] = {}
    for conversation in conversations:
        first.setdefault(conversation.messages[-1].content, conversation)
    return list(first.values())


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


# Kinds of training conversations whose answers may be in the documents.
GROUNDED_KINDS = ("faq", "paraphrase", "doc_qa")


def raft_view(
    dataset: DatasetArtifact, index: RagIndex, system_prompt: str, rag: RagSettings
) -> DatasetArtifact:
    """`<dataset>/raft-<settings>/`: the dataset plus RAFT examples made from its QA rows.

    A view, like continued pretraining's: the dataset stays as built, and the
    view is named by the retrieval settings that shaped its examples.
    """
    # Sentence selection does not shape RAFT's prompts: left out, so existing views keep their name.
    key = hashlib.sha256(rag.model_dump_json(exclude={"select"}).encode()).hexdigest()[:8]
    view = dataset.path / f"raft-{key}"
    out = DatasetArtifact(path=view, hash=f"{dataset.hash}-raft-{key}")
    if not out.split_file("train").is_file():
        train = dataset.conversations("train")
        grounded = [c for c in train if c.kind in GROUNDED_KINDS]
        examples = raft_examples(grounded, index, system_prompt, rag.raft or RaftSettings())
        tmp = dataset.path / f".raft-{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path in dataset.view_files():
            if path.is_file():
                shutil.copyfile(path, tmp / path.name)
        # The training split is written last: its presence marks a complete view.
        write_jsonl(DatasetArtifact(path=tmp, hash="").split_file("train"), train + examples)
        shutil.rmtree(view, ignore_errors=True)
        tmp.rename(view)
    return out
