"""Numbers an answer may write: only those of the passages it answers from.

    pieces = number_pieces(tokenizer)                     # once per tokenizer
    guard = NumberGuard(pieces, [passage texts])          # once per answer
    logits = guard.apply(logits, text_so_far)             # before each token is chosen

A 135M-parameter model reading "KX-220: 2 business days" may still write "47
days": the number is the part of an answer it copies worst, and the part users
act on. The verifier (`rag.verify`) finds such a value afterwards and shows a
quote instead; here it cannot be written at all. While the answer writes a
number, only tokens that keep it the beginning of a number some passage holds
may follow, and it may only end where it is one of them whole ("5" of "15" does
not end). A number inside a citation marker ([1], 【2】) is free: it is no value.
Which passage the number belongs to, and whether it is the right one, is still
the verifier's to check. Every engine answering from passages (the scorecard's,
`shoptalk ask`, the API's transformers and llama.cpp engines) applies it the
same way; an upstream server cannot be held to it, and its answers are only
verified. Measured on both examples' held-out questions (bench/RESULTS.md).

Numbers are compared as written after NFKC (full-width digits are ASCII), with
thousands separators optional where the verifier reads them so: "1,200" and
"1200" are one number, "4,5" is not 45.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shoptalk.text import THOUSANDS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A number being written: digits, and the separators that may continue it (1,200 3.5 9:30 24/7).
_RUN = re.compile(r"\d[\d.,:/-]*")
_OPEN_RUN = re.compile(_RUN.pattern + "$")  # the number the answer ends in
_SEPARATORS = ".,:/-"
# What opens a citation marker: [ or 【, then maybe numbers already listed ("[1, ").
_IN_MARKER = re.compile(r"[\[【](?:\s*\d+\s*[,，])*\s*$")
# Enough of the answer's end to see the number being written and what precedes it.
_TAIL = 48


@dataclass(frozen=True)
class NumberPieces:
    """The tokens of a vocabulary that can write or continue a number, with their text."""

    pieces: tuple[tuple[int, str], ...]  # a digit anywhere in the piece
    continuing: tuple[tuple[int, str], ...]  # a separator first: may continue 3 -> 3.5


@lru_cache(maxsize=8)
def number_pieces(tokenizer: PreTrainedTokenizerBase) -> NumberPieces:
    """The pieces of an HF tokenizer's vocabulary that touch numbers (read once per tokenizer:
    every answer and every API request asks)."""
    raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # Raw tokens hold digits and separators as themselves (byte-level BPE, sentencepiece),
    # so only those few are decoded one by one.
    near = [i for i, token in enumerate(raw) if token and re.search(r"[0-9.,:/\-０-９]", token)]
    return pieces_from((i, tokenizer.decode([i])) for i in near)


def pieces_from(texts: Any) -> NumberPieces:
    """`NumberPieces` from (token id, its text) pairs, e.g. a GGUF vocabulary's."""
    digits, continuing = [], []
    for token, text in texts:
        text = unicodedata.normalize("NFKC", text)
        if re.search(r"\d", text):
            digits.append((token, text))
        elif text[:1] and text[0] in _SEPARATORS:
            continuing.append((token, text))
    return NumberPieces(tuple(digits), tuple(continuing))


def written_forms(number: str) -> set[str]:
    """`number` as it may be written: with and without thousands separators (1200, 1,200)."""
    plain = THOUSANDS.sub("", number)
    forms = {number, plain}
    whole = re.fullmatch(r"([1-9]\d{3,})(\.\d+)?", plain)
    if whole:
        forms.add(f"{int(whole.group(1)):,}{whole.group(2) or ''}")
    return forms


def source_numbers(sources: Sequence[str]) -> set[str]:
    """The numbers the `sources` hold, in every form `written_forms` gives."""
    return {
        form
        for text in sources
        for run in _RUN.findall(unicodedata.normalize("NFKC", text))
        for form in written_forms(run.rstrip(_SEPARATORS))
    }


@dataclass
class NumberGuard:
    """Masks the tokens that would write a number no source holds (see the module's doc)."""

    pieces: NumberPieces
    sources: Sequence[str]
    numbers: set[str] = field(init=False)
    prefixes: set[str] = field(init=False)
    _banned: dict[str, tuple[list[int], list[int] | None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = source_numbers(self.sources)
        self.prefixes = {n[:i] for n in self.numbers for i in range(1, len(n) + 1)}

    def apply(self, logits: Any, text: str) -> Any:
        """`logits` (a torch or numpy vector, left as it is) with the tokens `text` may not
        be followed by set to -inf; the same vector when none is."""
        banned, only = self.mask(text)
        if not banned and only is None:
            return logits
        logits = logits.clone() if hasattr(logits, "clone") else logits.copy()
        if only is not None:
            kept = logits[only]
            logits[:] = float("-inf")
            logits[only] = kept
        else:
            logits[banned] = float("-inf")
        return logits

    def mask(self, text: str) -> tuple[list[int], list[int] | None]:
        """(tokens that may not come next, or else the only ones that may: None when any)."""
        tail = unicodedata.normalize("NFKC", text[-_TAIL:])
        run = _OPEN_RUN.search(tail)
        if _IN_MARKER.search(tail[: run.start()] if run else tail):
            return [], None  # a citation's number
        key = run.group() if run else ""
        if key not in self._banned:
            self._banned[key] = self._decide(key)
        return self._banned[key]

    def _decide(self, run: str) -> tuple[list[int], list[int] | None]:
        """For an answer ending in the number `run` ("" for none): what may follow."""
        candidates = self.pieces.pieces + (self.pieces.continuing if run else ())
        fits = {token: self._fits(run, piece) for token, piece in candidates}
        good = [token for token, ok in fits.items() if ok]
        bad = [token for token, ok in fits.items() if not ok]
        if run and not self._whole(run) and good:
            return [], good  # "4" of "45": the number goes on
        return bad, None

    def _fits(self, run: str, piece: str) -> bool:
        """Every number `piece` writes or ends, after the number `run`, is allowed."""
        text = run + piece
        for found in _RUN.finditer(text):
            if found.start() > 0 and _IN_MARKER.search(text[: found.start()]):
                continue
            if found.end() < len(text):
                if not self._whole(found.group()):
                    return False
            elif not self._beginning(found.group()):
                return False
        return True

    def _whole(self, run: str) -> bool:
        """`run`, ended here, is a number of the sources (a separator after it ends a sentence)."""
        return run.rstrip(_SEPARATORS) in self.numbers

    def _beginning(self, run: str) -> bool:
        """`run` may still become a number of the sources, or ends as one ("142." then text)."""
        return run in self.prefixes or (run[-1] in _SEPARATORS and self._whole(run))
