"""How a tone guide writes codes, dates and amounts, read from its examples, and applied.

    forms = read_forms(guide_sentences)   # [ValueForm(kind="code", example="SO-48213", ...)]
    apply_forms("order 48213 ships 06/14/2024 for $830", forms)
    # -> "order SO-48213 ships June 14, 2024 for $830.00 USD"

Guides state formats by example, not by grammar: 'always write "SO-" followed by the
five-digit number, for example SO-48213', 'Dates: month name, day and four-digit year,
for example "June 14, 2024". Never use numeric formats such as 06/14/2024', 'Amounts:
... for example "$1,250.00 USD"'. The example is the form: its letters, separators and
digit groups for a code, its order of month, day and year for a date, its symbol,
separators, decimals and currency code for an amount. A draft's values (the model's, or
copied from the adviser's request: "order 48213", "06/14/2024", "$1284.5") are rewritten
into the form; no value changes, only how it is written. Our own because no library reads
a format from an example sentence; dates use the standard library's month names.
"""

from __future__ import annotations

import calendar
import datetime
import re
from typing import Literal

from pydantic import BaseModel, Field

# Value edges are ASCII: Chinese text runs into a value ("例如SO-48213。", "于2024/6/14发货").
_MONTHS = [m for m in calendar.month_name if m]
_MONTH = "|".join(_MONTHS)
# A date the guide shows as its form: "June 14, 2024", "14 June 2024".
_WORD_DATE = re.compile(
    rf"\b(?:(?:{_MONTH})\s+\d{{1,2}},?\s+\d{{4}}|\d{{1,2}}\s+(?:{_MONTH})\s+\d{{4}})\b"
)
# The Chinese form: "2024年6月14日"; numeric dates in Chinese text are year first (2024/6/14).
_ZH_DATE = re.compile(r"\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*[日号]")
_YEAR_FIRST = re.compile(
    r"(?<![A-Za-z0-9_/.-])(\d{4})([/.-])(\d{1,2})\2(\d{1,2})(?![A-Za-z0-9_/]|\.\d)"
)
# An amount with the parts a form fixes: "$1,250.00 USD", "€1.250,00", "£12.50".
_MONEY_FORM = re.compile(r"[$£€¥]\s?\d{1,3}(?:[,.]\d{3})*[.,]\d{2}(?:\s?[A-Z]{3}\b)?")
# A reference code: capital letters, then groups of digits joined by dashes ("SO-48213",
# "RMA-2024-01387"); not a part number with letters after its digits ("BW-HF-2200-08-SS").
_CODE_FORM = re.compile(r"(?<![A-Za-z0-9_-])([A-Z]{2,6})-(\d{2,}(?:-\d{2,})*)(?![A-Za-z0-9_-])")
# A guide's quoted form: double and CJK quotes anywhere; single quotes only off word edges,
# so "that's" stays whole; Markdown's code quotes (`Hello Marcus,`), which some guides show
# their forms in. Shared by `data.style` and `data.masked_numbers`.
QUOTE = re.compile(
    r"[\"“「『]([^\"“”「」『』\n]{1,240})[\"”」』]|(?<!\w)['‘]([^'‘’\n]{1,80}?)['’](?!\w)"
    r"|`([^`\n]{1,240})`"
)


def quote_text(match: re.Match[str]) -> str:
    """What a `QUOTE` match quotes."""
    return next((g for g in match.groups() if g), "")


def quoted(sentence: str) -> list[str]:
    """The forms `sentence` quotes, stripped, empty ones left out."""
    found = [quote_text(m) for m in QUOTE.finditer(sentence)]
    return [q.strip() for q in found if q.strip(" ,，")]


# What introduces an example (of a value's form here, of a phrase in `data.style`).
EXAMPLE = re.compile(r"\b(for example|for instance|e\.g\.|such as|like)\b|例如|比如|如：", re.I)
# A numeric date in a text: 06/14/2024, 14.6.24, 2024-06-14 is ISO and left as written.
_NUMERIC_DATE = re.compile(
    r"(?<![A-Za-z0-9_/.-])(\d{1,2})([/.])(\d{1,2})\2(\d{4}|\d{2})(?![A-Za-z0-9_/]|\.\d)"
)
# A time of day with a.m./p.m. in any writing: "5:30 p.m.", "9:30am", "4:15 PM", "9 a.m.".
_TIME = re.compile(
    r"(?<![\d:.])(\d{1,2})(?::(\d{2}))?\s?((?:[ap]\.\s?m\.?|[ap]m|[AP]\.\s?M\.?|[AP]M))(?![A-Za-z])"
)
_AMOUNT = re.compile(r"([$£€¥])\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:\s?([A-Z]{3})\b)?")
# English day names, not the locale's (`calendar.day_name` follows it): Monday is 0.
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
# A date the guide shows with its day of the week: "by Friday, March 14, 2025".
_WEEKDAY_DATE = re.compile(rf"\b(?:{'|'.join(_WEEKDAYS)}),?\s+{_WORD_DATE.pattern}")
# A sentence asking for the day of the week ("For deadlines, include the day of the week";
# "Add the weekday when the rider must do something on that day": a deadline too).
_WEEKDAY_RULE = re.compile(r"\bday of the week\b|\bweekdays?\b|\bday names?\b", re.I)
# What a deadline's date follows ("pay by", "no later than", "due on").
_DEADLINE = re.compile(
    rf"\bdeadlines?\b|\bdue\b|\bmust\b|\b(?:has|have|needs?) to\b|\bby\s+\W?(?:{'|'.join(_WEEKDAYS)})\b",
    re.I,
)
_BEFORE_DEADLINE = re.compile(
    r"\b(?:by|before|until|till|no later than|due(?:\s+(?:on|by))?)\s+$", re.I
)
# A word date in a text, its parts: month first ("March 14, 2025") or day first.
_MONTH_FIRST = re.compile(rf"\b({_MONTH})\s+(\d{{1,2}}),?\s+(\d{{4}})\b")
_DAY_FIRST = re.compile(rf"\b(\d{{1,2}})\s+({_MONTH})\s+(\d{{4}})\b")


class ValueForm(BaseModel, extra="forbid"):
    """One kind of value as the guide writes it, by its example."""

    kind: Literal["code", "date", "money", "time"] = Field(description="what kind of value")
    example: str = Field(description="the guide's example: 'SO-48213', 'June 14, 2024'")
    label: str = Field(
        "", description="codes: the word a bare number follows in a sentence ('order 48213')"
    )
    day_first: list[str] = Field(
        default_factory=list,
        description="dates: separators of numeric dates read day first ('.' for 14.6.24)",
    )
    weekday: Literal["", "deadlines", "always"] = Field(
        "",
        description="dates: the day of the week written before them ('by Friday, March 14, "
        "2025'), for deadlines only or always",
    )
    source: str = Field("", description="the guide's sentence it was read from")


def dated(text: str) -> bool:
    """`text` names a day: "March 14, 2025", "2025年3月14日", "03/14/2025", "2025-03-14"."""
    found = (_WORD_DATE, _ZH_DATE, _NUMERIC_DATE, _YEAR_FIRST)
    return any(pattern.search(text) for pattern in found)


def read_forms(sentences: list[str]) -> list[ValueForm]:
    """The value forms the guide's sentences give by example, one per code prefix and kind.

    A sentence gives a form when it shows an example ("for example SO-48213", or against a
    form to avoid: "$45.00, not $45") and says how to write (`_WRITES`); the sentence after
    it may list the forms to avoid ("Never write "#48213" or the number alone"), which say
    how numeric dates are ordered and the word a bare number follows."""
    forms: list[ValueForm] = []
    for at, sentence in enumerate(sentences):
        shown = EXAMPLE.search(sentence) or _CONTRASTED.search(sentence)
        if not (shown and _WRITES.search(sentence)):
            continue
        avoided = " ".join(sentences[at : at + 2])
        for form in _forms_in(sentence, avoided):
            if not any(f.kind == form.kind and _prefix(f) == _prefix(form) for f in forms):
                forms.append(form)
    return _with_weekdays(forms, sentences)


def _with_weekdays(forms: list[ValueForm], sentences: list[str]) -> list[ValueForm]:
    """The date form with the day of the week when a sentence asks for it by example ("For
    deadlines, include the day of the week: "by Friday, March 14, 2025.""): for deadlines
    when the sentence speaks of them, else always."""
    for sentence in sentences:
        shown = _WEEKDAY_DATE.search(sentence)
        if not (shown and (_WEEKDAY_RULE.search(sentence) or _WRITES.search(sentence))):
            continue
        weekday = "deadlines" if _DEADLINE.search(sentence) else "always"
        date = next((f for f in forms if f.kind == "date"), None)
        if date is None:
            example = _WORD_DATE.search(shown.group()).group()
            date = ValueForm(
                kind="date", example=example, day_first=_day_first(example, ""), source=sentence
            )
            forms.append(date)
        if not _ZH_DATE.fullmatch(date.example):
            date.weekday = weekday
            date.source = date.source if sentence in date.source else f"{date.source} {sentence}"
        break
    return forms


# A form shown against one to avoid: "**$45.00**, not $45", "5:30 p.m., not 5:30PM".
_CONTRASTED = re.compile(r"\S,?\s+not\s+\W?[$£€¥\d]")
# A sentence about how to write a value ("always write", "format", "Dates:").
_WRITES = re.compile(
    r"\b(?:always|write|written|format|formats|use|full|exactly|dates?|amounts?|numbers?)\b"
    r"|格式|写作|写成",
    re.I,
)


def _forms_in(sentence: str, avoided: str) -> list[ValueForm]:
    found: list[ValueForm] = []
    zh = _ZH_DATE.search(sentence)
    if zh:
        found.append(ValueForm(kind="date", example=zh.group(), source=sentence))
    date = _WORD_DATE.search(sentence)
    if date and not zh:
        found.append(
            ValueForm(
                kind="date",
                example=date.group(),
                day_first=_day_first(date.group(), avoided),
                source=sentence,
            )
        )
    money = _MONEY_FORM.search(sentence)
    if money:
        found.append(ValueForm(kind="money", example=money.group(), source=sentence))
    time = _TIME.search(sentence)
    if time:
        found.append(ValueForm(kind="time", example=time.group(), source=sentence))
    for code in _CODE_FORM.finditer(sentence):
        label = _label(sentence, code.group(2), avoided)
        found.append(ValueForm(kind="code", example=code.group(), label=label, source=sentence))
    return found


def _day_first(example: str, avoided: str) -> list[str]:
    """Separators whose numeric dates are day first: shown by a numeric form of the example
    date ("June 14, 2024" and 06/14/2024: month first), by a day over 12, else by the example's
    own order (a month-first example writes numeric dates month first)."""
    month = next(i for i, m in enumerate(_MONTHS, 1) if m in example)
    day = int(re.search(r"\b(\d{1,2})\b", example).group(1))
    first: list[str] = []
    for a, sep, b, _ in _NUMERIC_DATE.findall(avoided):
        a, b = int(a), int(b)
        if (a, b) == (day, month) or a > 12:
            first.append(sep)
    if not example[0].isdigit() or first:
        return sorted(set(first))
    return ["/", "."]


def _label(sentence: str, digits: str, avoided: str) -> str:
    """The word a bare number of a one-group code follows: the noun of the rule's label
    ("Sales orders: always write ..." -> "order"), else of an avoided form ("order no. 48213")."""
    if "-" in digits:
        return ""
    label = re.match(r"^\s*([^:]{1,40}):", sentence)
    words = re.findall(r"[A-Za-z]+", label.group(1)) if label else []
    if not words:
        lead = re.search(rf"\b([A-Za-z]+)\s+(?:no\.?|number|#)?\s*{digits}\b", avoided)
        words = [lead.group(1)] if lead else []
    return words[-1].lower().removesuffix("s") if words else ""


def _prefix(form: ValueForm) -> str:
    return form.example.split("-")[0] if form.kind == "code" else ""


def apply_forms(text: str, forms: list[ValueForm]) -> str:
    """`text` with its codes, dates and amounts written in the guide's forms."""
    for form in forms:
        if form.kind == "code":
            text = _write_code(text, form)
        elif form.kind == "date" and _ZH_DATE.fullmatch(form.example):
            text = _YEAR_FIRST.sub(_write_zh_date, text)
        elif form.kind == "date":
            text = _NUMERIC_DATE.sub(lambda m, f=form: _write_date(m, f), text)
            text = _with_weekday(text, form.weekday) if form.weekday else text
        elif form.kind == "time":
            text = _TIME.sub(lambda m, f=form: _write_time(m, f), text)
        else:
            text = _AMOUNT.sub(lambda m, f=form: _write_amount(m, f), text)
    return text


def _write_time(match: re.Match[str], form: ValueForm) -> str:
    """'9:30am' -> '9:30 a.m.' when the guide writes '5:30 p.m.': its space, periods and case."""
    example = _TIME.fullmatch(form.example)
    if example is None:
        return match.group()
    hour, minutes, half = match.group(1), match.group(2), match.group(3)[0].lower()
    mark = example.group(3)
    letters = f"{half}.m." if "." in mark else f"{half}m"
    letters = letters.upper() if mark.isupper() else letters
    space = " " if re.search(r"\d\s", form.example) else ""
    return f"{hour}{':' + minutes if minutes else ''}{space}{letters}"


def _write_code(text: str, form: ValueForm) -> str:
    """'RMA 2024-1387' -> 'RMA-2024-01387'; with a label, 'order 48213' -> 'order SO-48213'
    and '#48213' -> 'SO-48213' (a number of exactly the form's digits)."""
    prefix, *groups = form.example.split("-")
    sizes = [len(g) for g in groups]
    # The first group as long as the example's (a year, a whole number), later ones may
    # have lost their leading zeros ("2024-1387"); groups are apart, never run together.
    first, *rest = sizes
    parts = r"[\s:#.-]+".join([rf"(\d{{{first}}})", *(rf"(\d{{1,{n}}})" for n in rest)])
    prefixed = re.compile(
        rf"(?<![A-Za-z0-9_-]){prefix}(?:\s*(?:no\.?|number|#)?)[\s:#.-]*{parts}(?![A-Za-z0-9_-])"
    )

    def canonical(match: re.Match[str]) -> str:
        padded = [g.zfill(n) for g, n in zip(match.groups(), sizes, strict=True)]
        return "-".join([prefix, *padded])

    text = prefixed.sub(canonical, text)
    if len(sizes) == 1:
        size = sizes[0]
        text = re.sub(
            rf"(?<![A-Za-z0-9_-])#\s?(\d{{{size}}})(?![A-Za-z0-9_-])", rf"{prefix}-\1", text
        )
        if form.label:
            bare = rf"(\b{form.label}s?\s+)(?:no\.?\s*|number\s+)?(\d{{{size}}})(?![A-Za-z0-9_-])"
            text = re.sub(bare, rf"\1{prefix}-\2", text, flags=re.IGNORECASE)
    return text


def _write_date(match: re.Match[str], form: ValueForm) -> str:
    a, sep, b, year = match.groups()
    day, month = (int(a), int(b)) if sep in form.day_first else (int(b), int(a))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return match.group()
    full = int(year) + 2000 if len(year) == 2 else int(year)
    name = _MONTHS[month - 1]
    if form.example[0].isdigit():
        return f"{day} {name} {full}"
    comma = "," if "," in form.example else ""
    return f"{name} {day}{comma} {full}"


def _with_weekday(text: str, when: str) -> str:
    """`text` with the day of the week before its word dates ("by March 14, 2025" -> "by
    Friday, March 14, 2025"): every date, or a deadline's only (after "by", "before", "due")."""

    def named(match: re.Match[str], month: str, day: str, year: str) -> str:
        before = text[: match.start()]
        if re.search(rf"(?:{'|'.join(_WEEKDAYS)}),?\s+$", before):
            return match.group()
        if when == "deadlines" and not _BEFORE_DEADLINE.search(before):
            return match.group()
        try:
            weekday = _WEEKDAYS[
                datetime.date(int(year), _MONTHS.index(month) + 1, int(day)).weekday()
            ]
        except ValueError:  # "February 30, 2025": not a day, left as written
            return match.group()
        return f"{weekday}, {match.group()}"

    text = _MONTH_FIRST.sub(lambda m: named(m, m.group(1), m.group(2), m.group(3)), text)
    return _DAY_FIRST.sub(lambda m: named(m, m.group(2), m.group(1), m.group(3)), text)


def _write_zh_date(match: re.Match[str]) -> str:
    year, _, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group()
    return f"{year}年{int(month)}月{int(day)}日"


def _write_amount(match: re.Match[str], form: ValueForm) -> str:
    symbol, number, code = match.groups()
    example = _AMOUNT.search(form.example)
    if example is None or symbol != example.group(1):
        return match.group()
    places = len(example.group(2).rpartition(".")[2]) if "." in example.group(2) else 0
    written_places = len(number.rpartition(".")[2]) if "." in number else 0
    # No value changes: more decimals than the form has, or a comma for decimals
    # ("€1.250,00"), is left as written.
    if written_places > places or re.search(r",\d{2}$", example.group(2)):
        return match.group()
    try:
        value = float(number.replace(",", ""))
    except ValueError:
        return match.group()
    grouped = "," in example.group(2)
    written = f"{value:,.{places}f}" if grouped else f"{value:.{places}f}"
    suffix = example.group(3) or code
    spaced = " " if re.search(r"\d\s[A-Z]{3}", form.example) else ""
    return f"{symbol}{written}{spaced if suffix else ''}{suffix or ''}"


def form_code(text: str, forms: list[ValueForm]) -> str:
    """The first code in `text` of a form the guide gives, as the guide writes it ("RMA
    2024-01387" -> "RMA-2024-01387", "order 48213" -> "SO-48213"), or ""."""
    for form in (f for f in forms if f.kind == "code"):
        prefix = _prefix(form)
        written = re.search(
            rf"(?<![A-Za-z0-9_-]){prefix}-\d+(?:-\d+)*(?![A-Za-z0-9_-])", _write_code(text, form)
        )
        if written:
            return written.group()
    return ""
