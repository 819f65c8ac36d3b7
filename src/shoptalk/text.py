"""Language-aware text helpers every stage shares.

One rule decides whether a text is Chinese, so the data stage's templates, the
retriever's tokenizer, the scorecard's key facts and the data report's
language mix never disagree about the same string.
"""

from __future__ import annotations

import re

# CJK ideographs: basic, extension A, compatibility, extensions B and later.
CJK_RANGES = (
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003ffff"  # CJK extensions B and later
)
CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
# A letter of any script: a word character that is not a digit or an underscore.
LETTER = re.compile(r"[^\W\d_]")
# A thousands separator: a comma before exactly 3 digits (1,200; not 4,5 nor 1,2345). What the
# verifier drops to compare values and what answers may leave out when they copy a number.
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def is_chinese(text: str) -> bool:
    """True when Chinese characters are at least half of the letters in `text`.

    Digits, punctuation and spaces are not counted, so "KX-220 的保修期是多久？"
    is Chinese and "Model KX-220 (保修)" is not.
    """
    letters = LETTER.findall(text)
    chinese = sum(1 for ch in letters if CJK_CHAR.match(ch))
    return bool(letters) and chinese * 2 >= len(letters)
