"""Find and redact personal data and secrets before anything is trained on it.

Redaction is on by default: a model memorizes what it is trained on, and a
customer's phone number in a support chat must not come back out of the API.
Each value becomes a typed placeholder (`<EMAIL_1>`, `<PHONE_2>`) that is the
same everywhere in one record, so the conversation still reads coherently
("write to <EMAIL_1> ... yes, <EMAIL_1> is right").

Detection is rules plus validation, never a guess from digits alone: card
numbers must pass Luhn and start like a card, resident IDs their MOD 11-2
checksum and a real birth date (or, after "身份证" or "ID", the birth date alone:
a mistyped ID is still personal data), IBANs mod 97, IPs their octet ranges. That is
what keeps order numbers, invoice numbers, dates and product codes intact.
Passports and generic high-entropy tokens have no checksum, so they count only
next to a keyword ("passport", "护照", "token", "密钥"...).

All patterns use ASCII classes (`re.ASCII`): in Python `\\w` and `\\d` also match
Chinese characters and full-width digits, which would glue "手机13812345678"
into one word and hide the number.

People's names, organizations and street addresses are found by NER, opt-in
(`ner`), in `pii_ner`; those spans only fill gaps between the validated ones.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from shoptalk.config import PiiSettings
from shoptalk.records import Conversation

PiiType = Literal[
    "email", "phone", "cn_id", "bank_card", "iban", "ip", "passport", "url_credentials", "secret",
    "person", "org", "address",
]  # fmt: skip
# On an overlap the longer span wins; on equal length, the type listed first.
PRIORITY: tuple[PiiType, ...] = (
    "secret",
    "url_credentials",
    "email",
    "iban",
    "cn_id",
    "bank_card",
    "passport",
    "ip",
    "phone",
)
NER_TYPES: tuple[PiiType, ...] = ("person", "org", "address")


class Span(BaseModel, frozen=True):
    start: int
    end: int
    type: PiiType


class Redaction(BaseModel):
    text: str
    counts: dict[str, int]


EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])",
    re.A,
)
URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s:/@]*:[^\s@/]+@"
    r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::\d{1,5})?",
    re.A,
)
PHONES = [
    # International: +CC, then groups; 7-15 digits in all (checked after matching).
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}(?![\w-])", re.A),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567; separators required.
    re.compile(
        r"(?<![\w-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])", re.A
    ),
    # Mainland China mobile, 3-4-4, optional +86; never the tail of a longer digit run.
    re.compile(
        r"(?<![\w+-])(?<!\d[ -])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![\w-])", re.A
    ),
    # China landline: area code 0xx(x) with a dash or in brackets, then 7-8 digits.
    re.compile(r"(?<![\w-])(?:[(（]0\d{2,3}[)）][ -]?|0\d{2,3}-)\d{7,8}(?![\w-])", re.A),
]
CN_ID = re.compile(r"(?<![\w-])\d{17}[\dXx](?![\w-])", re.A)
BANK_CARD = re.compile(
    r"(?<![\w.-])(?<!\d[ -])"
    r"(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\w-])",
    re.A,
)
IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])", re.A
)
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?!\w|\.\d)", re.A)
IPV6 = re.compile(
    r"(?<![\w.])(?<![0-9A-Fa-f]:)(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])",
    re.A,
)
# "version 1.2.3.4" is a version, not an address.
VERSION_BEFORE = re.compile(
    r"(?<![A-Za-z])(?:version|ver\.?|release|build|版本号?)\s*[:：]?\s*$", re.I
)
PASSPORT_NUMBER = re.compile(r"(?<![A-Za-z0-9-])(?:[A-Z]{1,2}\d{6,8}|\d{9})(?![A-Za-z0-9-])", re.A)
# "身份证(号码)", "ID", "ID no.", "ID card number": the number that follows is a resident ID.
CN_ID_BEFORE = re.compile(r"身份证|(?<![A-Za-z])I\.?D\.?(?![A-Za-z])")
PASSPORT_BEFORE = re.compile(r"passport|pass\s*no|护照", re.I)
SECRET_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[bpars]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"
    r")(?![A-Za-z0-9_-])",
    re.A,
)
# A key pasted without its END line (cut off in a chat) still loses its base64 lines.
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|(?:\r?\n[A-Za-z0-9+/=]{16,})+)",
    re.S,
)
TOKEN = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{32,}={0,2}(?![A-Za-z0-9_+/=-])", re.A)
# "my password is Summer2024!": a password said out loud has low entropy but is still a secret.
PASSWORD_VALUE = re.compile(
    r"(?:password|passwd|pwd|密码|口令)\s*(?:is|是|为|[:=：])\s*([!-~]{5,63}[A-Za-z0-9!@#$%^&*_+=-])",
    re.I | re.A,
)

# Cheap gates, each checked before the expensive patterns it guards.
LONG_NUMBER = re.compile(r"\d(?:[ ().-]?\d){5}", re.A)
NEEDS_NUMBER = {"phone", "cn_id", "bank_card", "iban", "passport"}
DOTTED = re.compile(r"\d\.\d{1,3}\.\d", re.A)
SECRET_PREFIXES = tuple("sk- ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ xox AKIA ASIA AIza eyJ".split())
SECRET_WORDS = tuple("key token secret passw pwd credential bearer 密钥 令牌 密码 口令".split())
SECRET_NEAR = re.compile("|".join(SECRET_WORDS), re.I)

CN_PROVINCES = {
    *"11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46".split(),
    *"50 51 52 53 54 61 62 63 64 65 71 81 82 83".split(),
}
CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# IBAN lengths of common countries; others only need 15-34 characters.
IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    """Luhn, plus a length and prefix some card network issues (Visa 4, Mastercard
    51-55/2221-2720, Amex/JCB/Diners 3, UnionPay/Discover/Maestro 5-6): Luhn alone
    passes one random number in ten, and date-like order numbers start with 1 or 20."""
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    if len(digits) == 13:  # only old Visa; EAN-13 barcodes (690... in China) are 13 digits too
        network = digits[0] == "4"
    elif len(digits) in (14, 15):  # Diners, Amex
        network = digits[0] == "3"
    else:
        network = digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720
    return network and luhn_ok(digits)


def cn_id_shaped(value: str) -> bool:
    """18 characters starting with a province code and a real birth date."""
    return len(value) == 18 and value[:2] in CN_PROVINCES and cn_id_date_ok(value)


def cn_id_date_ok(value: str) -> bool:
    """Characters 7-14 of a resident ID are a real birth date (YYYYMMDD) since 1900."""
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def cn_id_ok(value: str) -> bool:
    if not cn_id_shaped(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], CN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == value[17].upper()


def iban_ok(value: str) -> bool:
    compact = value.replace(" ", "")
    expected = IBAN_LENGTHS.get(compact[:2])
    if (expected and len(compact) != expected) or not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _spans(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int, str]]:
    for m in pattern.finditer(text):
        yield m.start(), m.end(), m.group()


def find_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" in text:
        yield from ((s, e) for s, e, _ in _spans(EMAIL, text))


def find_url_credentials(text: str) -> Iterator[tuple[int, int]]:
    if "://" in text:
        yield from ((s, e) for s, e, _ in _spans(URL_CREDENTIALS, text))


def find_phones(text: str) -> Iterator[tuple[int, int]]:
    for pattern in PHONES:
        for s, e, value in _spans(pattern, text):
            if 7 <= sum(ch.isdigit() for ch in value) <= 15:
                yield s, e


def find_cn_ids(text: str) -> Iterator[tuple[int, int]]:
    """Valid resident IDs; and mistyped ones (check digit or region wrong, the birth
    date real) where the text says it is an ID: a mistyped ID is still personal data."""
    for s, e, value in _spans(CN_ID, text):
        if cn_id_ok(value) or (
            cn_id_date_ok(value) and CN_ID_BEFORE.search(text, max(0, s - 24), s)
        ):
            yield s, e


def find_bank_cards(text: str) -> Iterator[tuple[int, int]]:
    for s, e, value in _spans(BANK_CARD, text):
        number = value.replace(" ", "").replace("-", "")
        # An ID number with a typo in its check digit is still not a card.
        if card_ok(number) and not cn_id_shaped(number):
            yield s, e


def find_ibans(text: str) -> Iterator[tuple[int, int]]:
    yield from ((s, e) for s, e, v in _spans(IBAN, text) if iban_ok(v))


def find_ips(text: str) -> Iterator[tuple[int, int]]:
    if DOTTED.search(text):
        for s, e, _ in _spans(IPV4, text):
            if not VERSION_BEFORE.search(text, max(0, s - 12), s):
                yield s, e
    if "::" in text or text.count(":") >= 7:
        for s, e, value in _spans(IPV6, text):
            # "::1" and "fe80::" are not anyone's address; need two non-empty groups.
            if sum(1 for g in value.split(":") if g) >= 2 and _is_ipv6(value):
                yield s, e


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def find_passports(text: str) -> Iterator[tuple[int, int]]:
    for s, e, _ in _spans(PASSPORT_NUMBER, text):
        if PASSPORT_BEFORE.search(text, max(0, s - 24), s):
            yield s, e


def find_secrets(text: str) -> Iterator[tuple[int, int]]:
    if any(prefix in text for prefix in SECRET_PREFIXES):
        yield from ((s, e) for s, e, _ in _spans(SECRET_PREFIXED, text))
    if "-----BEGIN" in text:
        yield from ((s, e) for s, e, _ in _spans(PRIVATE_KEY, text))
    lower = text.lower()
    if not any(word in lower for word in SECRET_WORDS):
        return
    for s, e, value in _spans(TOKEN, text):
        mixed = any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
        if mixed and entropy(value) >= 4.0 and SECRET_NEAR.search(text, max(0, s - 30), s):
            yield s, e
    for m in PASSWORD_VALUE.finditer(text):
        if any(c.isdigit() for c in m.group(1)):
            yield m.start(1), m.end(1)


FINDERS: dict[PiiType, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": find_emails,
    "phone": find_phones,
    "cn_id": find_cn_ids,
    "bank_card": find_bank_cards,
    "iban": find_ibans,
    "ip": find_ips,
    "passport": find_passports,
    "url_credentials": find_url_credentials,
    "secret": find_secrets,
}


def find_pii(text: str, settings: PiiSettings | None = None) -> list[Span]:
    """Non-overlapping spans of personal data in `text`, in order of position."""
    settings = settings or PiiSettings()
    # Most texts have no long number: one cheap scan spares five detectors.
    has_number = LONG_NUMBER.search(text) is not None
    candidates = [
        (s, e, kind)
        for kind in PRIORITY
        if getattr(settings, kind) and (has_number or kind not in NEEDS_NUMBER)
        for s, e in FINDERS[kind](text)
    ]
    rank = {kind: i for i, kind in enumerate(PRIORITY)}
    candidates.sort(key=lambda c: (c[0] - c[1], rank[c[2]], c[0]))
    taken: list[Span] = []
    for s, e, kind in candidates:
        if all(e <= t.start or s >= t.end for t in taken):
            taken.append(Span(start=s, end=e, type=kind))
    if settings.ner != "off":
        taken += [
            Span(start=s, end=e, type=kind)
            for s, e, kind in ner_spans(text, settings)
            if all(e <= t.start or s >= t.end for t in taken)
        ]
    allowed = [a.casefold() for a in settings.allow]
    taken = [t for t in taken if not any(a in text[t.start : t.end].casefold() for a in allowed)]
    return sorted(taken, key=lambda span: span.start)


def ner_spans(text: str, settings: PiiSettings) -> list[tuple[int, int, str]]:
    from shoptalk.data import pii_ner  # late: jieba and Presidio load only when asked for

    kinds = [kind for kind in NER_TYPES if getattr(settings, kind)]
    return pii_ner.find_entities(text, settings.ner, kinds, settings.ner_model) if kinds else []


def canonical(kind: str, value: str) -> str:
    """One key per value however it was written: "138 1234 5678" is "13812345678"."""
    if kind in ("cn_id", "bank_card", "iban"):
        value = re.sub(r"[^0-9A-Za-z]", "", value).upper()
    elif kind == "phone":
        value = re.sub(r"\D", "", value)
        value = value[2:] if len(value) == 13 and value.startswith("86") else value
    elif kind in ("email", *NER_TYPES):
        value = " ".join(value.split()).casefold()
    return f"{kind}:{value}"


def redact(
    text: str, settings: PiiSettings | None = None, mapping: dict[str, str] | None = None
) -> Redaction:
    """`text` with every found value replaced by a numbered placeholder.

    `mapping` (value key -> placeholder) is filled in place; pass the same dict
    for every text of one record to number placeholders consistently across it.
    Its keys are the values themselves: keep it in memory, never write it out.
    """
    mapping = {} if mapping is None else mapping
    pieces: list[str] = []
    counts: Counter[str] = Counter()
    cursor = 0
    for span in find_pii(text, settings):
        key = canonical(span.type, text[span.start : span.end])
        if key not in mapping:
            prefix = f"<{span.type.upper()}_"
            mapping[key] = f"{prefix}{sum(v.startswith(prefix) for v in mapping.values()) + 1}>"
        pieces += [text[cursor : span.start], mapping[key]]
        counts[span.type] += 1
        cursor = span.end
    pieces.append(text[cursor:])
    return Redaction(text="".join(pieces), counts=dict(counts))


def redact_conversation(
    conv: Conversation, settings: PiiSettings | None = None
) -> tuple[Conversation, dict[str, int]]:
    """Redact every message with placeholders numbered across the whole record."""
    mapping: dict[str, str] = {}
    counts: Counter[str] = Counter()
    messages = []
    for message in conv.messages:
        result = redact(message.content, settings, mapping)
        counts.update(result.counts)
        changed = result.text != message.content
        messages.append(message.model_copy(update={"content": result.text}) if changed else message)
    if not counts:
        return conv, {}
    return conv.model_copy(update={"messages": messages}), dict(counts)


# How much of each text file `own_contacts` reads.
_CONTACT_SCAN_CHARS = 500_000


def own_contacts(sources: list[Path]) -> list[str]:
    """The contacts several of the organization's text files (under `sources`) state
    (`recurring_contacts`): kept out of redaction, or its hotline is "<PHONE_1>" in answers."""
    from shoptalk.project import text_files

    texts = {
        str(file): file.read_text("utf-8", errors="ignore")[:_CONTACT_SCAN_CHARS]
        for path in sources
        for file in text_files(path)
    }
    return recurring_contacts(texts)


def recurring_contacts(texts: dict[str, str], min_files: int = 2) -> list[str]:
    """The organization's own contacts in its files (name -> text): e-mail domains and phone
    numbers that `min_files` or more files state, and numbers one file publishes as a line
    (`published_number`). A hotline or a team address recurs across an organization's
    policies and FAQ; a person's number in one chat does not. For `init`'s
    `data.pii.allow`, which the user reads and edits."""
    seen: dict[str, set[str]] = {}
    published: set[str] = set()
    for name, text in texts.items():
        for match in EMAIL.finditer(text):
            seen.setdefault("@" + match.group().split("@", 1)[1].lower(), set()).add(name)
        for pattern in PHONES:
            for match in pattern.finditer(text):
                seen.setdefault(match.group(), set()).add(name)
                if published_number(text, match.start(), match.end()):
                    published.add(match.group())
    recurring = {value for value, files in seen.items() if len(files) >= min_files}
    return sorted(recurring | published)


# Numbers no person has: toll-free and freephone ranges (North America's 800, 833 ... 888,
# the UK's 0800/0808 and China's 400 dialled internationally or not, the global +800).
TOLL_FREE = re.compile(
    r"(?:\+?1[ .-]?)?\(?8(?:00|33|44|55|66|77|88)\)?[ .-]|\+44[ .-]?80[08]|(?:\+86[ -]?)?400[ -]"
    r"|\+800",
    re.A,
)
# What a document calls a number it publishes: "the Claims Line on", "Customer Care:",
# "IT service desk", "客服热线："; read in the words just before the number, on its line.
LINE_WORDS = re.compile(
    r"\b(?:line|helpline|hotline|desk|care|support|service|switchboard|reception|centre|center)"
    r"\b|热线|客服|服务台|服务中心|总机|前台",
    re.I,
)
# Unless the words say whose it is: "her mobile", "his cell", "手机".
PERSON_WORDS = re.compile(
    r"\b(?:mobile|cell|personal|private|home|her|his|my)\b|手机|私人|个人|家庭", re.I
)
_LINE_WINDOW = 40


def published_number(text: str, start: int, end: int) -> bool:
    """The phone number at text[start:end] is one the organization publishes, though one file
    states it: toll-free (`TOLL_FREE`), or given as a line, desk or service (`LINE_WORDS`)
    and not as a person's (`PERSON_WORDS`). The Ombudsman's helpline in a complaints
    procedure is such a number: redacted, the assistant could not give it."""
    if TOLL_FREE.match(text, start, end):
        return True
    before = text[max(0, start - _LINE_WINDOW) : start].rsplit("\n", 1)[-1]
    return bool(LINE_WORDS.search(before)) and not PERSON_WORDS.search(before)
