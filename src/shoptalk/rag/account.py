"""The adviser's account of a case, told to the customer: the facts a drafted reply must carry.

    told("His order 48213 will now ship on 06/14/2024. Draft a reply to Mr. Hahn.")
    # -> ["Your order 48213 will now ship on 06/14/2024."]
    missing(told_sentences, draft)  # the told sentences whose values the draft lacks

A drafting request gives the facts of the reply ("the new ship date is 07/22/2024", "a
credit of $1284.5 was issued on 07/03/2024", "the expedite fee is $400"); no document holds
them, and a small model loses them: on a fifth organization's ten drafting prompts, the
request's own date, amount or report number was missing from 7 drafts. The account is the
request's sentences that state a value, without the instruction ("Draft a reply", "Keep it
short") and without the customer's quoted words, turned to the customer: "Ms. Raman's
order", "his order" -> "your order"; "he is" -> "you are"; "Mr. Brooks asked" -> "you asked".
Only the grammar of the third person is read, never one organization's wording. Our own
because no library turns a sentence's third person into the second.
"""

from __future__ import annotations

import calendar
import re

from shoptalk.data.pii import find_bank_cards, find_cn_ids, find_ibans
from shoptalk.data.value_forms import ValueForm, apply_forms
from shoptalk.modeling.chat_format import drafting
from shoptalk.rag.chunk import sentence_spans
from shoptalk.rag.citations import chinese_names
from shoptalk.rag.verify import values

_TITLE = r"(?:Mr|Ms|Mrs|Miss|Mx|Dr|Prof)\.?"
_NAME = rf"{_TITLE}\s+[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)?"
# The customer, named: "Mr. Dietrich Hahn", "Ms. Raman", "the customer".
_PERSON = rf"(?:{_NAME}|\b[Tt]he\s+(?:customer|client|caller))"
_POSSESSIVE = re.compile(rf"{_PERSON}['’]s\b|\b[Hh]is\b")
# Reporting what the customer said: "Ms. Chen says order 49920 arrived ..." tells them
# "you told us order 49920 arrived ...", not "you say".
_REPORTS = re.compile(
    rf"(?:{_PERSON}|\b(?:[Hh]e|[Ss]he))\s+(?:says|said|writes|wrote|reports|reported|mentions"
    r"|mentioned|explains|explained|complains|complained|tells us|told us|notes|noted)\b"
)
_ASKED = re.compile(
    rf"(?:{_PERSON}|\b(?:[Hh]e|[Ss]he))\s+(?:asks|inquires|enquires|wants to know|would like to know)\b"
)
_SUBJECT = re.compile(rf"(?:{_PERSON}|\b(?:[Hh]e|[Ss]he))\s+([a-z]+?(?:n['’]t)?)\b")
_OBJECT = re.compile(rf"{_PERSON}|\bhim\b")
# "her" before a word that is not a noun's start is the object ("told her the date").
_HER = re.compile(r"\b[Hh]er\b(\s+(\w+))?")
_NOT_A_NOUN = frozenset(
    "a an the that this to with for about on in at by from and or but as so if when "
    "know now today yesterday again back".split()
)
_AGREE = {
    "is": "are",
    "was": "were",
    "has": "have",
    "does": "do",
    "isn't": "aren't",
    "wasn't": "weren't",
    "hasn't": "haven't",
    "doesn't": "don't",
}
# An instruction to the assistant: "Keep it short.", "Reply confirming the fee ...".
_INSTRUCTION = re.compile(
    r"^\W*(?:please\s+)?(?:draft|write|compose|prepare|reply|respond|answer|send|keep|make|"
    r"tell|let|explain|confirm|ask|include|mention|thank|apologi[sz]e|use|be|add|say|inform|"
    r"notify|give|offer|remind|sign|address|acknowledge|request|avoid|don['’]t|do not)\b",
    re.IGNORECASE,
)
# Who signs the reply, as the adviser says it: "Sign it Jordan Pike, Billing Specialist, ext.
# 3127", "From me, Kelly Nguyen, ...", "Sign it from me: Priya Nandakumar, ...", "I'm Tasha
# Greene, Customer Service Rep, ext 3105".
_SIGNER = re.compile(
    r"\W*(?:(?:please\s+)?sign(?:ed)?(?:\s+(?:it|off|as|with|this|from|me))*\s*[:,]?|from(?:\s+me)?\s*[:,]?"
    r"|I(?:'m|’m|\s+am))\s+(?P<name>[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+){1,2})"
    r"(?P<rest>(?:\s*,\s*(?:ext\.?\s*\d+|\(?\d[\d() .-]{6,}\d(?:,?\s*ext\.?\s*\d+)?|[^,.\n]+))*)",
    re.IGNORECASE,
)
# The request's last words, a signature block: a name, a job title, an extension or phone.
_BARE_SIGNER = re.compile(
    r"\W*(?P<name>[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+){1,2})"
    r"(?P<rest>,\s*[A-Z][^,.\n]+,\s*(?:ext\.?\s*\d+|\(?\d[\d() .-]{6,}\d)\W*)$"
)
# Sixteen digits in fours, as people type a card number (Luhn-valid or not).
_CARD_SHAPED = re.compile(r"(?<!\d)\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,4}(?!\d)")
# "he's" -> "you're", but "he's been" (has) -> "you've been"; "he'll", "he'd" keep their ending.
_CONTRACTED = {"'s": "'re", "’s": "’re"}
_HAS_CONTRACTED = {"'s": "'ve", "’s": "’ve"}
_PARTICIPLE = re.compile(r"\s+(?:been|got|gotten|had|\w+ed)\b")
# A second verb of the customer's, after "and": "you ride ... and wants to know" -> "want".
# Only verbs that report or want (a noun after "and" keeps its -s: "bolts and nuts").
_AND_VERB = re.compile(
    r"(\byou\s[^.;:!?]*?\band\s+)(wants|asks|needs|says|hopes|expects|plans|wonders|wishes"
    r"|prefers|requests|is|was|has|does)\b"
)
# Chinese: the third person (他, 她; not 其他, 他们); names are jieba's (`chinese_names`).
_ZH_THIRD = re.compile(r"(?<!其)[他她](?!们)")
_ZH_INSTRUCTION = re.compile(r"^\W*(?:请|帮我|麻烦|起草|撰写|拟写|写一|回复)")
# Words quoted after a colon, anywhere in the request ("Mr. Doyle wrote: 'need the label
# ASAP!! it's for RMA 2024-00912'. I emailed him ..."): the customer's, not the account.
_QUOTED_AFTER_COLON = re.compile(
    r"[:：]\s*(?:'.{12,}?'|‘.{12,}?’|\".{12,}?\"|“.{12,}?”|「.{12,}?」)(?=[\s.,;!?。，]*(?:\s|$))"
)
# Dates compared as one form ("06/14/2024" is "June 14, 2024"), whatever the guide's form.
_ONE_DATE_FORM = [ValueForm(kind="date", example="June 14, 2024")]
# How drafts write a request's dates and amounts: both orders of a word date, the Chinese
# date, amounts grouped with cents and with their currency's code.
_DRAFT_FORMS = [
    ValueForm(kind="date", example="June 14, 2024"),
    ValueForm(kind="date", example="14 June 2024"),
    ValueForm(kind="date", example="2024年6月14日"),
    *(
        ValueForm(kind="money", example=f"{symbol}1,250.00{suffix}")
        for symbol, code in (("$", "USD"), ("£", "GBP"), ("€", "EUR"), ("¥", "CNY"))
        for suffix in ("", f" {code}")
    ),
]
# A number written after a code's letters ("SO-48213" for the request's "order 48213").
_PREFIXED = re.compile(r"(?<![A-Za-z0-9_-])[A-Z]{2,6}-(\d{3,})(?![A-Za-z0-9_-])")
_WORD_DATE = re.compile(
    rf"\b({'|'.join(m for m in calendar.month_name if m)})\s+(\d{{1,2}}),?\s+(\d{{4}})\b"
)


def told(request: str, customer_words: str = "") -> list[str]:
    """The request's sentences that state a value, and what an instruction asks to say
    ("... saying Tom will send her a written response by 10/10/25"), turned to the customer,
    in order; `customer_words` (the message the request quotes) are left out: the reply
    answers them, it does not repeat them."""
    text = _QUOTED_AFTER_COLON.sub(".", request)
    text = text.replace(customer_words, " ") if customer_words else text
    out = []
    for start, end in sentence_spans(text):
        raw = text[start:end].strip()
        sentence = _to_customer(raw)
        if _stated(raw) and _stated(sentence):
            out.append(sentence)
        elif said := _to_say(raw):
            out.append(_to_customer(said))
    return out


# What an instruction asks the reply to say: "saying X", "tell her (that) X", "let him know
# (that) X", "explain that X". X is a statement ("Tom will send her ..."), not a topic ("how
# he can pay", "the fee").
_TO_SAY = re.compile(
    r"\b(?:saying|say|tell(?:ing)?\s+(?:him|her|them|the\s+customer)|let(?:ting)?\s+(?:him|her"
    r"|them|the\s+customer)\s+know|explain(?:ing)?|inform(?:ing)?\s+(?:him|her|them)|confirm(?:ing)?)"
    r"\s+(?P<that>that\s+)?(?P<what>[^.;!?]{8,})",
    re.IGNORECASE,
)
# A statement: it has a verb a clause has ("will", "is", "has been", "can").
_CLAUSE_VERB = re.compile(
    r"\b(?:will|would|can|could|is|are|was|were|has|have|had|must|should|may|might|does|did)\b",
    re.IGNORECASE,
)
_TOPIC = re.compile(r"^(?:how|what|when|where|why|which|who|whether|if|about)\b", re.IGNORECASE)


def _to_say(sentence: str) -> str:
    """What the instruction `sentence` asks the reply to say, as a sentence; "" if none."""
    if not (drafting(sentence) or _INSTRUCTION.match(sentence)):
        return ""
    found = _TO_SAY.search(sentence)
    if not found:
        return ""
    what = found.group("what").strip(" ,")
    if _TOPIC.match(what) or not (found.group("that") or _CLAUSE_VERB.search(what)):
        return ""
    return what[:1].upper() + what[1:] + "."


def missing(sentences: list[str], draft: str) -> list[str]:
    """The `sentences` most of whose numbers the draft does not state ("$1284.5" is stated by
    "$1,284.50 USD", "06/14/2024" by "June 14, 2024"). Most, not one: a draft that tells the
    new date has told the news, though it leaves out the date that was missed."""
    have = _numbers(draft)
    counted = [(s, _numbers(s)) for s in sentences]
    return [s for s, numbers in counted if 2 * len(numbers - have) > len(numbers)]


def as_written_in_drafts(request: str, draft: str) -> str:
    """The request with its values also in the forms a draft may write them, for checking the
    draft against: "06/14/2024" as "June 14, 2024" and "14 June 2024", "$1284.5" as
    "$1,284.50 USD", "order 48213" as the draft's "SO-48213". A style guide asks for such
    forms and the model follows it; a value the request gives is no less given in another
    form (a fifth organization's drafts lost their new ship dates for it)."""
    rewritten = [apply_forms(request, [form]) for form in _DRAFT_FORMS]
    numbers = {n.lstrip("0") for n in values(request) if n.isdigit()}
    prefixed = [m.group() for m in _PREFIXED.finditer(draft) if m.group(1).lstrip("0") in numbers]
    return "\n".join(dict.fromkeys([request, *rewritten, *prefixed]))


def signature(request: str) -> list[str]:
    """The lines the adviser asks the reply to be signed with ("Sign it Jordan Pike, Billing
    Specialist, ext. 3127" -> ["Jordan Pike", "Billing Specialist", "ext. 3127"]; a request
    ending "Owen Fairley, Customer Service Supervisor, ext. 3100."), or []."""
    for start in [m.end() for m in re.finditer(r"(?:^|(?<=[.!?]))\s*", request)]:
        found = _SIGNER.match(request, start) or _BARE_SIGNER.match(request, start)
        if found:
            rest = [p.strip(" .") for p in found.group("rest").split(",") if p.strip(" .")]
            return [found.group("name"), *_joined_extensions(rest)]
    return []


def _signs(sentence: str) -> bool:
    return bool(_SIGNER.match(sentence) or _BARE_SIGNER.match(sentence))


def _joined_extensions(parts: list[str]) -> list[str]:
    """ "(757) 555-0150" and "ext. 3112" split at their comma are one line."""
    out: list[str] = []
    for part in parts:
        if out and re.match(r"ext\.?\s*\d", part, re.IGNORECASE) and re.search(r"\d$", out[-1]):
            out[-1] = f"{out[-1]}, {part}"
        else:
            out.append(part)
    return out


def _stated(sentence: str) -> bool:
    """A sentence of the adviser's account: it states a number, asks and instructs nothing,
    and is not what introduces the customer's words ("Mr. Doyle wrote: ''")."""
    if not re.search(r"\d", sentence) or sentence.rstrip().endswith(("?", "？", ":", "：")):
        return False
    if not re.search(r"[A-Za-z]{3}|[\u4e00-\u9fff]", sentence) or _signs(sentence):
        return False  # "3118." cut from "ext. 3118"; who signs is no news for the customer
    if _CARD_SHAPED.search(sentence) or any(
        list(find(sentence)) for find in (find_bank_cards, find_ibans, find_cn_ids)
    ):
        return False  # a card, bank account or ID number is never said back in a letter
    if drafting(sentence) or _INSTRUCTION.match(sentence) or _ZH_INSTRUCTION.match(sentence):
        return False
    return not re.search(r"[:：]\s*(?:''|\"\"|‘’|“”|「」)", sentence)


def _to_customer(sentence: str) -> str:
    """`sentence` about the customer, said to them (English and Chinese third person)."""
    if re.search(r"[\u4e00-\u9fff]", sentence):
        for name in chinese_names(sentence):
            sentence = re.sub(
                rf"(?:客户|顾客)?{re.escape(name)}(?:先生|女士|小姐)?", "您", sentence
            )
        return _ZH_THIRD.sub("您", sentence)
    # A note on the customer for the adviser ("Ms. Morales (acct 340-27719-01, signed her
    # email) got ..."): not said back to them.
    sentence = re.sub(rf"({_PERSON})\s*\([^)]*\)", r"\1", sentence)
    # How the adviser found them ("Ms. Boateng is furious: she says ..."): not told to them.
    sentence = re.sub(rf"^\W*{_PERSON}\s+(?:is|was|seems|sounds)\s+\w+\s*[:;]\s*", "", sentence)
    sentence = _REPORTS.sub("you told us", sentence)
    sentence = re.sub(r"\b(?:[Hh]e|[Ss]he)(['’](?:s|ll|d))\b", _contracted, sentence)
    sentence = _ASKED.sub("you asked", sentence)
    sentence = _POSSESSIVE.sub("your", sentence)
    sentence = _SUBJECT.sub(lambda m: f"you {_agree(m.group(1))}", sentence)
    sentence = _AND_VERB.sub(lambda m: m.group(1) + _agree(m.group(2)), sentence)
    sentence = _OBJECT.sub("you", sentence)
    sentence = _HER.sub(_her, sentence)
    return sentence[:1].upper() + sentence[1:]


def _contracted(match: re.Match[str]) -> str:
    """ "he's" -> "you're"; "he's been" -> "you've been"; "he'll" -> "you'll"."""
    ending = match.group(1)
    after = match.string[match.end() :]
    forms = _HAS_CONTRACTED if _PARTICIPLE.match(after) else _CONTRACTED
    return "you" + forms.get(ending, ending)


def _agree(verb: str) -> str:
    """The verb after "you": "is" -> "are", "wants" -> "want"; past tense and modals stay."""
    if verb in _AGREE:
        return _AGREE[verb]
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if re.search(r"(?:ss|sh|ch|x|z)es$", verb):
        return verb[:-2]
    if verb.endswith("s") and not verb.endswith(("ss", "us", "is")):
        return verb[:-1]
    return verb


def _her(match: re.Match[str]) -> str:
    following = match.group(2)
    you = "you" if following is None or following.lower() in _NOT_A_NOUN else "your"
    return you + (match.group(1) or "")


def _numbers(text: str) -> set[str]:
    """The values of `text` that hold a digit, in one form: a date as one value ("06/14/2024"
    is "june 14 2024", as "June 14, 2024" is), amounts without grouping or trailing zeros
    ("1,284.50" -> "1284.5")."""
    text = apply_forms(text, _ONE_DATE_FORM)
    dates = {" ".join(m.groups()).lower() for m in _WORD_DATE.finditer(text)}
    found = values(_WORD_DATE.sub(" ", text))
    return dates | {_plain(v) for v in found if re.search(r"\d", v)}


def _plain(value: str) -> str:
    value = value.replace(",", "")
    return value.rstrip("0").rstrip(".") if re.fullmatch(r"\d+\.\d+", value) else value
