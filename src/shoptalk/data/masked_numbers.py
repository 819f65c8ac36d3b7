"""A tone guide's rule for masking account numbers, read from its example, and applied.

    form = read_mask(guide_sentences)  # MaskForm(example="your account ending in 1307", keep=4)
    masked("Your account 210-55817-03 is past due.", "acct 210-55817-03 ...", form)
    # -> "Your account ending in 1703 is past due."

Guides of banks, utilities and clinics say how an account number may appear in a message:
"never write the full account number. Show only the last four digits, without hyphens:
"your account ending in 1307."" The example is the form: its digits are the slot (their
count is how many to keep), the word before "ending" names which numbers (an account, a
card, a policy). A number the adviser's request gives after that word (or its abbreviation:
"acct 210-55817-03") is written in the form wherever a draft writes it: the customer sees
the last digits only, as the guide says. Our own because no library reads a masking rule
from an example sentence.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from shoptalk.data.value_forms import quoted

# A sentence asking for the last digits only: "Show only the last four digits", "尾号".
_LAST_DIGITS = re.compile(
    r"\blast\s+(?:one|two|three|four|five|six|\d)\s+(?:digits|numbers)\b"
    r"|尾号|后\s*[一二三四五六1-6]\s*位",
    re.IGNORECASE,
)
# The kept digits in the guide's example: "ending in 1307", "尾号1307".
_KEPT = re.compile(r"(?<![\d-])\d{2,6}(?![\d-])")
# Which number the example names: the word before "ending" ("your account ending in 1307").
_NAMED = re.compile(r"\b([A-Za-z]+)\s+(?:ending|that ends|ends)\b", re.IGNORECASE)
_ZH_NAMED = re.compile(r"(账户|账号|户号|卡号|卡|保单号?|会员号)")
# A number long enough to be an account's: digits, perhaps in groups ("210-55817-03").
_LONG_NUMBER = r"(\d(?:[\d]|[ -](?=\d)){5,}\d)"


class MaskForm(BaseModel, extra="forbid"):
    """How the guide shows an account number in a message, by its example."""

    example: str = Field(description="the guide's example: 'your account ending in 1307'")
    keep: int = Field(4, ge=1, description="how many last digits the example keeps")
    label: str = Field("account", description="the word naming the numbers it masks")
    channels: list[str] = Field(
        default_factory=list,
        description="the channels the rule is for ('email', 'text'); empty: every one",
    )
    source: str = Field("", description="the guide's sentence it was read from")


def read_mask(sentences: list[str]) -> MaskForm | None:
    """The masking form of the first sentence asking for the last digits only with a quoted
    example of them ("your account ending in 1307"), or None. Its `source` holds the
    sentence before it too when that one speaks of the number ("In emails, never write the
    full account number."): it may say which channels the rule is for."""
    for at, sentence in enumerate(sentences):
        if not _LAST_DIGITS.search(sentence):
            continue
        for quote in quoted(sentence):
            kept = _KEPT.search(quote)
            named = _NAMED.search(quote) or _ZH_NAMED.search(quote)
            if kept and named:
                example = quote.strip().rstrip(".。")
                label = named.group(1).lower()
                before = sentences[at - 1] if at else ""
                source = f"{before} {sentence}" if re.search(r"\bnumber|号", before) else sentence
                return MaskForm(example=example, keep=len(kept.group()), label=label, source=source)
    return None


def request_numbers(request: str, form: MaskForm) -> list[str]:
    """The numbers `request` gives after the form's word or its abbreviation ("acct
    210-55817-03", "account #2104821307", "账号 6222 0212 3456"), as written."""
    found = re.finditer(
        rf"(?:{_labels(form.label)})\.?\s*(?:no\.?|number|#|:|：)?\s*{_LONG_NUMBER}", request, re.I
    )
    return list(dict.fromkeys(m.group(1) for m in found if len(_digits(m.group(1))) > form.keep))


def phrase(number: str, form: MaskForm) -> str:
    """The form's example with the number's last digits: "your account ending in 1703"."""
    kept = _KEPT.search(form.example)
    return form.example[: kept.start()] + last_digits(number, form) + form.example[kept.end() :]


def last_digits(number: str, form: MaskForm) -> str:
    """The digits of `number` the form keeps: "210-55817-03" -> "1703"."""
    return _digits(number)[-form.keep :]


def masked(text: str, request: str, form: MaskForm) -> str:
    """`text` with every number of `request` that the form masks written as the form
    writes it, in any grouping ("210-55817-03", "2105581703"). Named, the number gives way
    to the form's words from its label on ("acct 210-55817-03" -> "account ending in 1703";
    "the Heron Card 6012 ..." -> "the Heron Card ending in 2290"); bare, to the whole form."""
    for number in request_numbers(request, form):
        spaced = r"[\s-]?".join(_digits(number))
        named = rf"(?P<label>(?:{_labels(form.label)})\.?\s*(?:no\.?|number|#|:|：)?\s*)?"
        pattern = re.compile(
            rf"(?<![A-Za-z0-9_-])(?P<lead>(?:your|the)\s+|您的)?{named}{spaced}(?![A-Za-z0-9_-])",
            re.IGNORECASE,
        )
        text = pattern.sub(lambda m, n=number: _in_place(m, n, form), text)
    return text


def _in_place(match: re.Match[str], number: str, form: MaskForm) -> str:
    """What replaces one written number (`masked`)."""
    written = phrase(number, form)
    at = re.search(rf"\b{re.escape(form.label)}", written, re.IGNORECASE)
    if match.group("label") and at and at.start() < written.find(last_digits(number, form)):
        label = written[at.start() : at.end()]
        label = label[:1].upper() + label[1:] if match.group("label")[:1].isupper() else label
        return (match.group("lead") or "") + label + written[at.end() :]
    before = match.string[: match.start()].rstrip()
    if re.search(r"\b(?:a|an|the|your|our)$", before, re.IGNORECASE):  # "a your Heron Card"
        written = re.sub(r"^(?:your|the|our)\s+", "", written, flags=re.IGNORECASE)
    # Capitalized where it opens a sentence ("Your account ending in 1703 ...").
    opens = match.group()[:1].isupper() or not before or before[-1] in ".!?\n"
    return written[:1].upper() + written[1:] if opens else written


def _labels(label: str) -> str:
    """The word and how advisers shorten it: "account" is also "acct", "acc"."""
    if re.search(r"[\u4e00-\u9fff]", label):
        return _ZH_NAMED.pattern.strip("()")
    shortened = rf"|{re.escape(label[:3])}[a-z]?" if len(label) > 4 else ""
    return rf"\b(?:{re.escape(label)}s?{shortened})"


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number)
