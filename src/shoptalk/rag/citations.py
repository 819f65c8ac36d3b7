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

Support is lexical and strict on values, which is where a wrong answer hurts:
- every number of the answer sentence must be in the supporting sentence,
  compared as numbers (`75 天` = `75天`, `£1,200` = `£1200`, full-width digits
  too): "45 days" for "47 days" is the hallucination users care about most;
- every code (`KX-450`), e-mail and name (a capitalized word past the first)
  must be in the cited chunk;
- most of the sentence's content words must be in the supporting sentence;
- and the words that say what the value is about must not point elsewhere: when
  another given sentence matches the claim's words better (rarer shared words
  weigh more) but lacks its numbers, the claim took its value from one row and
  its subject from another ("11 days of paid jury duty" against the sick-leave
  row of a leave table), and nothing supports it.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from shoptalk.rag.bm25 import terms
from shoptalk.rag.chunk import sentence_spans
from shoptalk.records import Chunk
from shoptalk.text import CJK_CHAR, THOUSANDS

# [1], [1, 2], [1][2], 【1】
_MARKER = re.compile(r"[\[【]\s*(\d+(?:\s*[,，]\s*\d+)*)\s*[\]】]")
_QUOTE = re.compile(r'"([^"\n]{3,})"|“([^”\n]{2,})”|「([^」\n]{2,})」')
_NUMBER = re.compile(r"\d")
# A number as written: 1,200  3.5  06:00  2024-03-01 (after NFKC: full-width digits are ASCII).
_VALUE_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
# A number written with 万 (10^4) or 亿 (10^8), as Chinese amounts are: 1.2万元, 3亿.
# Only these two: 千 also opens units (千克 kg, 千米 km), so "5千" is left as written.
_MYRIAD = re.compile(r"(\d+(?:\.\d+)?)\s*([万亿])")
_MYRIADS = {"万": Decimal(10_000), "亿": Decimal(100_000_000)}
# A count written as a word is a value like its digits: "The centre has four physicians"
# must be held by the passage ("4 physicians" or "four"). Not "one" (as often "one of our
# clinics" as a count), nor a part of "twenty-five" (left as written).
_SMALL = "two three four five six seven eight nine ten eleven twelve".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS = {word: n for n, word in enumerate(_SMALL, start=2)} | {
    word: 10 * n for n, word in enumerate(_TENS, start=2)
}
_NUMBER_WORD = re.compile(rf"(?<![\w-])(?:{'|'.join(_NUMBER_WORDS)})(?![\w-])", re.IGNORECASE)
# What may not touch a value found inside a longer text: another digit or letter of the
# same value, or a decimal point, separator or colon that continues the number.
_BEFORE = r"(?<![0-9a-z])(?<![0-9][.,:])"
_AFTER = r"(?![0-9a-z])(?![.,:][0-9])"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CODE = re.compile(r"\b(?=[\w-]*[A-Za-z])(?=[\w-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b")
_NAME = re.compile(r"\b[A-Z][\w'’-]*[A-Za-z]")
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
    context = Context(chunks)
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
            in_range = 1 <= number <= len(chunks)
            quotes = _verified(claim, chunks[number - 1], context) if in_range else None
            if not quotes:
                dropped += 1
                continue
            for quote in quotes:
                cited = citation(chunks[number - 1], quote, number)
                citations[(cited.chunk_id, quote)] = cited  # replaces a "supported" one
        if not numbers and (found := best_support(claim, chunks, context)):
            chunk, quote = found
            supported = citation(chunk, quote, None, "supported")
            citations.setdefault((chunk.id, quote), supported)
    return CheckedCitations(citations=list(citations.values()), dropped=dropped)


def normalized(text: str) -> str:
    """Full-width forms folded (NFKC), thousands separators dropped, 万/亿 multiplied out,
    counts written as words as digits: values compare as written (`１．２万` = `1.2万` =
    `12000` = `12,000`; "four physicians" = "4 physicians")."""
    folded = THOUSANDS.sub("", unicodedata.normalize("NFKC", text))
    return _NUMBER_WORD.sub(
        lambda m: str(_NUMBER_WORDS[m.group().lower()]), _MYRIAD.sub(_multiplied, folded)
    )


def _multiplied(match: re.Match[str]) -> str:
    # Decimal arithmetic: 1.2 x 10^4 must print 12000, not 11999.999999999998.
    value = Decimal(match.group(1)) * _MYRIADS[match.group(2)]
    return format(value.normalize(), "f")


def contains(value: str, text: str) -> bool:
    """`value` occurs in `text` as a whole value: "5" is not in "15", "30" not in "300" or
    "9:30", "kx-22" not in "kx-220"; "17:00" is in "9:00-17:00" (a range's end)."""
    return re.search(_BEFORE + re.escape(value) + _AFTER, text) is not None


def numbers_in(text: str) -> set[str]:
    return set(_VALUE_NUMBER.findall(normalized(text)))


def named_values(claim: str) -> set[str]:
    """Codes, e-mails and names of `claim`, lowercased; a sentence's first word is no name.

    Chinese has no capitals: its names of people, places and organizations are the words
    jieba tags as such (王明 nr, 成都 ns), so "成都店的店长是王明" needs a passage naming 王明.
    """
    text = normalized(claim).strip()
    found = set(_EMAIL.findall(text)) | set(_CODE.findall(text))
    first = re.match(r"\W*\w+", text)
    start = first.end() if first else 0
    found |= {m.group() for m in _NAME.finditer(text) if m.start() >= start}
    if CJK_CHAR.search(text):
        found |= chinese_names(text)
    return {v.lower() for v in found}


# jieba's part-of-speech tags for names: person (nr, nrfg, nrt), place (ns), organization (nt).
_NAME_TAGS = frozenset({"nr", "nrfg", "nrt", "ns", "nt"})


def chinese_names(text: str) -> frozenset[str]:
    """The names jieba tags in `text`, two characters or more (one is too often a word)."""
    return frozenset(word for word, flag in _tagged(text) if flag in _NAME_TAGS and len(word) > 1)


def chinese_places(text: str) -> frozenset[str]:
    """The place names jieba tags in `text` (北京, 深圳: ns), two characters or more."""
    return frozenset(word for word, flag in _tagged(text) if flag == "ns" and len(word) > 1)


@lru_cache(maxsize=4096)
def _tagged(text: str) -> tuple[tuple[str, str], ...]:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # it prints dictionary loading to stderr otherwise
    return tuple((pair.word, pair.flag) for pair in jieba.posseg.cut(text))


def holds_values(claim: str, chunk: Chunk) -> bool:
    """Every number, code, e-mail and name of `claim` is in the chunk."""
    text = normalized(chunk.text).lower()
    return numbers_in(claim) <= numbers_in(chunk.text) and all(
        contains(v, text) for v in named_values(claim)
    )


class Context:
    """Every sentence of the given chunks: what a claim's words could be about."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.sentences = [c.text[a:b] for c in chunks for a, b in sentence_spans(c.text)]
        self.terms = [set(terms(s)) for s in self.sentences]
        self.numbers = [numbers_in(s) for s in self.sentences]
        self.df = Counter(t for have in self.terms for t in have)

    def weight(self, word: str) -> float:
        """Rarer among the given sentences, more telling of what a sentence is about."""
        return math.log((len(self.sentences) + 1) / (self.df[word] + 1)) + 1e-6

    def mixes(self, claim: str, sentence: str) -> bool:
        """Another sentence matches the claim's words better but lacks its numbers."""
        numbers = numbers_in(claim)
        if not numbers:
            return False
        words = {t for t in terms(claim) if not _NUMBER.search(t)}
        score = sum(self.weight(w) for w in words & set(terms(sentence)))
        return any(
            sum(self.weight(w) for w in words & have) > score and not numbers <= their_numbers
            for have, their_numbers in zip(self.terms, self.numbers, strict=True)
        )


def _verified(claim: str, chunk: Chunk, context: Context) -> list[str]:
    """The chunk's own words for each quoted span of `claim`, or for its support; [] if none holds."""
    if not holds_values(claim, chunk):
        return []
    quoted = [next(g for g in m.groups() if g) for m in _QUOTE.finditer(claim)]
    if quoted:
        spans = [find_span(q, chunk.text) for q in quoted]
        return [s for s in spans if s] if all(spans) else []
    sentence = support(claim, chunk, context)
    return [sentence] if sentence else []


def find_span(quote: str, text: str) -> str | None:
    """`quote` as it is written in `text` (case and runs of whitespace may differ)."""
    words = quote.split()
    if not words:
        return None
    match = re.search(r"\s+".join(map(re.escape, words)), text, re.IGNORECASE)
    return match.group() if match else None


def support(claim: str, chunk: Chunk, context: Context | None = None) -> str | None:
    """The sentence of `chunk` that best supports `claim`, if one does (see the module's doc)."""
    wanted = set(terms(claim))
    if not wanted or not holds_values(claim, chunk):
        return None
    codes = {t for t in wanted if _NUMBER.search(t) and not _VALUE_NUMBER.fullmatch(t)}
    numbers = numbers_in(claim)
    best, best_coverage = None, 0.0
    for start, end in sentence_spans(chunk.text):
        sentence = chunk.text[start:end]
        have = set(terms(sentence))
        coverage = len(wanted & have) / len(wanted)
        holds = codes <= have and numbers <= numbers_in(sentence)
        if holds and coverage >= MIN_COVERAGE and coverage > best_coverage:
            best, best_coverage = sentence, coverage
    context = context or Context([chunk])
    return None if best is None or context.mixes(claim, best) else best


def lexical_support(claim: str, chunk: Chunk) -> str | None:
    """The sentence of `chunk` holding most of `claim`'s words and every digit-bearing one.

    The looser test RAFT picks its oracle passages with: tightening it would
    change which examples every RAFT dataset holds, and so every RAFT run.
    """
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


def best_support(
    claim: str, chunks: list[Chunk], context: Context | None = None
) -> tuple[Chunk, str] | None:
    """The chunk and sentence that support `claim` best (by coverage), if any does."""
    wanted = set(terms(claim))
    context = context or Context(chunks)
    scored = []
    for chunk in chunks:
        sentence = support(claim, chunk, context)
        if sentence:
            scored.append((len(wanted & set(terms(sentence))), chunk, sentence))
    if not scored:
        return None
    _, chunk, sentence = max(scored, key=lambda item: item[0])
    return chunk, sentence


def citation(chunk: Chunk, quote: str, number: int | None, kind: str = "cited") -> Citation:
    """`quote` (verbatim from `chunk`) as the citation [number] of a message."""
    heading = chunk.headings[-1] if chunk.headings else ""
    return Citation(
        number=number,
        chunk_id=chunk.id,
        source=chunk.source,
        heading=heading,
        quote=quote,
        kind=kind,
    )
