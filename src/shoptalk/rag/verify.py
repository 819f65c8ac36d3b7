"""Verify a generated answer against the passages it was given, and repair it when it fails.

    checked = verify_answer(question, generated, passages, settings.select)
    checked.status     # "verified", "repaired" or "not_found"
    checked.message    # what the user is shown
    checked.unsupported  # the generated answer's values no passage holds (before repair)

A 135M-parameter model cannot be trusted to copy a value; the passage can. So:
- every number, code, e-mail and name of the answer (`citations.numbers_in`,
  `citations.named_values`: normalized, `75 天` = `75天`, `£1,200` = `£1200`,
  `1.2万` = `12000`; a value counts only whole: "5" is not held by "15")
  must occur in the passage the sentence cites ([n]); a sentence without a
  citation must have all its values in one of the passages given (one, so a
  value from one row cannot be pinned on the subject of another); a sentence
  whose values are all in another passage than the one it cites cites that one
  instead (`recited`: the value is the passage's, the citation was wrong);
- an answer with no value must still say something a passage holds
  (`citations.support`): a reply that shares nothing with the passages is not
  an answer from them.
An answer that fails is never shown as fact. It is replaced by the best
selected sentence, quoted verbatim with its citation, when the abstention rule
(`rag.abstain`, the decision every answer path takes before generation) finds
that the passages answer the question; otherwise by the "not in the documents"
message with the sources that were searched. An answer that
declines is kept as the "not in the documents" message, sources shown too.

The system prompt (the persona: the assistant's name, its organization) is a
source too, never cited: "I'm Kestrel Assist, the assistant of Kestrel
Logistics" answers "who are you?" from it. A question no document answers is
still answered when the model's reply says only what the persona says
(`about_itself`): greetings and questions about the assistant are not
knowledge questions, and a value the persona does not hold still fails. Such a
reply that says more is cut to what the persona supports, or replaced by the
assistant's introduction (`rag.persona`), never by "not in the documents".
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from shoptalk.rag import answer_type
from shoptalk.rag.abstain import Abstention, words
from shoptalk.rag.bm25 import language, terms
from shoptalk.rag.chunk import around, sentence_spans
from shoptalk.rag.citations import contains, named_values, normalized, numbers_in, support
from shoptalk.rag.select import Passage
from shoptalk.records import Chunk

NOT_FOUND = {
    "en": "I could not find this in the documents.",
    "zh": "我在文档中没有找到这方面的信息。",
}
# [1], [1, 2], [1][2], 【1】
_MARKER = re.compile(r"[\[【]\s*(\d+(?:\s*[,，]\s*\d+)*)\s*[\]】]")
# How a reply says the passages do not answer (the message it was told to use, or near it).
_DECLINES = re.compile(
    # "I could not find this", not "if we cannot find a suitable time": what is not found is
    # the answer, information about it, or "this".
    r"(?:could ?n[o']t|could not|can[o']t|can't|can ?not) find (?:this|that|it|any|anything"
    r"|the answer|information|details)\b"
    r"|not (?:in|mentioned in|found in) the (?:documents|passages)"
    r"|(?:documents|passages) do ?n[o']t (?:say|contain|mention)"
    # Not the tuned model's "I don't have that information" (the default refusal answer it
    # is trained on): it says so to answerable questions too, and the repair's quote then
    # holds the fact (held-out organization: 7 of 60 answerable, 1 of 15 unanswerable).
    r"|没有找到|没有这方面|未找到|没有提到"
    # The Chinese ways the scorecard also counts as declining (eval.metrics.is_refusal):
    # first person or about the documents, as "不知道" alone opens helpful answers.
    r"|我不知道|我不清楚|无法回答|资料中没有|文档中没有|没有相关的?信息|暂无相关信息|未提及",
    re.IGNORECASE,
)

# A sentence about the passages, not from them: "The passage is about a leak in a
# residential meter.", "The passage is quoted data from the organization's files" (a small
# model echoing its prompt), "[1] (docs/handbook.md#Overtime) ..." (its copy of the list).
_META = re.compile(
    r"\b(?:the|this|these)\s+(?:passages?|text)\s+(?:is|are|was|provides?|mentions?"
    r"|describes?|discuss(?:es)?|talks?|focus(?:es)?|quot\w*)\b"
    r"|\[\d+\]\s*\([^)\s]*[/#:][^)]*\)",
    re.IGNORECASE,
)
# A sentence that ends as a question (after its markers are taken out).
_ASKS = re.compile(r"[?？]\W*$")

Status = Literal["verified", "repaired", "not_found"]


class Verification(BaseModel):
    status: Status = Field(
        description="'verified': every value is in a cited or given passage; 'repaired': it "
        "was not, and the best passage is quoted instead (a draft's sentences stating it are "
        "dropped, when the rest still tells the request or a passage); 'not_found': the answer "
        "is that the documents do not say"
    )
    message: str = Field(description="What is shown: the answer, the quote, or not found")
    generated: str = Field(description="The model's own answer, before any repair")
    unsupported: list[str] = Field(
        default_factory=list, description="Values of the generated answer no passage holds"
    )
    quote: str | None = Field(None, description="The passage that supports the message, verbatim")
    source: str | None = Field(None, description="Where the quote comes from")
    passage: int | None = Field(None, description="The [n] of the quote among the passages")


def not_found_message(question: str, sources: list[str] | None = None) -> str:
    """The "not in the documents" message, in the question's language, with what was searched."""
    lang = language(question)
    message = NOT_FOUND[lang]
    shown = list(dict.fromkeys(sources or []))
    if not shown:
        return message
    if lang == "zh":
        return f"{message}（已查阅：{'、'.join(shown)}）"
    return f"{message} (Searched: {'; '.join(shown)}.)"


def in_own_words(message: str, question: str, own: str) -> str:
    """`message` with its "not in the documents" said in the organization's own words (`own`:
    `data.own_refusal_answer`, "" when they chose none) when those are in the question's
    language; what was searched still follows. Any other message as it is."""
    lang = language(question)
    if not own.strip() or language(own) != lang or not message.startswith(NOT_FOUND[lang]):
        return message
    return own.strip() + message[len(NOT_FOUND[lang]) :]


def claims(answer: str) -> list[tuple[str, list[int]]]:
    """Each sentence of `answer` without its [n] markers, and the passages it cites.

    A sentence of markers alone ("... 47 days. [1]") cites the sentence before it.
    """
    out: list[tuple[str, list[int]]] = []
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        cited = _cited(sentence)
        claim = _MARKER.sub(" ", sentence).strip()
        if not terms(claim) and out:
            out[-1] = (out[-1][0], out[-1][1] + cited)
        elif terms(claim):
            out.append((claim, cited))
    return out


def _cited(sentence: str) -> list[int]:
    """The passage numbers `sentence`'s markers cite, in order."""
    return [int(n) for m in _MARKER.finditer(sentence) for n in re.split(r"[,，]", m.group(1))]


def _pool(cited: list[int], passages: list[Passage]) -> list[Passage]:
    """The cited passages that exist, each once."""
    return [passages[n - 1] for n in dict.fromkeys(cited) if 1 <= n <= len(passages)]


def values(claim: str) -> set[str]:
    """The numbers, codes, e-mails and names of `claim`, normalized."""
    return numbers_in(claim) | named_values(claim)


def holds(value: str, passage: Passage) -> bool:
    """`value` (from `values`) is in the passage or the heading it was shown under."""
    text = f"{passage.heading}\n{passage.text}"
    return value in numbers_in(text) or contains(value, normalized(text).lower())


def recited(answer: str, passages: list[Passage]) -> str:
    """`answer` with each sentence citing the passage that holds its values, where the
    passages it cites do not and another one holds them all (the best-ranked such one).

    A small model cites "[1]" whatever it read: on the English example 23 of 30 values
    its answers were refused for stood in another passage than the cited one. The value
    is the passage's; the citation was wrong, so the citation is corrected, and a value
    no passage holds still fails (`unsupported_values`).
    """
    pieces: list[str] = []
    last = 0
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        cited = _cited(sentence)
        wanted = values(_MARKER.sub(" ", sentence))
        pool = _pool(cited, passages)
        if cited and wanted and not all(any(holds(v, p) for p in pool) for v in wanted):
            holder = next(
                (n for n, p in enumerate(passages, 1) if all(holds(v, p) for v in wanted)), None
            )
            if holder is not None:
                sentence = _cite_only(sentence, holder)
        pieces.append(answer[last:start] + sentence)
        last = end
    return "".join(pieces) + answer[last:]


def _cite_only(sentence: str, number: int) -> str:
    """`sentence` with its first marker citing `number` ([n] or 【n】 as written), the rest gone."""
    seen = False

    def one(match: re.Match[str]) -> str:
        nonlocal seen
        if seen:
            return ""  # with the space before it
        seen = True
        space, marker = match.group(1), match.group(2)
        return space + (f"【{number}】" if marker.startswith("【") else f"[{number}]")

    return _SPACED_MARKER.sub(one, sentence)


_SPACED_MARKER = re.compile(rf"(\s*)({_MARKER.pattern})")


def unsupported_values(answer: str, passages: list[Passage], given: str = "") -> list[str]:
    """The values of `answer` not held where they must be (see the module's doc); those the
    request states itself (`given`: a draft's customer message, its case number) are no claim."""
    stated = values(given) if given else set()
    missing: list[str] = []
    for claim, cited in claims(answer):
        wanted = values(claim) - stated
        if not wanted:
            continue
        pool = _pool(cited, passages)
        if pool:  # cited: the cited passages together must hold them
            missing += sorted(v for v in wanted if not any(holds(v, p) for p in pool))
        elif not any(all(holds(v, p) for v in wanted) for p in passages):
            best = max(passages, key=lambda p: sum(holds(v, p) for v in wanted), default=None)
            missing += sorted(v for v in wanted if best is None or not holds(v, best))
    return list(dict.fromkeys(missing))


def grounded(answer: str, passages: list[Passage], given: str = "", question: str = "") -> bool:
    """Some sentence of `answer` is supported by a passage (values and most words), the
    values the request states itself (`given`) aside.

    A question is no claim: a model that echoes the question ("旗舰店的品茗室怎么收费？")
    shares most of its words with the passage that answers it, and says nothing. Nor is a
    sentence of numbers alone ("1. 1. 1."): any passage holding the number "supports" it;
    nor one that restates `question` ("Yes, the dental plan covers braces for adults" to
    "Does the dental plan cover braces for adults?"): it adds nothing a passage could hold;
    nor one about the passages ("The passage is about ...", a copy of their source list).
    """
    chunks = [p.as_chunk() for p in passages]
    stated = values(given) if given else set()
    return any(
        support(_without(claim, stated), chunk)
        for claim, _ in claims(answer)
        if not _ASKS.search(claim)
        and not _META.search(claim)
        and _has_words(claim)
        and _adds(claim, question)
        for chunk in chunks
    )


def _adds(claim: str, question: str) -> bool:
    """`claim` says something `question` does not: a value, or two words of its own."""
    new = set(words(claim)) - set(words(question))
    return any(ch.isdigit() for word in new for ch in word) or len(new) >= 2


def _has_words(claim: str) -> bool:
    """`claim` has a term with a letter (a word or a code), not only numbers."""
    return any(ch.isalpha() for term in terms(claim) for ch in term)


def _without(claim: str, stated: set[str]) -> str:
    """`claim` with the `stated` values taken out where written as they are."""
    for value in stated:
        claim = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", " ", claim, flags=re.IGNORECASE)
    return claim


def declines(answer: str) -> bool:
    """`answer` says the passages do not hold the answer (as it was told to say, or near it)."""
    return bool(_DECLINES.search(answer))


def persona_passage(persona: str) -> Passage:
    """The system prompt as a passage answers may rest on but never cite."""
    return Passage(text=persona, chunk=Chunk(id="system-prompt", text=persona, source=""), score=0)


def about_itself(answer: str, persona: str) -> bool:
    """Every claim of `answer` is what the persona says (values included), and it says something.

    An answer citing a passage ([n]) answers from the documents, not about itself.
    """
    if not persona.strip() or _DECLINES.search(answer) or _MARKER.search(answer):
        return False
    passage = persona_passage(persona)
    found = claims(answer)
    return bool(found) and all(support(claim, passage.as_chunk()) for claim, _ in found)


def verify_answer(
    question: str,
    answer: str,
    passages: list[Passage],
    abstention: Abstention,
    persona: str = "",
    given: str = "",
) -> Verification:
    """The answer as verified, or repaired from the passages, or "not in the documents".

    `persona` (the system prompt) supports what the answer says of the assistant itself,
    not a value of an answer from the passages: "The mentoring program is Kestrel Assist"
    (the assistant's name) and "Kestrel Logistics provides our counseling" (the employer's
    name, where the passages name another provider) are wrong answers (bench/RESULTS.md);
    `given` is what the request states itself (a draft's customer message: `rag.voice`).
    """
    sources = [p.source for p in passages]
    if not passages or _DECLINES.search(answer):
        return Verification(
            status="not_found",
            message=not_found_message(question, sources),
            generated=answer,
        )
    if about_itself(answer, persona):
        return Verification(status="verified", message=answer, generated=answer)
    shown = recited(answer, passages)
    unsupported = unsupported_values(shown, passages, given)
    if not unsupported and grounded(shown, passages, given, question) and answers(question, shown):
        number, passage = supporting_passage(shown, passages)
        return Verification(
            status="verified",
            message=shown,
            generated=answer,
            quote=passage.text,
            source=passage.source,
            passage=number,
        )
    return repaired(question, answer, passages, unsupported, abstention)


def answers(question: str, answer: str) -> bool:
    """`answer` holds a value of the kind `question` asks for, if it asks for one.

    "How much is a regular visit?" answered "Regular slots open 14 days ahead" is about the
    passages but answers something else (`rag.answer_type`).
    """
    kind = answer_type.asked_for(question)
    # The citation markers are no value: "[1]" answers no "how many".
    return kind is None or answer_type.holds(kind, _MARKER.sub(" ", answer))


def supporting_passage(answer: str, passages: list[Passage]) -> tuple[int, Passage]:
    """The passage (and its [n]) holding most of the answer's values; the best-scored on a tie."""
    wanted = set().union(*(values(claim) for claim, _ in claims(answer)))
    counts = [sum(holds(v, p) for v in wanted) for p in passages]
    best = max(range(len(passages)), key=lambda i: (counts[i], -i))
    return best + 1, passages[best]


def repaired(
    question: str,
    answer: str,
    passages: list[Passage],
    unsupported: list[str],
    abstention: Abstention,
) -> Verification:
    """The best passage quoted with its citation, or not found when the passages do not answer.

    The quote is the best passage, with the sentence before and after it in its chunk
    (`in_context`), or, when it lacks the kind of value the question asks for
    (an amount, a time, a count: `rag.answer_type`), the next sentence of the same chunk that
    holds one ("when will the new card arrive?": the card section's delivery sentence). No
    sentence of that chunk holding one: not found. "What does it cost to rent a box?"
    answered with "Boxes are available at three branches" is a wrong answer, not a repair,
    and another chunk's amount would be about something else. A draft (`rag.voice`)
    quotes the best passage.
    """
    kind = None if abstention.drafting else answer_type.asked_for(question)
    number = next(
        (
            n
            for n, p in enumerate(passages, 1)
            if p.chunk.id == passages[0].chunk.id and (not kind or answer_type.holds(kind, p.text))
        ),
        None,
    )
    if number is None or abstention.refuses(question, passages):
        return Verification(
            status="not_found",
            message=not_found_message(question, [p.source for p in passages]),
            generated=answer,
            unsupported=unsupported,
        )
    best = passages[number - 1]
    text = in_context(best)
    quoted = f"「{text}」[{number}]" if language(question) == "zh" else f'"{text}" [{number}]'
    return Verification(
        status="repaired",
        message=quoted,
        generated=answer,
        unsupported=unsupported,
        quote=text,
        source=best.source,
        passage=number,
    )


def in_context(passage: Passage) -> str:
    """The passage's sentence with the sentence before and after it in its chunk, verbatim:
    what a repair quotes. The selected sentence is the one most like the question, and the
    fact is often the next one ("Last registration is at 9:30 pm." after the opening hours):
    over a held-out organization's 60 answerable questions the key fact was in the best
    sentence 36 times and in it with its neighbours 42 (bench/RESULTS.md). A table row is
    quoted alone: the rows beside it are other subjects."""
    text = passage.chunk.text
    spans = sentence_spans(text)
    at = next(
        (i for i, (a, b) in enumerate(spans) if text[a:b].strip() == passage.text.strip()), None
    )
    if at is None or passage.text.lstrip().startswith("|"):
        return passage.text
    return around(text, spans, at, 1)
