"""What kind of value a question asks for, and whether the passages hold one.

    kind = asked_for("How much does the express service cost?")     # "money"
    holds(kind, "Express costs $386 per pallet.")                      # True
    mismatch(question, [p.text for p in passages[:2]])                 # refuse when True

A question asking for an amount, a count, a time, a duration, a phone number, an e-mail, a
postal address, a code or a password cannot be answered by passages that hold no such
value, however many of its words they share: "How much revenue did we make last year?"
retrieves "The company was founded in 1996." The check is deliberately narrow (nine kinds,
read off the question words of English and Chinese, and any value of the kind counts), so
it refuses only when the passages plainly lack what was asked: on the examples' answerable
questions it refused none
(bench/RESULTS.md, "Abstention").

A question about a past or future period ("What was the rate last quarter?", 去年的营业额)
asks for a figure of that period; documents that name no such period state standing
rules ("reviewed each month") and cannot answer it (`unnamed_period`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from shoptalk.rag.bm25 import stem
from shoptalk.rag.chunk import sentence_spans

Kind = Literal["money", "when", "duration", "number", "phone", "email", "address", "code", "secret"]

# "May" only capitalized: "may" is a verb ("the account may be referred").
_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|(?-i:May)|june?|july?|aug(?:ust)?"
    "|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekday|weekend"
_UNITS = "year|quarter|month|week|day|hour|minute|noon|midnight|morning|evening|night"

# Values in a passage. A percentage counts as an amount: "how much is the match?" -> 4.5%.
# "Free" answers a price when it is said of the thing ("certificates are free", "free of
# charge", "free when requested"), not "free coffee", "free of defects" nor "toll-free".
_MONEY = re.compile(
    r"[$£€¥₹]\s?\d|\d\s?(?:usd|eur|gbp|cny|rmb|dollars?|euros?|pounds?|cents?|yuan|yen|rupees?)\b"
    r"|\d\s?(?:元|块|美元|欧元|英镑)|(?:人民币|rmb)\s?\d|\d\s?(?:%|％|percent\b)|百分之"
    r"|\b(?:is|are|be|been|remains?|stays?)\s+free\b(?!\s+of\s+(?!charge))|(?<!-)\bfree\s+(?:of\s+charge|when|if|on|for|with|upon)\b"
    r"|\b(?:at\s+)?no\s+(?:extra\s+|additional\s+)?(?:charge|cost|fee)\b"
    r"|免费|不收费",
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

# A phone number ("1-800-555-0192", "+44 20 7946 0018", "400-820-6637") or an extension,
# also as an answer says it: "the extension for IT support is 4300".
_PHONE = re.compile(
    r"\+?\d[\d ().-]{5,}\d|\b(?:ext|extension|x)\.?\s?\d{2,6}\b|分机\s?\d{2,6}"
    r"|\b(?:is|at|on|dial|call)\s+\d{3,6}\b(?![.,:]\d)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A postal address: a numbered street, a US ZIP after its state, a UK postcode, 路/街 ... 号.
_STREETS = (
    "street|st|avenue|ave|road|rd|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl"
    "|parkway|pkwy|highway|hwy|square|sq|terrace|close|crescent|row|quay|wharf"
)
_ADDRESS = re.compile(  # case matters: a name is capitalized, "is 10000" is no ZIP code
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][\w'’-]*\s+){{1,4}}(?i:{_STREETS})\b"
    r"|\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b|\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b|\bP\.?\s?O\.?\s+Box\s+\d"
    r"|[\u4e00-\u9fff][路街道巷弄里]\s?\d+\s?号"
)

# What the question asks for, from its question words.
# "What's the address of the Dallas warehouse?"; not "delivering to a residential address".
_ASKS_ADDRESS = re.compile(
    r"\bwhat(?:'s|’s|s| is| are)?\s+(?:the\s+|their\s+|your\s+|its\s+)?"
    r"(?:street\s+|postal\s+|mailing\s+|physical\s+|office\s+)?address(?:es)?\b(?!\s+(?:to|on)\b)"
    r"|地址是(?:什么|哪里|多少)|(?:具体|详细)地址|地址在哪",
    re.IGNORECASE,
)
# "paid" as a verb ("how much is paid out?"), not before what is paid ("how much paid
# parental leave": a length of leave).
_PAID = r"paid(?!\s+(?!(?:out|back|for|to|by|in|on|at|per|each|every|if|when|after|before)\b)[a-z])"
_ASKS_MONEY = re.compile(
    rf"\bhow much\b.*\b(?:cost|costs|price|pay|{_PAID}|charge|charged|fee|fees|salary|revenue"
    r"|spend|spent|earn|earns|budget|worth)\b"
    r"|\bhow much\b.*\bmakes?\s+(?:a|an|per|each|every)\s+(?:year|month|week|hour)\b"
    r"|\b(?:cost|price|fee|salary|salaries|revenue|budget|wages?)\b"
    r"|多少钱|价格|价钱|费用|收费|工资|薪|营业额|收入|预算|售价|成本",
    re.IGNORECASE,
)
_ASKS_WHEN = re.compile(
    r"^\s*when\b|\bwhen (?:is|are|was|were|do|does|did|will|should|can)\b"
    r"|\bwhat (?:time|date|day|month|year)\b|\bwhich (?:days?|date|months?|year|time)\b"
    r"|\bhow (?:soon|often|late|early)\b"
    r"|什么时候|何时|哪天|哪一天|几点|几号|哪个月|什么时间",
    re.IGNORECASE,
)
# "When does shipping become free?", "When do I qualify for the discount?", "When does a
# trench need shoring?" ask for a condition ("orders over $500", "5 feet deep or deeper"),
# which a number states, not a time.
_ASKS_CONDITION = re.compile(
    r"\bwhen\s+(?:do|does|will|would|can)\b[^?]*\b(?:become|becomes|qualify|qualifies"
    r"|eligible|apply|applies|kick\s+in|kicks\s+in|need|needs|require|requires)\b",
    re.IGNORECASE,
)
# "How long ...?" asks for a time or a length ("at least 14 characters"): any number answers;
# so does "how much time do I get paid for?" ("a minimum of two hours").
_ASKS_DURATION = re.compile(
    r"\bhow long\b|\bhow much (?:time|longer|notice)\b|多久|多长时间", re.IGNORECASE
)
# A year answers "when" ("founded in 1996"); other numbers do not ("4820 Longspur Avenue"
# for "When is the company planning to go public?").
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_ASKS_NUMBER = re.compile(r"\bhow many\b|多少|几[个位家名次天年月周人]", re.IGNORECASE)
# "What's the direct phone number for the Greyhaven branch?" is not answered by its opening
# hours, nor "which email address ..." by a sentence without one.
_ASKS_PHONE = re.compile(
    r"\b(?:phone|telephone|fax|hotline|helpline|contact)\s+(?:number|no\.?|extension|ext\b)"
    r"|\b(?:what|which)\s+(?:phone\s+)?number\s+(?:do|should|can|would)\s+(?:i|we|you)\s+(?:call|ring|dial)\b"
    r"|\bextension\s+number\b"
    r"|(?:电话|热线|分机|手机)(?:号码?)?(?:是)?(?:多少|几号)|(?:哪个|什么)号码|号码是多少",
    re.IGNORECASE,
)
_ASKS_EMAIL = re.compile(
    r"\be-?mail\s+address\b|\b(?:what|which)(?:'s|’s| is)?\s+(?:the\s+|their\s+|your\s+)?e-?mail\b"
    r"|邮箱(?:地址)?(?:是)?(?:多少|什么)|(?:电子)?邮件地址",
    re.IGNORECASE,
)

# "What's the site code for the Portland cross-dock?" asks for a code ("PDX-6"), not its
# address; a count of a code's parts ("how many digits ... tracking number") is a number,
# and "Is there a promo code?" may be answered "no".
_ASKS_CODE = re.compile(
    r"^(?!\s*(?:is|are|do|does|did|can|could|will|would|should|have|has)\b).*?(?:"
    r"\b(?:code|sku)s?\b"
    r"|\b(?:tracking|reference|policy|form|model|part|item|booking|order|ticket)\s+(?:number|no\.?|id)\b"
    r"|编号|代码|编码|代号|型号)",
    re.IGNORECASE,
)
# "Which transaction code waives a late fee?" asks for the code the question word names,
# before the fee it mentions.
_ASKS_NAMED_CODE = re.compile(
    r"\b(?:what|which)(?:'s|’s|\s+is|\s+are)?\s+(?:the\s+)?(?:[\w-]+\s+){0,2}?codes?\b",
    re.IGNORECASE,
)
# A code: letters (one capital at least) and digits in one token ("PDX-6", "KX-220", "Q3"),
# or digits a label calls a code ("site code 4410", "编号：0571"). ASCII edges: "是TG-03".
_CODE = re.compile(
    r"(?<![A-Za-z0-9-])(?=[A-Za-z0-9/-]*[A-Z])(?=[A-Za-z0-9/-]*\d)[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*"
    r"(?![A-Za-z0-9-])"
    r"|(?i:\bcode|\bno\.|\bnumber|编号|代码|编码)\s*(?:is\s+)?[:：#]?\s*\d",
)

# "What's this week's password for the guest Wi-Fi?" asks for a credential; "What are the
# password rules?" and "How do I reset my password?" do not. Documents seldom hold one
# ("the password changes every Monday", "is posted at reception"): a passage answers only
# when it gives the value itself.
_SECRET_WORD = (
    r"(?:(?i:pass(?:word|code|phrase)|pin\s+(?:code|number)|wi-?fi\s+key|door\s+code)|\bPIN\b)"
)
_ASKS_SECRET = re.compile(
    r"(?i:\bwhat(?:'s|’s|s|\s+is|\s+are|\s+was)?)\s+(?:[\w'’-]+\s+){0,5}?"
    rf"{_SECRET_WORD}s?\b"
    r"(?!\s+(?i:polic|rule|requirement|length|reset|manager|expir|change)\w*)"
    r"|(?:密码|口令)(?:是)?(?:多少|什么)",
)
# The credential itself, after "is" or a colon: a token with a digit or a symbol
# ("Harbor2024!"), or quoted; or where it is found ("posted at reception", "is on the
# kitchen door"). "The guest password changes every Monday" gives neither.
_SECRET = re.compile(
    rf"(?:{_SECRET_WORD}|密码|口令)[^.\n]{{0,40}}?(?:(?:\bis\b|[:：=]|为|是)\s*"
    r"(?:[\"“‘'][^\"”’'\s]{3,}[\"”’']|[^\s\"”’',.;]*[\d!@#$%^&*][^\s\"”’',;]*)"
    r"|\b(?i:posted|printed|written|displayed|shown|kept|(?:is|are)\s+(?:on|at|in))\b"
    r"|贴在|写在|张贴|见)",
)

# A question of several parts ("How long ..., and when ...?") may ask for several kinds.
_PARTS = re.compile(r"[?？;；，]|,\s*(?:and|or)\b|\band (?:how|when|what|who|which|where)\b")


# Question words -> the kind asked, the first that matches: "how long" before "when", a
# price before "how many", a phone number before "多少".
_ASKS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (_ASKS_DURATION, "duration"),
    (_ASKS_CONDITION, "number"),
    (_ASKS_WHEN, "when"),
    (_ASKS_NAMED_CODE, "code"),
    (_ASKS_MONEY, "money"),
    (_ASKS_PHONE, "phone"),
    (_ASKS_EMAIL, "email"),
    (_ASKS_ADDRESS, "address"),
    (_ASKS_NUMBER, "number"),
    (_ASKS_CODE, "code"),
)
# The values that answer each kind: a time is a date, a time of day, a period ("within 33
# days") or a year; a duration that or any number.
_VALUES: dict[Kind, tuple[re.Pattern[str], ...]] = {
    "money": (_MONEY,),
    "when": (_TIME, _YEAR),
    "duration": (_TIME, _NUMBER),
    "number": (_NUMBER,),
    "phone": (_PHONE,),
    "email": (_EMAIL,),
    "address": (_ADDRESS,),
    "code": (_CODE,),
    "secret": (_SECRET,),
}


def asked_for(question: str) -> Kind | None:
    """The kind of value a one-part `question` asks for, or None (a yes/no, a name, an
    explanation, or a question of several parts). A password is asked whatever else is:
    "whats the wifi password? im at reception" (the passages must give one)."""
    if _ASKS_SECRET.search(question_clause(question)):
        return "secret"
    if len([p for p in _PARTS.split(question) if p.strip()]) > 1:
        return None
    return next((kind for asks, kind in _ASKS if asks.search(question)), None)


def holds(kind: Kind, text: str) -> bool:
    """`text` holds a value of `kind` (`_VALUES`)."""
    return any(pattern.search(text) for pattern in _VALUES[kind])


def mismatch(question: str, texts: Sequence[str]) -> bool:
    """The question asks for a kind of value none of `texts` holds."""
    kind = asked_for(question)
    return kind is not None and bool(texts) and not holds(kind, "\n".join(texts))


# A past or future period counted from now: "last quarter", "next year's", 去年, 下个月.
# Not after "to/into/until/before": "carry over into next year" asks about a rule.
_UNIT = r"(?P<unit>week|month|quarter|year)"
_ASKED_PERIOD = re.compile(
    rf"(?<!\bto )(?<!\binto )(?<!\buntil )(?<!\btill )(?<!\bbefore )"
    rf"\b(?:last|previous|past|next|coming|upcoming)\s+{_UNIT}(?:'s|’s)?\b"
    r"|(?P<zh>上周|上个?月|上季度|去年|前年|下周|下个?月|下季度|明年|后年)",
    re.IGNORECASE,
)
# A passage naming a period of a unit, not a standing rule ("each month", "per year"):
# the unit after a relative word, or what names one period of it (a date, Q3, 2025).
_RELATIVE = r"\b(?:last|previous|next|following|coming|this|current)\s+"
_NAMES = {
    "week": r"上周|下周|本周|这周",
    "month": rf"\b(?:{_MONTHS})\b\.?\s+(?:\d|of\b)|上个?月|下个?月|本月|这个月|\d+\s*月",
    "quarter": r"\b(?:first|second|third|fourth)\s+quarter|\bq[1-4]\b|季度",
    "year": r"(?<!\d)(?:19|20)\d\d(?!\d)|去年|明年|今年|后年|前年",
}
_NAMED_PERIOD = {
    unit: re.compile(rf"{_RELATIVE}{unit}|{names}", re.IGNORECASE) for unit, names in _NAMES.items()
}
_ZH_UNIT = {"周": "week", "月": "month", "季度": "quarter", "年": "year"}


def unnamed_period(question: str, texts: Sequence[str]) -> str | None:
    """A past or future period the question asks about ("last quarter") that no text names.

    "What was our on-time rate last quarter?" retrieves "we commit to 97.2% each calendar
    month": documents state standing rules, so a figure of one period (what it was, what
    it will be) is theirs only when they name that period. Only the question's own
    sentence counts: "I start next week. What do I wear?" asks about a rule.
    """
    asked = question_clause(question)
    match = _ASKED_PERIOD.search(asked)
    if match is None or not texts:
        return None
    unit = match.group("unit")
    if unit is None:
        zh = match.group("zh")
        unit = next(u for end, u in _ZH_UNIT.items() if zh.endswith(end))
    named = _NAMED_PERIOD[unit.lower()].search("\n".join(texts))
    return None if named else match.group()


# A year the question names: "the 2023 apprenticeship cohort", "2024年的营业额".
_ASKED_YEAR = re.compile(r"(?<![\d.:/-])(?:19|20)\d\d(?![\d.:/-]?\d)")


def unnamed_year(question: str, texts: Sequence[str]) -> str | None:
    """A year the question asks about that no text names: "How many apprentices were
    accepted into the 2023 cohort?" read against the programme's standing rules. Only the
    clause that asks (`question_clause`): "I started in 2024, how many days do I get?" asks
    about a rule. Not a year in a code or a version ("ISO 9001:2015")."""
    joined = "\n".join(texts)
    for match in _ASKED_YEAR.finditer(question_clause(question)):
        if not re.search(rf"(?<!\d){match.group()}(?!\d)", joined):
            return match.group()
    return None


# "How many parking spaces ...": the thing counted is the first plural word after "how
# many" (not "5-axis"), before the verb or a preposition ends its phrase. Irregular plurals
# ("people", "staff") are not read: the passages may count them by another word.
_HOW_MANY = re.compile(r"\bhow\s+many\s+([^?.,;!]*)", re.IGNORECASE)
_PHRASE_END = frozenset(
    "are is was were do does did can could will would should have has had of in at on for per "
    "until off with to from we i you they he she it my our your their the a an there this that "
    "each every".split()
)
_COUNT = re.compile(
    r"(?<![\w.-])\d[\d,.]*(?![\w])|\b(?:one|two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|fifteen|twenty|thirty|forty|fifty|hundred|dozen)\b",
    re.IGNORECASE,
)


def uncounted(question: str, texts: Sequence[str]) -> str | None:
    """The thing a "how many" question counts, when no text states a count of it.

    "How many parking spaces are there at the distribution center?" retrieves the
    center's hours: they hold numbers (so `mismatch` lets them pass) but count no spaces;
    nor does "Millrace makes parts on 5-axis machining centers" count the centers (a
    number of the question's own is none). A count is a number in the sentence naming
    the thing or the one after it (a FAQ answer after its question), or in a table that
    names it. Words are compared by their stem ("centers", "center").
    """
    head = _counted(question_clause(question))
    if head is None or not texts:
        return None
    own = {m.group().lower() for m in _COUNT.finditer(question)}
    for text in texts:
        for naming, read in _units(text):
            named = {stem(w.lower()) for w in re.findall(r"[A-Za-z]+", naming)}
            counts = {m.group().lower() for m in _COUNT.finditer(read)} - own
            if stem(head) in named and counts:
                return None
    return head


def _counted(clause: str) -> str | None:
    match = _HOW_MANY.search(clause)
    if match is None:
        return None
    for word in match.group(1).lower().split():
        if word in _PHRASE_END:
            return None
        if word.endswith("s") and word.isalpha() and len(word) > 3:
            return word
    return None


def _units(text: str) -> list[tuple[str, str]]:
    """(what names the thing, where its count is read): a table whole; each sentence, read
    with the one after it (a FAQ answer after its question), not the one before it."""
    table = table_rows(text)
    sentences = [text[start:end] for start, end in sentence_spans(text)]
    units = [(s, " ".join(sentences[i : i + 2])) for i, s in enumerate(sentences)]
    return ([(table, table)] if table else []) + units


def table_rows(text: str) -> str:
    """The markdown table rows of `text`, one table: its header row names what its rows hold."""
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith("|"))


def question_clause(question: str) -> str:
    """The last sentence that asks (ends with ? or ？), else the whole text; and of it, the
    clause with the first question word when dashes or semicolons join several: "sent in
    all my paperwork last week - how long till you tell me?" asks about the wait."""
    sentences = [question[start:end] for start, end in sentence_spans(question)]
    asking = [s for s in sentences if s.endswith(("?", "？"))]
    sentence = asking[-1] if asking else question
    clauses = _CLAUSE_BREAK.split(sentence)
    return _after_situation(next((c for c in clauses if _WH.search(c)), clauses[-1]))


def _after_situation(clause: str) -> str:
    """The question after a comma that ends the user's situation: "my son is turning 17
    next month, can he keep seeing the pediatrician?" asks whether he can. Only after a
    clause of `SITUATION_WORDS` words or more: "Last year, how many ...?" asks of last year."""
    parts = _ASKS_AFTER_COMMA.split(clause, maxsplit=1)
    if len(parts) == 2 and len(parts[0].split()) >= SITUATION_WORDS:
        return parts[1]
    return clause


# A comma followed by a question's opening words ("..., can he", "..., how long").
_ASKS_AFTER_COMMA = re.compile(
    r",\s+(?=(?:what|what's|whats|how|hows|when|where|wheres|who|which|why|can|could|do|does|did|is|are|will"
    r"|would|should|may|am|have|has)\b)",
    re.IGNORECASE,
)
SITUATION_WORDS = 4


# Where a user's message joins a situation and a question: " - ", " — ", "——", ";", "；".
_CLAUSE_BREAK = re.compile(r"\s+[-–—]+\s+|——|[;；]")
_WH = re.compile(
    r"\b(?:what|what's|whats|how|when|where|who|whom|whose|which|why)\b"
    r"|什么|多少|多久|几|哪|谁|何时|怎么|如何|为什么",
    re.IGNORECASE,
)
