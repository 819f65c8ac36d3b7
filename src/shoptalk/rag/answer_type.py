"""What kind of value a question asks for, and whether the passages hold one.

    kind = asked_for("How much does the express service cost?")     # "money"
    holds(kind, "Express costs $386 per pallet.")                      # True
    mismatch(question, [p.text for p in passages[:2]])                 # refuse when True

A question asking for an amount, a count or a time cannot be answered by passages
that hold no such value, however many of its words they share: "How much revenue
did we make last year?" retrieves "The company was founded in 1996." The check is
deliberately narrow (three kinds, read off the question words of English and
Chinese, and any value of the kind counts), so it refuses only when the passages
plainly lack what was asked: on the examples' answerable questions it refused none
(bench/RESULTS.md, "Abstention").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

Kind = Literal["money", "when", "number"]

_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    "|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekday|weekend"
_UNITS = "year|quarter|month|week|day|hour|minute|noon|midnight|morning|evening|night"

# Values in a passage. A percentage counts as an amount: "how much is the match?" -> 4.5%.
_MONEY = re.compile(
    r"[$£€¥₹]\s?\d|\d\s?(?:usd|eur|gbp|cny|rmb|dollars?|euros?|pounds?|cents?)\b"
    r"|\d\s?(?:元|块|美元|欧元|英镑)|(?:人民币|rmb)\s?\d|\d\s?(?:%|％|percent\b)|百分之",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty"
    r"|thirty|forty|fifty|hundred|thousand|once|twice|half|dozen)\b|[一二三四五六七八九十百千万两半]",
    re.IGNORECASE,
)
_TIME = re.compile(
    rf"\b(?:{_MONTHS}|{_DAYS}|{_UNITS}|daily|weekly|monthly|quarterly|annually|yearly"
    r"|today|tomorrow)s?\b|\d\s?(?:a\.?m\.?|p\.?m\.?)|\d{1,2}:\d{2}"
    r"|[年月日号点时周天]|星期|小时|分钟|季度",
    re.IGNORECASE,
)

# What the question asks for, from its question words.
_ASKS_MONEY = re.compile(
    r"\bhow much\b.*\b(?:cost|costs|price|pay|paid|charge|charged|fee|fees|salary|revenue"
    r"|spend|spent|earn|earns|budget|worth)\b"
    r"|\b(?:cost|price|fee|salary|salaries|revenue|budget|wages?)\b"
    r"|多少钱|价格|价钱|费用|收费|工资|薪|营业额|收入|预算|售价|成本",
    re.IGNORECASE,
)
_ASKS_WHEN = re.compile(
    r"^\s*when\b|\bwhen (?:is|are|was|were|do|does|did|will|should|can)\b"
    r"|\bwhat (?:time|date|day|month|year)\b|\bwhich (?:days?|date|months?|year|time)\b"
    r"|\bhow (?:long|soon|often|late|early)\b"
    r"|什么时候|何时|哪天|哪一天|几点|几号|多久|多长时间|哪个月|什么时间",
    re.IGNORECASE,
)
_ASKS_NUMBER = re.compile(r"\bhow many\b|多少|几[个位家名次天年月周人]", re.IGNORECASE)


# A question of several parts ("How long ..., and when ...?") may ask for several kinds.
_PARTS = re.compile(r"[?？;；，]|,\s*(?:and|or)\b|\band (?:how|when|what|who|which|where)\b")


def asked_for(question: str) -> Kind | None:
    """The kind of value a one-part `question` asks for, or None (a yes/no, a name, an
    explanation, or a question of several parts)."""
    if len([p for p in _PARTS.split(question) if p.strip()]) > 1:
        return None
    if _ASKS_WHEN.search(question):
        return "when"
    if _ASKS_MONEY.search(question):
        return "money"
    if _ASKS_NUMBER.search(question):
        return "number"
    return None


def holds(kind: Kind, text: str) -> bool:
    """`text` holds a value of `kind` (a time may also be a number: "within 33 days")."""
    if kind == "money":
        return bool(_MONEY.search(text))
    if kind == "when":
        return bool(_TIME.search(text) or _NUMBER.search(text))
    return bool(_NUMBER.search(text))


def mismatch(question: str, texts: Sequence[str]) -> bool:
    """The question asks for a kind of value none of `texts` holds."""
    kind = asked_for(question)
    return kind is not None and bool(texts) and not holds(kind, "\n".join(texts))
