"""Check an answer's citations against the chunks it was given, and find its support.

    checked = check_citations(answer_text, chunks)
    checked.citations   # each with a verbatim quote of its chunk
    checked.dropped     # [n] markers that point nowhere or quote what the chunk does not say

A citation is kept only if its chunk really holds what it claims:
- `[n]` with a quoted span ("..." or “...” or 「...」): the span must occur in chunk n
  (case and whitespace aside); the citation quotes the chunk's own words.
- `[n]` without a quote: chunk n must hold a sentence that supports the answer
  sentence carrying the marker (see `support`); that sentence becomes the quote.
- An answer sentence without any marker gets the best supporting sentence of
  all the chunks, if one supports it: small models cite poorly, so the
  support of their key sentences is found rather than trusted to them.

Support is lexical and strict on numbers: most of the answer sentence's content
words must appear in the chunk sentence, and every number in it must (a wrong
figure, "45 days" for "47 days", is the hallucination users care about most).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from shoptalk.rag.bm25 import terms
from shoptalk.rag.chunk import sentence_spans
from shoptalk.records import Chunk

# [1], [1, 2], [1][2], 【1】
_MARKER = re.compile(r"[\[【]\s*(\d+(?:\s*[,，]\s*\d+)*)\s*[\]】]")
_QUOTE = re.compile(r'"([^"\n]{3,})"|“([^”\n]{2,})”|「([^」\n]{2,})」')
_NUMBER = re.compile(r"\d")
MIN_COVERAGE = 0.5


class Citation(BaseModel):
    number: int | None = Field(description="The [n] in the message; None when found by support")
    chunk_id: str
    source: str = Field(description="file#heading, or file#page=N for a PDF")
    heading: str
    quote: str = Field(description="A verbatim span of the chunk")
    kind: Literal["cited", "supported"] = Field(
        description="'cited' by the model and checked, or 'supported': found for an uncited sentence"
    )


class CheckedCitations(BaseModel):
    citations: list[Citation]
    dropped: int = Field(
        description="Citations removed: no such chunk, or a claim it does not hold"
    )


def check_citations(answer: str, chunks: list[Chunk]) -> CheckedCitations:
    citations: dict[tuple[str, str], Citation] = {}
    dropped = 0
    previous = ""
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        numbers = [
            int(n) for m in _MARKER.finditer(sentence) for n in re.split(r"[,，]", m.group(1))
        ]
        claim = _MARKER.sub(" ", sentence)
        if numbers and not terms(claim):
            claim = previous  # "... 47 days. [1]": the markers cite the sentence before them
        previous = claim
        for number in dict.fromkeys(numbers):
            quotes = _verified(claim, chunks[number - 1]) if 1 <= number <= len(chunks) else None
            if not quotes:
                dropped += 1
                continue
            for quote in quotes:
                cited = _citation(chunks[number - 1], quote, "cited", number)
                citations[(cited.chunk_id, quote)] = cited  # replaces a "supported" one
        if not numbers and (found := best_support(claim, chunks)):
            chunk, quote = found
            supported = _citation(chunk, quote, "supported", None)
            citations.setdefault((chunk.id, quote), supported)
    return CheckedCitations(citations=list(citations.values()), dropped=dropped)


def _verified(claim: str, chunk: Chunk) -> list[str]:
    """The chunk's own words for each quoted span of `claim`, or for its support; [] if none holds."""
    quoted = [next(g for g in m.groups() if g) for m in _QUOTE.finditer(claim)]
    if quoted:
        spans = [find_span(q, chunk.text) for q in quoted]
        return [s for s in spans if s] if all(spans) else []
    sentence = support(claim, chunk)
    return [sentence] if sentence else []


def find_span(quote: str, text: str) -> str | None:
    """`quote` as it is written in `text` (case and runs of whitespace may differ)."""
    words = quote.split()
    if not words:
        return None
    match = re.search(r"\s+".join(map(re.escape, words)), text, re.IGNORECASE)
    return match.group() if match else None


def support(claim: str, chunk: Chunk) -> str | None:
    """The sentence of `chunk` that best supports `claim`, if one does."""
    wanted = set(terms(claim))
    if not wanted:
        return None
    numbers = {t for t in wanted if _NUMBER.search(t)}
    best, best_coverage = None, 0.0
    for start, end in sentence_spans(chunk.text):
        sentence = chunk.text[start:end]
        have = set(terms(sentence))
        coverage = len(wanted & have) / len(wanted)
        if numbers <= have and coverage >= MIN_COVERAGE and coverage > best_coverage:
            best, best_coverage = sentence, coverage
    return best


def best_support(claim: str, chunks: list[Chunk]) -> tuple[Chunk, str] | None:
    """The chunk and sentence that support `claim` best (by coverage), if any does."""
    wanted = set(terms(claim))
    scored = []
    for chunk in chunks:
        sentence = support(claim, chunk)
        if sentence:
            scored.append((len(wanted & set(terms(sentence))), chunk, sentence))
    if not scored:
        return None
    _, chunk, sentence = max(scored, key=lambda item: item[0])
    return chunk, sentence


def _citation(chunk: Chunk, quote: str, kind: str, number: int | None) -> Citation:
    heading = chunk.headings[-1] if chunk.headings else ""
    return Citation(
        number=number,
        chunk_id=chunk.id,
        source=chunk.source,
        heading=heading,
        quote=quote,
        kind=kind,
    )
