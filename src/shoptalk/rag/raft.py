"""Retrieval-aware training data (RAFT): questions paired with the passages they are read with.

    examples = raft_examples(qa_conversations, index, cfg.system_prompt, RaftSettings())
    dataset = raft_view(dataset, index, cfg.system_prompt, cfg.rag)   # in `shoptalk build`

The tuned model answers from retrieved text the way `answer_with_citations` asks
it to, so it is trained on exactly that: for each one-turn QA conversation of the
dataset, the passages `select_for` gives its question (the few selected sentences,
in `passage_messages`' prompt), answered with the sentences of the known answer
those passages support, verbatim (values as written), each citing its passage `[n]`.
- Retrieval is blind to the question's own FAQ row (`rag.index_faq` indexes it;
  asked verbatim it answers itself): the model must read a document passage, as
  the abstention fit does (`rag.abstain_fit.own_split`). Only FAQ rows and their
  paraphrases have such a row: a document question (`doc_qa`, rule-based or a
  teacher's) reads the section its answer was copied from, even when that section
  is the answer word for word.
- An example is kept only when those supported sentences carry most of the answer
  (`_reply`): training a model to answer from passages that do not hold the answer,
  or to add what they do not say, teaches it to make values up.
- Refusals are trained on the same questions as answers, only with other
  passages (`_refusals`): every chunk holding much of the answer searched as if
  absent, as the abstention fit's unanswerable rows are. The question is the
  same, so "not in the documents" follows the passages, never the question's
  shape. Only passages the abstention rule lets through are used, either way:
  what it refuses is decided before any generation. Off by default
  (`rag.raft.refusal_ratio`): the default model learned to refuse when unsure.
- Questions routed away from the documents (`rag.voice.route`: the assistant
  itself) are answered closed book, and get no example.

Only chunks open to everyone are read by default: a tuned model answers every
caller, so it must not learn text that some groups may not read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from shoptalk import progress
from shoptalk.artifacts import DatasetArtifact, write_jsonl
from shoptalk.config import RaftSettings, RagSettings
from shoptalk.data.documents import content_id
from shoptalk.modeling.chat_format import for_request
from shoptalk.rag.abstain import words
from shoptalk.rag.abstain_fit import (
    NEAR,
    STATES,
    answer_weights,
    chunk_words,
    remembering,
    states,
    weighted_share,
)
from shoptalk.rag.answer import not_found_message, passage_messages, select_for
from shoptalk.rag.bm25 import language, terms
from shoptalk.rag.chunk import sentence_spans
from shoptalk.rag.citations import Context, best_support
from shoptalk.rag.retrieve import RagIndex
from shoptalk.rag.select import Passage
from shoptalk.rag.store import ids_hash
from shoptalk.rag.voice import route
from shoptalk.records import Conversation, Message

log = logging.getLogger(__name__)

# Bump when what an example holds changes: the view's name changes, so does the run's.
RAFT_VERSION = 4


def raft_examples(
    conversations: list[Conversation],
    index: RagIndex,
    system_prompt: str,
    settings: RaftSettings,
    groups: tuple[str, ...] | None = (),
) -> list[Conversation]:
    """One example per one-turn QA conversation whose selected passages support its answer,
    then `settings.refusal_ratio` as many refusals (`_refusals`) of the same questions.

    `groups`: () reads only chunks open to everyone; None every chunk.
    """
    rng = random.Random(settings.seed)
    readable = None if groups is None else list(groups)
    if settings.max_examples is not None:
        conversations = _one_per_answer(conversations)
        rng.shuffle(conversations)
    idf = index.abstention.idf
    rows = _faq_rows(index)
    examples: list[Conversation] = []
    answered: list[tuple[Conversation, str, str]] = []  # (conversation, question, answer)
    skipped: Counter[str] = Counter()
    # One retrieval and selection per question: hundreds of rows re-read the same sentences.
    with remembering(index):
        for conversation in progress.track(conversations, "input: selecting RAFT passages"):
            if settings.max_examples is not None and len(examples) == settings.max_examples:
                break
            pair = _question_answer(conversation)
            if pair is None or route(pair[0]) == "assistant":
                continue
            question, answer = pair
            faq_row = conversation.kind in FAQ_KINDS
            own = rows.get(answer.strip(), frozenset()) if faq_row else frozenset()
            selection = select_for(index, question, readable, excluded=own)
            if not selection.answerable:
                skipped["refused by the abstention rule"] += 1
                continue
            reply = _reply(answer, selection.passages, idf)
            if reply is None:
                skipped["passages do not support the answer"] += 1
                continue
            messages = passage_messages(question, selection.passages, system_prompt)
            examples.append(_conversation(conversation, messages, reply, "doc_qa"))
            answered.append((conversation, question, answer))
        wanted = round(len(examples) * settings.refusal_ratio)
        refusals = _refusals(answered, index, system_prompt, readable, rows, wanted)
    log.info(
        "raft: %d examples, %d refusals; skipped: %s", len(examples), len(refusals), dict(skipped)
    )
    return examples + refusals


def _refusals(
    answered: list[tuple[Conversation, str, str]],
    index: RagIndex,
    system_prompt: str,
    readable: list[str] | None,
    rows: dict[str, frozenset[str]],
    wanted: int,
) -> list[Conversation]:
    """Up to `wanted` answered questions, read again without the chunks that hold their
    answer, and answered with the "not in the documents" message the prompt names.

    Left out: every chunk holding NEAR of the answer's weighted words (and the FAQ row),
    as for the abstention fit's unanswerable rows (`abstain_fit.own_split`). Kept when the
    abstention rule still lets the model read what remains (passages it refuses never
    reach the model) and that does not state the answer: the on-topic passages that
    look like an answer, which the model itself must decline.
    """
    idf = index.abstention.idf
    chunks = index.stored.chunks
    held = list(zip([c.id for c in chunks], chunk_words(chunks), strict=True))
    refusals: list[Conversation] = []
    for conversation, question, answer in answered:
        if len(refusals) == wanted:
            break
        weight = answer_weights(answer, idf)
        near = frozenset(i for i, have in held if weighted_share(weight, have) >= NEAR)
        own = rows.get(answer.strip(), frozenset())
        selection = select_for(index, question, readable, excluded=near | own)
        if not selection.answerable or states(answer, selection.passages, idf):
            continue
        messages = passage_messages(question, selection.passages, system_prompt)
        reply = not_found_message(question)
        refusals.append(_conversation(conversation, messages, reply, "refusal"))
    return refusals


def _faq_rows(index: RagIndex) -> dict[str, frozenset[str]]:
    """Answer text -> the chunks that are that answer word for word: FAQ rows in the index
    (`rag.index_faq`), which the row's question and its paraphrases must not read."""
    rows: dict[str, set[str]] = {}
    for chunk in index.stored.chunks:
        rows.setdefault(chunk.text.strip(), set()).add(chunk.id)
    return {text: frozenset(ids) for text, ids in rows.items()}


def _reply(answer: str, passages: list[Passage], idf: dict[str, float]) -> str | None:
    """The sentences of `answer` the passages support, each citing its passage `[n]`.

    Support is the citation checker's (`citations.support`: the sentence's values, names
    and most of its words in one passage sentence, its subject not another's), so the
    reply says only what its passages say, its values as the answer writes them. None
    when those sentences carry under `STATES` of the answer's weighted words: passages
    that miss most of the answer do not answer its question.
    """
    chunks = [p.as_chunk() for p in passages]
    context = Context(chunks)
    kept = []
    for start, end in sentence_spans(answer):
        sentence = answer[start:end].strip()
        if len(terms(sentence)) < 2:
            kept.append((sentence, None))  # "Yes." claims nothing a passage could hold
        elif (found := best_support(sentence, chunks, context)) is not None:
            kept.append((sentence, chunks.index(found[0]) + 1))
    said = " ".join(sentence for sentence, n in kept if n is not None)
    if not said or weighted_share(answer_weights(answer, idf), set(words(said))) < STATES:
        return None
    chinese = language(answer) == "zh"
    space = "" if chinese else " "
    cited = [
        s if n is None else _END.sub(lambda m, n=n: f"{space}[{n}]{m.group()}", s, count=1)
        for s, n in kept
    ]
    return space.join(cited)


# A sentence's closing punctuation: the citation goes before it ("... 47 days [1].").
_END = re.compile(r"[.!?。！？…]*\s*$")


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
# Kinds whose answer is a FAQ row's: retrieval leaves that row out (`_faq_rows`).
FAQ_KINDS = ("faq", "paraphrase")


def view_key(index: RagIndex, rag: RagSettings, system_prompt: str) -> str:
    """What shapes the examples: the retrieval and selection settings, the indexed chunks, the
    abstention rule fitted on them and the system prompt the examples hold (its part before
    a question: `for_request`), so a changed document, rule or prompt makes another view."""
    h = hashlib.sha256(f"v{RAFT_VERSION}\n{ids_hash(index.stored.chunks)}\n".encode())
    h.update(for_request(system_prompt, "").encode())
    h.update(rag.shaping_dump().encode())
    rule = _rounded(index.rule.model_dump(mode="json"))
    h.update(json.dumps(rule, sort_keys=True).encode())
    return h.hexdigest()[:8]


def _rounded(value: Any) -> Any:
    """`value` with every float to 6 significant digits: a rule fitted from the same data
    on another machine differs in the 15th digit, and must name the same view."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def raft_view(
    dataset: DatasetArtifact, index: RagIndex, system_prompt: str, rag: RagSettings
) -> DatasetArtifact:
    """`<dataset>/raft-<key>/`: the dataset plus RAFT examples made from its QA rows.

    A view, like continued pretraining's: the dataset stays as built, and the
    view is named by what shaped its examples (`view_key`).
    """
    key = view_key(index, rag, system_prompt)
    view = dataset.path / f"raft-{key}"
    out = DatasetArtifact(path=view, hash=f"{dataset.hash}-raft-{key}")
    if not out.split_file("train").is_file():
        train = dataset.conversations("train")
        grounded = [c for c in train if c.kind in GROUNDED_KINDS]
        examples = raft_examples(grounded, index, system_prompt, rag.raft or RaftSettings())
        # One folder per process: data-parallel ranks build the same view at once.
        tmp = dataset.path / f".raft-{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path in dataset.view_files():
            if path.is_file():
                shutil.copyfile(path, tmp / path.name)
        # The training split is written last: its presence marks a complete view.
        write_jsonl(DatasetArtifact(path=tmp, hash="").split_file("train"), train + examples)
        publish(tmp, view, out.split_file("train"))
    return out


def publish(tmp: Path, view: Path, marker: Path) -> None:
    """Rename `tmp` to `view`, unless another rank published a complete view first.

    The rename is atomic, so a view holding `marker` is complete and is kept;
    a view without it was left by an older version and is replaced.
    """
    try:
        tmp.rename(view)
    except OSError:
        if marker.is_file():
            shutil.rmtree(tmp)
            return
        shutil.rmtree(view, ignore_errors=True)
        tmp.rename(view)
