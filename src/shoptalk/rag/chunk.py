"""Document sections -> retrieval chunks: sentence-aware, sized in tokens, overlapping.

    pieces = chunk_section(section, count_tokens, max_tokens=200, overlap_tokens=40)

The readers (`shoptalk.data.documents` and friends) already cut documents at
their headings; here a long section is cut further, only between sentences
(English `. ! ?` with abbreviations and numbers kept whole, Chinese `。！？；`)
or lines, so a chunk never ends mid-sentence. Every chunk's text is a verbatim
slice of its section, which is what lets a citation be checked against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from shoptalk.data.documents import content_id
from shoptalk.records import Chunk

CountTokens = Callable[[list[str]], list[int]]

# Words that end in a period without ending the sentence (compared lowercased).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st no nos vs etc e.g i.e a.m p.m approx dept est inc ltd co "
    "corp jan feb mar apr jun jul aug sep sept oct nov dec fig ext tel u.s u.k".split()
)
# A sentence ends at Chinese terminators, or at . ! ? followed by a space (or the end)
# and optionally closing quotes/brackets before it; a newline always ends a unit.
_CJK_END = re.compile(r"[。！？；][”’」』）]*")
_LATIN_END = re.compile(r"[.!?][”’\"')\]]*(?=\s|$)")
_WORD_BEFORE = re.compile(r"([\w.]+)\.$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of `text`, whitespace excluded."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        for end in _ends(line.group()):
            spans.append((start, line.start() + end))
            start = line.start() + end
        spans.append((start, line.end()))
    return [trimmed for s, e in spans if (trimmed := _trim(text, s, e))]


def around(text: str, spans: list[tuple[int, int]], at: int, neighbours: int) -> str:
    """Sentence `at` of `text` (cut as `spans`) with up to `neighbours` sentences each side,
    as the text writes them."""
    first, last = max(0, at - neighbours), min(len(spans) - 1, at + neighbours)
    return text[spans[first][0] : spans[last][1]]


def _ends(line: str) -> list[int]:
    """Offsets in `line` just after each sentence terminator."""
    ends = [m.end() for m in _CJK_END.finditer(line)]
    for match in _LATIN_END.finditer(line):
        if match.group()[0] == "." and _is_abbreviation(line[: match.start() + 1]):
            continue
        ends.append(match.end())
    return sorted(set(ends))


def _is_abbreviation(before: str) -> bool:
    """Whether the period closing `before` belongs to a word like "Dr." or "e.g."."""
    match = _WORD_BEFORE.search(before)
    if match is None:
        return False
    word = match.group(1).lower()
    # A single capital letter is an initial ("J. Smith"), not the end of a sentence.
    return word in ABBREVIATIONS or (len(word) == 1 and match.group(1).isupper())


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def chunk_section(
    section: Chunk, count_tokens: CountTokens, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """`section` as chunks of at most `max_tokens` (heading line included) that overlap."""
    budget = max(16, max_tokens - count_tokens([heading_line(section)])[0])
    spans = sentence_spans(section.text)
    if not spans:
        return []
    sizes = count_tokens([section.text[s:e] for s, e in spans])
    spans, sizes = _split_long(spans, sizes, budget)
    chunks: list[Chunk] = []
    first = 0
    while first < len(spans):
        last, total = first, sizes[first]
        while last + 1 < len(spans) and total + sizes[last + 1] <= budget:
            last += 1
            total += sizes[last]
        text = section.text[spans[first][0] : spans[last][1]]
        chunks.append(_piece(section, text, len(chunks)))
        if last + 1 == len(spans):
            break
        first = _overlap_start(sizes, first, last, overlap_tokens)
    return chunks


def _overlap_start(sizes: list[int], first: int, last: int, overlap_tokens: int) -> int:
    """The next chunk's first sentence: repeat the tail of [first, last] up to the overlap."""
    start, total = last + 1, 0
    while start - 1 > first and total + sizes[start - 1] <= overlap_tokens:
        start -= 1
        total += sizes[start]
    return start


def _split_long(
    spans: list[tuple[int, int]], sizes: list[int], budget: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """Cut a sentence longer than the budget (a huge table row, a run-on line) evenly by length."""
    out_spans, out_sizes = [], []
    for (start, end), size in zip(spans, sizes, strict=True):
        parts = -(-size // budget)
        step = -(-(end - start) // parts)
        for cut in range(start, end, step):
            out_spans.append((cut, min(end, cut + step)))
            out_sizes.append(-(-size // parts))
    return out_spans, out_sizes


def _piece(section: Chunk, text: str, number: int) -> Chunk:
    if text == section.text:
        return section
    return section.model_copy(
        update={"id": content_id(section.source, str(number), text), "text": text}
    )


def heading_line(chunk: Chunk) -> str:
    """The heading path, e.g. "Employee handbook > Paid time off"; embedded and searched with the text."""
    return " > ".join(chunk.headings)


def searchable_text(chunk: Chunk) -> str:
    """What is embedded and searched: the heading path gives a short chunk its topic."""
    heading = heading_line(chunk)
    return f"{heading}\n{chunk.text}" if heading else chunk.text
