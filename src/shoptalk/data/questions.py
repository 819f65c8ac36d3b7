"""Question files: JSONL files of domain, unanswerable and style questions -> question records.

    questions = read_questions(Path("questions/domain.jsonl"))

One JSON object a line; the kind is told by the keys (see `_kind_of`):

    {"question": ..., "must_include": [...], "answer"?: ..., "source"?: ...}   domain
    {"question": ..., "expect": "refusal"}  (or a bare "question")             unanswerable
    {"prompt": ..., "must_include"?, "must_not_include"?, "regex"?: [...]}      style

Unknown keys are kept on the record and ignored, so a suite can carry notes.
The eval stage groups the records into suites (`shoptalk.eval.questions`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shoptalk.data.documents import report
from shoptalk.errors import SourceError
from shoptalk.records import (
    DomainQuestion,
    Question,
    StyleQuestion,
    SuiteKind,
    UnanswerableQuestion,
)
from shoptalk.text import CJK_CHAR, is_chinese

_MODEL_OF: dict[SuiteKind, type[Question]] = {
    "domain": DomainQuestion,
    "unanswerable": UnanswerableQuestion,
    "style": StyleQuestion,
}
_EXPECTED_KEYS = (
    "expected 'question' with 'must_include' and/or 'answer' (domain), "
    "'question' with 'expect': 'refusal' (unanswerable), "
    "or 'prompt' (style)"
)


def _rows(path: Path, errors: list[SourceError] | None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; a line that is not JSON is reported."""
    try:
        # utf-8-sig: spreadsheet tools often save a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError(path, None, "question file not found") from None
    except UnicodeDecodeError as exc:
        raise SourceError(path, None, f"not UTF-8 text ({exc.reason})") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON: {exc.msg} (column {exc.colno})"
            report(SourceError(path, number, message), errors)
            continue
        yield number, row


def _kind_of(row: dict[str, Any], path: Path, line: int) -> SuiteKind:
    has_question, has_prompt = "question" in row, "prompt" in row
    if has_question and has_prompt:
        raise SourceError(path, line, "has both 'question' and 'prompt'; a row is one or the other")
    if has_prompt:
        return "style"
    if not has_question:
        raise SourceError(path, line, f"not a question: found keys {sorted(row)}; {_EXPECTED_KEYS}")
    if "expect" in row:
        if row["expect"] != "refusal":
            raise SourceError(path, line, f"'expect' must be \"refusal\", got {row['expect']!r}")
        return "unanswerable"
    if "must_include" in row or "answer" in row:
        return "domain"
    return "unanswerable"


def _check_strings(row: dict[str, Any], key: str, path: Path, line: int) -> None:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SourceError(
            path, line, f"'{key}' must be a list of non-empty strings, got {json.dumps(value)}"
        )


def _check_row(kind: SuiteKind, row: dict[str, Any], path: Path, line: int) -> None:
    """Checks pydantic would report less clearly, each naming the key."""
    text_key = "prompt" if kind == "style" else "question"
    if not isinstance(row[text_key], str) or not row[text_key].strip():
        raise SourceError(path, line, f"'{text_key}' must be a non-empty string")
    if kind == "domain" and not isinstance(row.get("answer", ""), str):
        raise SourceError(path, line, f"'answer' must be a string, got {json.dumps(row['answer'])}")
    lists = ("must_include", "must_not_include", "regex") if kind == "style" else ("must_include",)
    for key in lists:
        _check_strings(row, key, path, line)
    for pattern in row.get("regex", []) if kind == "style" else []:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SourceError(path, line, f"invalid regex {pattern!r}: {exc}") from None


def _domain_facts(row: dict[str, Any], path: Path, line: int) -> list[str]:
    if row.get("must_include"):
        return row["must_include"]
    # An answer without explicit facts is scored on facts derived from it,
    # the same way held-out FAQ rows are (see `key_facts`).
    facts = key_facts(row.get("answer") or "")
    if not facts:
        raise SourceError(
            path, line, "a domain question needs a non-empty 'must_include' or a non-empty 'answer'"
        )
    return facts


def parse_question(row: Any, path: Path, line: int) -> Question:
    """One JSONL row as a question of the kind its keys say; SourceError otherwise."""
    if not isinstance(row, dict):
        raise SourceError(path, line, f"expected a JSON object, got {type(row).__name__}")
    kind = _kind_of(row, path, line)
    _check_row(kind, row, path, line)
    fields = {**row, "file": str(path), "line": line}
    if kind == "domain":
        fields["must_include"] = _domain_facts(row, path, line)
    try:
        return _MODEL_OF[kind].model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in exc.errors()
        )
        raise SourceError(path, line, f"invalid {kind} question: {problems}") from None


def question_kind(question: Question) -> SuiteKind:
    """The suite kind a question belongs to."""
    return next(kind for kind, model in _MODEL_OF.items() if isinstance(question, model))


def read_questions(path: Path, errors: list[SourceError] | None = None) -> list[Question]:
    """Every question of one file, in order.

    With `errors=None` the first problem raises; with a list, every problem is
    appended to it and the good rows are kept (skip-and-report), as for sources.
    """
    questions: list[Question] = []
    reported = len(errors) if errors is not None else 0
    try:
        for line, row in _rows(path, errors):
            try:
                questions.append(parse_question(row, path, line))
            except SourceError as err:
                report(err, errors)
    except SourceError as err:  # the file as a whole (missing, not UTF-8)
        report(err, errors)
        return questions
    if not questions and (errors is None or len(errors) == reported):
        report(SourceError(path, None, "no questions: the file is empty"), errors)
    return questions


# --- key facts -----------------------------------------------------------------
#
# A held-out FAQ answer has no hand-written facts, so we pick up to two short,
# distinctive spans a correct answer must repeat, without a model. Candidates,
# best first:
#   1. amounts: a currency with a number ("$1,250", "¥300", "USD 40"), a number
#      with a unit from a known list ("47 days", "3.5%", "30-day", "75天",
#      "1,250元"), or a Chinese numeral with a unit ("七天", "三个工作日");
#   2. codes: tokens mixing letters and digits ("KX-220", "A4", "SKU123");
#   3. names: two or more capitalized words not at sentence start ("Maria
#      Chen"), since a sentence's first word is capitalized anyway;
#   4. e-mail addresses;
#   5. bare numbers of two or more digits ("1998", "555-0100").
# A candidate overlapping a better one is dropped, and anything inside an
# e-mail address belongs to it. Ties go to the earlier span. With no candidate
# at all, the fallback is the longest content word (jieba words for mostly
# Chinese text).

_NUM = r"\d+(?:[.,-]\d+)*"  # "1,250", "3.5", "3-5", "555-0100"
_CJK_UNITS = (
    "个工作日|工作日|小时|分钟|个月|周年|公里|公斤|千克|美元|欧元|英镑|万元|亿元|"
    "天|日|周|月|年|元|块|个|次|件|台|张|页|岁|号|楼|折|倍|份|秒|分|米|克|人|万|亿"
)
_ZH_NUM_UNITS = "个工作日|工作日|小时|分钟|个月|周年|天|周|年|元|块|岁|折|倍"
_CURRENCY = re.compile(
    rf"(?:[$€£¥￥]\s?|(?<![A-Za-z])(?:USD|EUR|GBP|RMB|CNY|HKD|JPY)\s?){_NUM}"
    r"(?:\s?(?:million|billion|thousand)|[kKmM])?(?![A-Za-z0-9])"
)
# English units a number may carry; an unknown word after a number is not
# taken as its unit ("open 9 to 5 daily"), the number then only counts bare.
_EN_UNITS = (
    r"(?:business|working|calendar)[\s-]days?|seconds?|secs?|minutes?|mins?|hours?|hrs?|"
    r"days?|nights?|weeks?|months?|years?|yrs?|dollars?|cents?|euros?|pounds?|yuan|"
    r"usd|eur|gbp|cny|rmb|percent|kg|kgs|grams?|g|lbs?|oz|ounces?|tons?|km|cm|mm|m|"
    r"meters?|metres?|miles?|mi|ft|feet|inch(?:es)?|liters?|litres?|ml|l|tb|gb|mb|kb|"
    r"ghz|mhz|hz|volts?|v|watts?|w|kw|kwh|mah|items?|pieces?|pcs|units?|people|persons?|"
    r"users?|seats?|licen[cs]es?|times|stars?|points?|copies|orders?|packs?|boxes?|"
    r"employees?|customers?|stores?|locations?|rooms?|floors?"
)
_NUMBER = re.compile(
    rf"(?<![A-Za-z0-9.,\-])(?P<num>{_NUM})"
    rf"(?P<unit>\s?[%％]|\s?(?:{_CJK_UNITS})|(?i:[\s-]?(?:{_EN_UNITS}))(?![A-Za-z0-9]))?"
)
_ZH_NUMBER = re.compile(rf"[零一二两三四五六七八九十百千万]+(?:{_ZH_NUM_UNITS})")
_CODE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![A-Za-z0-9])")
_NAME = re.compile(r"(?<![A-Za-z])[A-Z][a-zA-Z]+(?:[ \t]+[A-Z][a-zA-Z]+)+(?![A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SENTENCE_START = re.compile(r"(?:^|[.!?。！？]\s*|\n\s*)$")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
# Words too common to be a key fact (and never a unit after a number).
_EN_STOPWORD_TEXT = """
a an the and or but of to in on at for by with from into as is are was were be been
it its this that these those if then than per via our your their we you they he she
can will would should may must not no yes all any each every some more most other
have has had do does did also only just about after before within between please
there here which what when where who how
"""
_ZH_STOPWORD_TEXT = """
我们 你们 他们 您们 我们的 您的 可以 如果 因为 所以 但是 以及 或者 没有 需要 这个 那个
什么 怎么 已经 进行 通过 可能 就是 还是 以上 以下 提供 支持
"""
_EN_STOPWORDS = frozenset(_EN_STOPWORD_TEXT.split())
_ZH_STOPWORDS = frozenset(_ZH_STOPWORD_TEXT.split())

Span = tuple[int, int]


def _amount_spans(text: str) -> list[Span]:
    spans = [m.span() for m in _CURRENCY.finditer(text)]
    spans += [m.span() for m in _ZH_NUMBER.finditer(text)]
    spans += [m.span() for m in _NUMBER.finditer(text) if m.group("unit")]
    return sorted(spans)


def _name_spans(text: str) -> list[Span]:
    spans = []
    for m in _NAME.finditer(text):
        start, words = m.start(), m.group().split()
        if _SENTENCE_START.search(text[:start]):
            # The first word may be capitalized only because it opens a sentence.
            start = text.index(words[1], start + len(words[0]))
            words = words[1:]
        if len(words) >= 2:
            spans.append((start, m.end()))
    return spans


def _candidate_spans(text: str) -> tuple[list[list[Span]], list[Span]]:
    """Candidate spans by priority (see the comment above), and the e-mail spans."""
    codes = [
        m.span()
        for m in _CODE.finditer(text)
        if re.search(r"[A-Za-z]", m.group()) and re.search(r"\d", m.group())
    ]
    bare_numbers = [
        m.span("num") for m in _NUMBER.finditer(text) if len(re.sub(r"\D", "", m["num"])) >= 2
    ]
    emails = [m.span() for m in _EMAIL.finditer(text)]
    return [_amount_spans(text), codes, _name_spans(text), emails, bare_numbers], emails


def _overlaps(span: Span, others: list[Span]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def _longest_content_word(text: str) -> str | None:
    if is_chinese(text):
        import jieba  # late: loading its dictionary takes most of a second

        jieba.setLogLevel(30)  # its "Building prefix dict" chatter is INFO
        words = [
            w
            for w in jieba.lcut(text)
            if len(w) >= 2 and CJK_CHAR.match(w) and w not in _ZH_STOPWORDS
        ]
    else:
        words = [w for w in _LATIN_WORD.findall(text) if w.lower() not in _EN_STOPWORDS]
    return max(words, key=len) if words else None  # max keeps the first of equals


def key_facts(answer: str) -> list[str]:
    """Up to two short distinctive spans of `answer` a correct reply must contain."""
    tiers, emails = _candidate_spans(answer)
    taken: list[Span] = []
    for tier in tiers:
        for span in sorted(tier):
            inside_email = span not in emails and _overlaps(span, emails)
            if not inside_email and not _overlaps(span, taken):
                taken.append(span)
    facts: list[str] = []
    for start, end in taken:
        fact = answer[start:end].strip()
        if fact and fact not in facts:
            facts.append(fact)
    if facts:
        return facts[:2]
    word = _longest_content_word(answer)
    return [word] if word else []
