"""Style material: recognize a tone guide among documents, extract its rules, check a draft.

Rule based on purpose (no model): a tone guide is written by someone else in their own
words, so the tests are about the shape of the text (headings about writing, sentences
that prescribe), never about one guide's wording. English and Chinese on equal terms.
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, Field

from shoptalk.data.augment import qa
from shoptalk.data.clean import source_file
from shoptalk.data.masked_numbers import MaskForm, read_mask
from shoptalk.data.value_forms import (
    EXAMPLE,
    QUOTE,
    ValueForm,
    apply_forms,
    dated,
    form_code,
    quote_text,
    quoted,
    read_forms,
)
from shoptalk.records import Chunk, Conversation

# A heading or title about how to write (tone guides, brand voice, reply rules).
_TITLE_WORDS = re.compile(
    r"\b(tone|voice|style|writing|brand|communication|etiquette|wording)\b"
    r"|语气|风格|文风|话术|回复规范|沟通规范|称呼|落款|禁用语|用语规范",
    re.IGNORECASE,
)
# A sentence that prescribes how to write.
_PRESCRIPTIVE = re.compile(
    r"^\W*(always|never|avoid|use|do not|don't|sign off|greet|address|write|keep|include|"
    r"quote|start|end|open|close|refer)\b|\b(must|should)\b"
    r"|^\W*(务必|必须|禁止|不要|不得|避免|请勿|应当|应|使用|统一|称呼|落款|开头|结尾|结束)",
    re.IGNORECASE,
)
# A sentence ends at . ! ? before a space (a closing quote may come first: '... "Dear Member,".'),
# or at 。！？ not followed by a closing quote; "$2.50" and "1-800-555-0142." stay whole.
# No sentence starts in lower case: 'with "a.m." and "p.m." with periods' is one sentence.
_SENTENCE = re.compile(
    r"(?<=[.!?])\s+(?![a-z])|(?<=[.!?][\"”’'」』])\s+(?![a-z])|(?<=[。！？])(?![”」』\"])"
    r"|(?<=[。！？][”」』])|\n+"
)
# A list item's bold label ("- **Greeting.** Always ..."): the topic of the sentences after it.
_LABEL = re.compile(r"^\s*(?:[-*+]|\d+[.)])?\s*\*\*([^*\n]{1,80}?)[.:：。]?\*\*[.:：]?\s*")
# A label that tells a situation ("**A bill is disputed.**", "**The patient is upset about
# waiting time.**", "**客户投诉时**"), not a topic ("**Sign-off.**"): a clause with a verb.
_SITUATION_LABEL = re.compile(
    r"^(?:when|whenever|if)\b|\b(?:is|are|was|were|has|have|had|wants?|asks?|says?|describes?"
    r"|complains?|needs?|requests?|reports?|cannot|can't|does|doesn't|did|didn't)\b"
    r"|时$|的情况$",
    re.IGNORECASE,
)


class Situation(BaseModel, extra="forbid"):
    """The rules a guide gives for one situation ("When a customer tells us that a family
    member has died: ..."): they hold only for a reply about it (`rag.voice.situation_for`)."""

    when: str = Field(description="the situation as the guide names it: heading and condition")
    opening: str = Field("", description="the sentence a reply opens with, after the greeting")
    lines: list[str] = Field(default_factory=list, description="sentences such a reply carries")
    forbidden: list[str] = Field(
        default_factory=list, description="phrases such a reply must not use"
    )


# No situation: what `problems` and `repair` hold a draft to when none applies.
_NO_SITUATION = Situation(when="")


class StyleRules(BaseModel, extra="forbid"):
    """The rules a draft must follow, with the sentence each came from."""

    greeting: str = Field("", description="the form a draft opens with, e.g. 'Dear {name},'")
    greeting_fallback: str = Field(
        "", description="the greeting when the customer's name is not known, e.g. 'Dear Member,'"
    )
    first_name_greeting: str = Field(
        "",
        description="the greeting for a customer who signs with a first name only, when the "
        "guide gives one besides its usual greeting ('Hello [First name],')",
    )
    sign_off: str = Field("", description="the line (or lines) a draft ends with")
    channel_greetings: dict[str, str] = Field(
        default_factory=dict,
        description="channel -> its greeting, when the guide's table gives one per channel "
        "(Email: 'Hello [First name],', Printed letter: 'Dear [Name],'); `greeting` is the "
        "first channel's",
    )
    channel_closings: dict[str, str] = Field(
        default_factory=dict,
        description="channel ('email', 'letter', 'text', 'chat') -> its closing line, when "
        "the guide gives one per channel ('Emails close with \"Thank you,\"'); the "
        "sign-off's first line is the first one read",
    )
    forbidden: list[str] = Field(default_factory=list, description="phrases a draft must not use")
    instead: dict[str, str] = Field(
        default_factory=dict,
        description="a forbidden phrase -> what the guide's table says to write instead "
        "('Denied' -> 'Not approved'), when it gives the words",
    )
    required: list[str] = Field(
        default_factory=list, description="elements a draft must carry (reference, apology)"
    )
    lines: list[str] = Field(
        default_factory=list,
        description="sentences the guide says every reply includes, word for word (a contact line)",
    )
    reference_form: str = Field(
        "",
        description="how the guide quotes a case number, e.g. 'Your case reference is {reference}.'",
    )
    formality: str = Field(
        "", description="register: 'formal' or 'informal' when the guide says so"
    )
    max_words: int | None = Field(None, description="length limit in words (or characters for zh)")
    sources: dict[str, str] = Field(
        default_factory=dict, description="rule name -> the sentence it was read from"
    )
    files: list[str] = Field(
        default_factory=list,
        description="the files the rules were read from (their passages are no facts for a draft)",
    )
    situations: list[Situation] = Field(
        default_factory=list,
        description="rules for one situation only (bereavement, a complaint): see Situation",
    )
    formats: list[ValueForm] = Field(
        default_factory=list,
        description="how codes, dates and amounts are written, by the guide's examples",
    )
    masked: MaskForm | None = Field(
        None,
        description="how an account number appears in a message, when the guide shows only "
        "its last digits ('your account ending in 1307')",
    )

    def empty(self) -> bool:
        return not (
            self.greeting
            or self.sign_off
            or self.forbidden
            or self.required
            or self.lines
            or self.situations
            or self.formats
            or self.masked
        )


def sentences(text: str) -> list[str]:
    """`text`'s sentences; a quote stays whole ('include: "Questions? Call us."' is one)."""
    pieces: list[str] = []
    for piece in _SENTENCE.split(text):
        if pieces and _open_quote(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return [s.strip(" -*#>\t") for s in pieces if s.strip(" -*#>\t")]


def _open_quote(text: str) -> bool:
    """`text` opens a double quote it does not close ("...", “...”, 「...」)."""
    return (
        text.count('"') % 2 == 1
        or text.count("“") > text.count("”")
        or text.count("「") > text.count("」")
    )


def is_style_guide(title: str, text: str) -> tuple[bool, str]:
    """Whether a document is style material, and the reason in words a user can check."""
    headings = [title] + [ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")]
    for h in headings:
        if h and _TITLE_WORDS.search(h):
            return True, f"heading about writing: {h!r}"
    sents = sentences(text)
    if len(sents) >= 4:
        share = sum(bool(_PRESCRIPTIVE.search(s)) for s in sents) / len(sents)
        if share >= 0.5:
            return True, f"{share:.0%} of its sentences prescribe how to write"
    return False, ""


_GREETING = re.compile(r"\b(greet|open|start|begin|salutation|address)\w*|开头|称呼|问候", re.I)
_SIGN_OFF = re.compile(r"\b(sign[- ]?off|sign|close|closing|end)\w*|落款|结尾|结束语|署名", re.I)
_FORBID = re.compile(
    r"\b(never|avoid|do not|don't|must not|banned|forbidden)\b|禁止|不要|不得|避免|请勿|禁用", re.I
)
# "If we don't know the name, write ...": a negation inside a condition forbids nothing.
_CONDITION = re.compile(r"\b(if|when|unless|whether)\b[^,;:]*$|(如果|若|假如)[^，,；;：:]*$", re.I)
_REQUIRE = re.compile(r"\b(always|must|include|quote|mention)\b|务必|必须|注明|附上|提供", re.I)
_REFERENCE = re.compile(
    r"\b(case|order|ticket|reference|ref)\b.{0,20}\b(number|id|no\.?)?|工单号|订单号|单号|编号",
    re.I,
)
_APOLOG = re.compile(r"\bapolog\w*|\bsorry\b|致歉|道歉|抱歉", re.I)
_FORMAL = re.compile(r"\bformal\b|您|敬语", re.I)
_INFORMAL = re.compile(r"\b(informal|casual|first name)\b", re.I)
_LIMIT = re.compile(
    r"(?:under|below|at most|no more than|maximum of|max\.?|不超过|少于|以内)\s*(\d+)\s*(words?|字)?|(\d+)\s*(words?|字)\s*(?:or less|or fewer|以内|之内)",
    re.I,
)
_SENTENCE_WORD = re.compile(r"\bsentences?\b|每句|句子", re.I)
# The greeting names the customer ("Dear" followed by the first name) ...
_NAME_WORD = re.compile(r"\b(first\s+|last\s+|family\s+)?name\b|\bsurname\b|姓名|名字|姓氏", re.I)
# ... by the first name alone, in a slot: "Hello [First name],".
_FIRST_NAME_SLOT = re.compile(r"[\[{<]\s*first[\s_-]*name\s*[\]}>]", re.I)
# ... and says what to write when the name is not known.
_UNKNOWN = re.compile(
    r"\b(not known|unknown|no name|not given|is missing|don't know|do not know)\b|不知道|未知|没有提供|不详",
    re.I,
)
# "for example "...": an example of a rule, not a sentence every reply must carry.
# A case, order or ticket code: letters and digits joined by dashes (RCU-2024-1187), or
# a long number after such a word ("case 48213", 工单号 20240518).
_CODE = re.compile(
    r"(?<![A-Za-z0-9-])(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)+"
)
_NUMBERED = re.compile(
    r"(?:\b(?:case|ref\w*|ticket|order)\b|单号|编号|工单号?|#)\D{0,12}?(\d{4,})", re.I
)
# Between two quoted forms: alternatives ("Best regards" or "Kind regards"), not two lines.
_ALTERNATIVE = re.compile(r"\bor\b|或|或者|/", re.I)


def rule_sentences(text: str) -> list[str]:
    """The guide's sentences, each with its list item's bold label ("Greeting: Always ...")
    so that a rule stated under a label ("**Sign-off.** Always end with ...") has its topic."""
    out: list[str] = []
    for line in _paragraph_lines(text):
        if line.lstrip().startswith("|"):
            continue  # tables are read by `_table_forbidden`
        label = _LABEL.match(line)
        rest = line[label.end() :] if label else line
        prefix = f"{label.group(1).strip()}: " if label else ""
        out += [prefix + s for s in sentences(rest)]
    return out


_BLOCK_START = re.compile(r"^\s*(?:#|\||>|[-*+]\s|\d+[.)]\s)")


def _paragraph_lines(text: str) -> list[str]:
    """`text`'s lines with wrapped ones joined: a line that starts no heading, table row or
    list item continues the one before it."""
    lines: list[str] = []
    for line in text.splitlines():
        joins = lines and line.strip() and lines[-1].strip() and not _BLOCK_START.match(line)
        if joins and not lines[-1].lstrip().startswith(("#", "|")):
            lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
        else:
            lines.append(line)
    return lines


def _table_forbidden(text: str) -> tuple[list[str], str]:
    """The first column of a table headed as phrases to avoid ("Never write | Write instead",
    "禁用语 | 替代说法"), and its header row."""
    found: list[str] = []
    source = ""
    rows = [ln.strip() for ln in text.splitlines()]
    for i, row in enumerate(rows):
        if not row.startswith("|") or (i and rows[i - 1].startswith("|")):
            continue  # not a table's first row
        header = [c.strip(" *") for c in row.strip("|").split("|")]
        if not _FORBID.search(header[0]):
            continue
        source = source or row
        for body in rows[i + 1 :]:
            if not body.startswith("|"):
                break
            cell = body.strip("|").split("|")[0].strip(" *")
            if set(cell) <= set("-: "):
                continue  # the separator row
            found += [q for q in _cell_phrases(cell) if q not in found]
    return found, source


def _table_instead(text: str) -> dict[str, str]:
    """What to write instead of each phrase a table forbids, from its "Write instead" column
    ("替代说法"), where the cell opens with the words to write ('"Not approved"'); a cell that
    describes what to do ("A specific date", '"Our rules require…"' to be completed) gives
    none: the sentence with the phrase is dropped, as without a table. A table cut in two
    by chunking (its second part without a header row) is still the same table."""
    rows = [[c.strip(" *") for c in ln.strip().strip("|").split("|")] for ln in text.splitlines()]
    found: dict[str, str] = {}
    column = None
    for at, row in enumerate(rows):
        below = rows[at + 1] if at + 1 < len(rows) else []
        if len(row) >= 2 and below and set("".join(below)) <= set("-: ") and "".join(below):
            # A header row: a new table, a forbidding one or not.
            forbids = _FORBID.search(row[0])
            column = next((n for n, c in enumerate(row) if _INSTEAD.search(c)), None)
            column = column if forbids else None
        elif len(row) < 2 and "".join(row).strip():
            column = None  # text between tables
        elif column is not None and column < len(row) and not set(row[0]) <= set("-: "):
            said = QUOTE.match(row[column])
            said_text = quote_text(said) if said else ""
            words = said_text.strip(" .。")
            if words and len(words.split()) <= 6 and not re.search(r"…|\.\.\.", said_text):
                found.update(dict.fromkeys(_cell_phrases(row[0]), words))
    return found


_INSTEAD = re.compile(r"\binstead\b|\brather\b|\bpreferred\b|\buse\b|替代|改用|应(?:说|写)", re.I)


def _cell_phrases(cell: str) -> list[str]:
    """The phrases a table cell forbids: its quotes, or its text without a note in brackets
    ("Policyholder (when writing to the customer)"), alternatives after " / " each whole
    ("has been denied / rejected" -> "has been denied", "has been rejected")."""
    phrases = quoted(cell)
    if phrases:
        return phrases
    bare = re.sub(r"\s*[(（][^)）]*[)）]", "", cell).strip()
    parts = [p.strip() for p in re.split(r"\s+/\s+|／", bare) if p.strip()]
    if not parts:
        return []
    lead = parts[0].rsplit(" ", 1)[0] if " " in parts[0] else ""
    others = [f"{lead} {p}" if lead and " " not in p else p for p in parts[1:]]
    return [parts[0], *others]


def _forms(sentence: str) -> list[str]:
    """The quoted forms of `sentence` a rule lists together: "Warm regards," and then "The
    Team" are two lines of one sign-off; "Best regards" or "Kind regards" is a choice (the first)."""
    spans = [m for m in QUOTE.finditer(sentence) if quote_text(m).strip(" ,，")]
    if not spans:
        return []
    forms = [quote_text(spans[0]).strip()]
    for before, after in zip(spans, spans[1:], strict=False):
        between = sentence[before.end() : after.start()]
        if _ALTERNATIVE.search(between) or EXAMPLE.search(between):
            break
        if _SIGNER_WORDS.search(between):  # '"Kind regards," then your name, then "The Team"'
            forms.append(SIGNER)
        forms.append(quote_text(after).strip())
    return forms


# The line of a sign-off where the person sending the reply signs, and how a draft shows it.
SIGNER = "{your name}"
_SIGNER_LINE = "[Your name]"
_SIGNER_WORDS = re.compile(
    r"\byour\s+(?:(?:first|full|own)\s+(?:and\s+(?:last|family)\s+)?)?name\b|\bsignature\b"
    r"|(?:您|你)的(?:姓名|名字)",
    re.IGNORECASE,
)


def _named_greeting(form: str, sentence: str) -> str:
    """'Dear' followed by the customer's first name -> 'Dear {first name},'; by "the title
    and last name" -> 'Dear {title} {last name},'."""
    named = _NAME_WORD.search(sentence)
    if re.search(r"[{\[<]", form) or len(form.split()) > 2 or not named:
        return form
    if re.search(r"[\u4e00-\u9fff]", form):
        return f"{form.rstrip('：:，,')}{{姓名}}："
    which = "last" if named.group().lower() == "surname" else (named.group(1) or "").strip().lower()
    name = {"first": "{first name}", "last": "{last name}", "family": "{last name}"}.get(
        which, "{name}"
    )
    if which in ("last", "family") and re.search(r"\btitle\b", sentence, re.I):
        name = "{title} {last name}"
    return f"{form.rstrip(',:')} {name},"


def _is_line(quote: str) -> bool:
    """A quoted full sentence (a contact line), not a word or a form: a sentence naming a
    day ("by Friday, March 14, 2025.") shows how to write a deadline, no reply carries it."""
    cjk = len(re.findall(r"[\u4e00-\u9fff]", quote))
    full = bool(re.search(r"[.!?。！？]$", quote)) and (len(quote.split()) >= 5 or cjk >= 6)
    return full and not dated(quote)


def inline_blocks(text: str) -> str:
    """`text` with what a rule ending in a colon introduces on the lines below, a block quote
    ("End every reply with this exact line:" / "> With care, the Support Team") or a list of
    quoted phrases ("These phrases must never appear:" / '- "calm down"'), joined to the rule
    as quotes, so that it reads as one sentence: 'End every reply with this exact line:
    "With care, the Support Team"'."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        rule = line.rstrip().endswith((":", "：")) and not line.lstrip().startswith(("#", "|"))
        block, end = _introduced(lines, i) if rule else ([], i)
        if block:
            line = f"{line.rstrip()} " + ", ".join(f'"{q}"' for q in block)
            i = end
        out.append(line)
    return "\n".join(out)


# A line introducing what a signature holds: "**Every signature must contain, in this order:**".
_SIGNATURE_INTRO = re.compile(r"\bsignature\b[^\n]*[:：]\W*$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
# A signature's personal line shown by example: an extension, a phone with one.
_PERSONAL = re.compile(r"\bext\.?\s*\d|\bextension\b", re.IGNORECASE)


def _signature_list(text: str) -> list[str]:
    """The lines a guide's list of what every signature holds gives word for word: "3.
    `Sable River Transit Authority` — written out in full" gives that line; "Your full name"
    and "Your job title" are the signer's (their lines come from whoever signs), and a phone
    with an extension is the signer's own, shown by example."""
    lines = text.splitlines()
    for at, line in enumerate(lines):
        if not _SIGNATURE_INTRO.search(line.replace("*", "")):
            continue
        found: list[str] = []
        for item in lines[at + 1 :]:
            listed = _LIST_ITEM.match(item)
            if not listed:
                if item.strip():
                    break
                continue
            quote = QUOTE.match(listed.group(1).strip())  # the item opens with the form
            if quote and not _PERSONAL.search(quote_text(quote)):
                found.append(quote_text(quote).strip(" ,，"))
        if found:
            return found
    return []


def _introduced(lines: list[str], start: int) -> tuple[list[str], int]:
    """The quotes of the block quote or quoted-phrase list from `start` (blank lines before
    it skipped), and the index after it; ([], start) when none follows."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    quotes: list[str] = []
    quoted_block: list[str] = []
    while i < len(lines):
        line = lines[i].strip()
        item = re.match(r"^(?:[-*+]|\d+[.)])\s+(.*)$", line)
        phrase = quoted(item.group(1)) if item else []
        if line.startswith(">"):
            quoted_block.append(line.lstrip("> ").strip())
        elif item and len(phrase) == 1 and item.group(1).strip(" \"“”'‘’「」.,;") == phrase[0]:
            quotes.append(phrase[0])
        else:
            break
        i += 1
    if quoted_block:
        quotes.insert(0, " ".join(b for b in quoted_block if b))
    quotes = [q.replace('"', "'") for q in quotes if q]
    return (quotes, i) if quotes else ([], start)


def _about(topic: re.Pattern[str], sentence: str) -> bool:
    """`sentence` names `topic` (the greeting, the sign-off) as what it is about, not as
    where something goes ("on the first line after the greeting", "before the sign-off")."""
    return any(not _POSITION.search(sentence[: m.start()]) for m in topic.finditer(sentence))


_POSITION = re.compile(r"\b(?:before|after|above|below|under)\s+(?:the\s+|your\s+|our\s+)?$", re.I)


# A subject line is neither greeting nor sign-off ("Start the subject line with the code").
_SUBJECT = re.compile(r"\bsubject\b|邮件标题|主题行", re.I)


def _topic(heading: str) -> str | None:
    """What a section's heading says its rules are about: "greeting", "sign_off", "subject",
    or None (a heading about neither, or both: each sentence then says what it is about)."""
    if _SUBJECT.search(heading):
        return "subject"
    greets, signs = bool(_GREETING.search(heading)), bool(_SIGN_OFF.search(heading))
    return "greeting" if greets and not signs else "sign_off" if signs and not greets else None


def _sections(text: str) -> list[tuple[str, str]]:
    """`text` cut at its headings: (heading, the section's text, heading line included)."""
    found: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            found.append((heading.group(2).strip(" *"), []))
        found[-1][1].append(line)
    return [(heading, "\n".join(lines)) for heading, lines in found if lines]


# What a greeting form looks like when only its section says it is one: a salutation word,
# or a form ending in its comma or colon ("Dear", "Good morning", "Hello {name},").
_SALUTATION = re.compile(
    r"^(?:dear|hi|hello|hey|good\s+(?:morning|afternoon|evening|day)|greetings)\b|[,:，：]$"
    r"|^(?:尊敬的|亲爱的|您好|你好)",
    re.IGNORECASE,
)


def _placed(sentence: str) -> bool:
    """`sentence` names the greeting or the sign-off only as a place ("before the sign-off")."""
    marks = [*_GREETING.finditer(sentence), *_SIGN_OFF.finditer(sentence)]
    return any(_POSITION.search(sentence[: m.start()]) for m in marks)


def _addresses(topic: str | None, sentence: str) -> tuple[bool, bool]:
    """Whether `sentence` is about the greeting, and about the sign-off: its section's
    `topic` when the heading names one ("## Greeting": "The first line is always "Dear"";
    'If the customer signs with "Dr."' there is no sign-off), else its own words."""
    if topic is not None:
        placed = _placed(sentence)
        return topic == "greeting" and not placed, topic == "sign_off" and not placed
    if _SUBJECT.search(sentence):
        return False, False
    return _about(_GREETING, sentence), _about(_SIGN_OFF, sentence)


def extract_rules(text: str) -> StyleRules:
    """Read greeting, sign-off, forbidden phrases, required elements and lines, register and
    length; and the rules of each situation the guide names (`situations`), which are not
    rules for every reply."""
    text, situations = split_situations(inline_blocks(text))
    rules = StyleRules(situations=situations)
    rules.forbidden, table = _table_forbidden(text)
    rules.instead = _table_instead(text)
    if table:
        rules.sources["forbidden"] = table
    for heading, section in _sections(text):
        _read_section(rules, _topic(heading), section)
    lines = _signature_list(text)
    if lines and SIGNER not in rules.sign_off:
        rules.sign_off = "\n".join([rules.sign_off, SIGNER, *lines]).strip()
    rules.formats = read_forms(rule_sentences(text))
    rules.masked = read_mask(rule_sentences(text))
    if rules.masked:  # "In emails and text messages, never write the full account number."
        named = {_channel(m) for m in _REQUEST_CHANNEL.finditer(rules.masked.source)}
        rules.masked.channels = sorted(named)
    if rules.greeting and not rules.greeting_fallback:
        rules.greeting_fallback = _unnamed_greeting(rules.greeting, rules.sources["greeting"])
    return rules


def _read_section(rules: StyleRules, topic: str | None, text: str) -> None:
    """Add to `rules` what the sentences of one section of the guide say, and its tables of
    greetings or closings per channel (`_read_channel_tables`)."""
    _read_channel_tables(rules, topic, text)
    for s in rule_sentences(text):
        # Quotes after "never/avoid/禁止" are forbidden; quotes before it are the form to use.
        neg = _prohibition(s)
        forbids = neg is not None
        banned = quoted(s[neg.start() :]) if neg else []
        quotes = quoted(s[: neg.start()]) if neg else quoted(s)
        if banned:
            known = {f.lower() for f in rules.forbidden}
            rules.forbidden += [q for q in dict.fromkeys(banned) if q.lower() not in known]
            rules.sources.setdefault("forbidden", s)
        greets, signs = _addresses(topic, s)
        channel = _channel(_LABELLED_CHANNEL.match(s.replace("*", "")))
        if quotes and signs and channel and _is_closing(quotes[0]):
            rules.channel_closings.setdefault(channel, quotes[0])
        if topic == "greeting" and quotes and not _SALUTATION.search(quotes[0]):
            greets = False  # 'Refer to them as "member"' under "## Addressing customers"
        if quotes and greets and rules.greeting and _UNKNOWN.search(s):
            if not rules.greeting_fallback:
                rules.greeting_fallback, rules.sources["greeting_fallback"] = quotes[0], s
        elif quotes and greets and rules.greeting and _FIRST_NAME_SLOT.search(quotes[0]):
            # "If the customer signs with a first name only, you may write "Hello [First name],"."
            if not rules.first_name_greeting:
                rules.first_name_greeting, rules.sources["first_name_greeting"] = quotes[0], s
        elif quotes and not rules.greeting and greets:
            rules.greeting, rules.sources["greeting"] = _named_greeting(quotes[0], s), s
        elif quotes and not rules.sign_off and signs:
            rules.sign_off, rules.sources["sign_off"] = "\n".join(_forms(s)), s
        elif (
            quotes
            and signs
            and _SIGNER_WORDS.search(s.replace("*", ""))
            and SIGNER not in rules.sign_off
        ):
            # 'Sign with your full name, job title, "Tidewater Water," and a phone number':
            # the signer's lines, then the quoted ones, under the closing already read.
            lines = [SIGNER, *(q.strip(" ,，") for q in quotes)]
            rules.sign_off = "\n".join([rules.sign_off, *lines]).strip()
        elif quotes and _REQUIRE.search(s) and not forbids:
            _read_required_quotes(rules, s, quotes)
        # A guide that mentions apologizing without forbidding it asks for an apology.
        wants = {"reference": bool(_REQUIRE.search(s)), "apology": True}
        if not forbids:
            for name, pat in (("reference", _REFERENCE), ("apology", _APOLOG)):
                if wants[name] and pat.search(s) and name not in rules.required:
                    rules.required.append(name)
                    rules.sources[name] = s
        if not rules.formality and (_INFORMAL.search(s) or _FORMAL.search(s)) and not forbids:
            rules.formality = "informal" if _INFORMAL.search(s) else "formal"
            rules.sources["formality"] = s
        limit = _LIMIT.search(s)
        # "Sentences of 20 words or fewer" bounds a sentence, not the reply.
        if limit and rules.max_words is None and not _SENTENCE_WORD.search(s):
            rules.max_words = int(limit.group(1) or limit.group(3))
            rules.sources["max_words"] = s


def _tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table of `text` as its rows of cells, header first, separator left out."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _cell_channel(cell: str) -> str:
    return _channel(_LABELLED_CHANNEL.match(cell.replace("*", "").replace("`", "") + " "))


# A table row for a customer who signs with a first name only ("Rider signed with a first
# name only").
_FIRST_NAME_ONLY = re.compile(
    r"\bfirst\s+name\s+(?:only|alone)\b|\bonly\s+(?:a|their)\s+first\s+name", re.I
)


def _read_channel_tables(rules: StyleRules, topic: str | None, text: str) -> None:
    """Greetings and closings a table gives per channel. A greeting table has a column per
    channel and a row per case ("| Rider gave a first and last name | `Hello Marcus,` |
    `Dear Marcus Hale,` |", a first name only, no name); a closing table a row per channel
    ("| Email | `With thanks,` | Full signature block |"). The first channel is the default."""
    for header, *rows in _tables(text):
        channels = [_cell_channel(cell) for cell in header]
        if topic == "greeting" and any(channels):
            for row in rows:
                _read_greeting_row(rules, channels, row, " | ".join(header))
        elif topic == "sign_off":
            for row in rows:
                channel = _cell_channel(row[0])
                closing = next((q for c in row[1:] for q in quoted(c) if _is_closing(q)), "")
                if channel and closing:
                    rules.channel_closings.setdefault(channel, closing)
                    if not rules.sign_off:
                        rules.sign_off, rules.sources["sign_off"] = closing, " | ".join(row)


def _read_greeting_row(rules: StyleRules, channels: list[str], row: list[str], source: str) -> None:
    """One case of a greeting table: each channel's form, its example name made a slot."""
    for column, channel in enumerate(channels):
        forms = quoted(row[column]) if channel and column < len(row) else []
        if not forms:
            continue
        first = not any(channels[:column])  # the default channel's column
        if _UNKNOWN.search(row[0]):
            if first and not rules.greeting_fallback:
                rules.greeting_fallback, rules.sources["greeting_fallback"] = forms[0], source
        elif _FIRST_NAME_ONLY.search(row[0]):
            if first and not rules.first_name_greeting:
                rules.first_name_greeting = _slotted(forms[0])
                rules.sources["first_name_greeting"] = source
        else:
            rules.channel_greetings.setdefault(channel, _slotted(forms[0]))
            if first and not rules.greeting:
                rules.greeting, rules.sources["greeting"] = _slotted(forms[0]), source


def _slotted(form: str) -> str:
    """A greeting shown with an example name, the name made a slot: "Hello Marcus," ->
    "Hello [First name],"; "Dear Marcus Hale," -> "Dear [Name],"."""
    shown = re.match(r"^(\W*\w+\s+)((?:[A-Z][a-z'’-]+\s*){1,3}?)([,:，：!]?)$", form.strip())
    if not shown:
        return form
    slot = "[First name]" if len(shown.group(2).split()) == 1 else "[Name]"
    return f"{shown.group(1)}{slot}{shown.group(3)}"


def _unnamed_greeting(greeting: str, sentence: str) -> str:
    """The greeting for a customer whose name is not known, when the guide gives none: the
    one it names ("Dear" followed by "the patient's first name" -> "Dear Patient,"), not
    "Dear,"; "" when the greeting has no name in it or the guide does not say whose it is."""
    whose = re.search(
        r"\bthe\s+([a-z]+)['’]s\s+(?:first\s+|full\s+|last\s+)?name\b", sentence, re.I
    )
    if "{" not in greeting or not whose:
        return ""
    return f"{_prefix(greeting).rstrip(' ,')} {whose.group(1).capitalize()},"


# A section opening with the situation its rules are for: "When a customer tells us that a
# policyholder has died:", "如果客户告知家人去世时：". The colon: what follows are its rules.
_SITUATION = re.compile(
    r"^\W*((?:when|whenever|if)\b[^:：]{8,160}?)\s*[:：]\s*$|^\W*((?:当|如果|若|遇到)[^:：]{4,60})[:：]\s*$",
    re.IGNORECASE,
)
# ... but "When you write to a customer:" opens rules for every reply, not a situation.
_EVERY_REPLY = re.compile(
    r"^\W*(?:when|whenever|if)\s+(?:you\s+|we\s+|staff\s+)?(?:are\s+)?"
    r"(?:write|writing|reply|replying|respond|responding|draft|drafting|e-?mailing|answering"
    r"|contacting|talking|speaking|communicating)"
    r"(?:\s+(?:to|with)\s+(?:a\s+|the\s+|our\s+)?(?:customers?|members?|clients?|patients?|people|them|anyone))?\s*$"
    r"|^\W*(?:当|如果)?(?:给|向|与)?(?:客户|用户|顾客)(?:写信|回复|沟通)(?:时)?$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*(#{1,6})\s+(.*)$")
# A heading over sections that are each one situation ("## Specific situations" /
# "### Late shipment"): its sub-headings name the situations.
_SITUATIONS_HEADING = re.compile(
    r"\b(?:situations?|scenarios?|special cases|specific cases|circumstances)\b|情形|场景|特殊情况",
    re.IGNORECASE,
)


def split_situations(text: str) -> tuple[str, list[Situation]]:
    """`text` without the sections that open with a situation, and those situations.

    A section runs from a heading to the next one. Its rules are the situation's only:
    "Open with "I'm so sorry for your loss."" is not how every reply opens. A section is a
    situation when it opens with one ("When a customer tells us ...:"), when a bold label
    tells one, or when its heading is under a heading about situations ("## Specific
    situations" / "### Late shipment"). A quoted phrase it forbids stays in `text` too.
    """
    general: list[str] = []
    found: list[Situation] = []
    sections: list[list[str]] = [[]]
    for line in _paragraph_lines(text):
        if _HEADING.match(line) or _situation_label(line):
            sections.append([])
        sections[-1].append(line)
    under: int | None = None  # the level of the heading about situations we are under
    for section in sections:
        label = _situation_label(section[0]) if section else None
        if label:  # "**A bill is disputed.** Thank the patient ..." and the lines below it
            body = [section[0][label.end() :], *section[1:]]
            found.append(_situation(label.group(1).strip(), body))
            general += _forbidding(body)
            continue
        heading = _HEADING.match(section[0]) if section else None
        body = [ln for ln in section[1 if heading else 0 :] if ln.strip()]
        title = re.sub(r"^[\d.\s]+", "", heading.group(2)).strip(" *") if heading else ""
        if heading:
            level = len(heading.group(1))
            if under is not None and level <= under:
                under = None
            if under is not None and body:  # "### Late shipment" under "## Situations"
                found.append(_situation(title, body))
                general += _forbidding(body)
                continue
            if _SITUATIONS_HEADING.search(title):
                under = level
        condition = _SITUATION.match(body[0]) if body else None
        named = (condition.group(1) or condition.group(2)) if condition else ""
        if not condition or _EVERY_REPLY.match(named):
            general += _without_conditional_lines(section, found)
            continue
        when = f"{title}. {named.strip()}" if title else named.strip()
        found.append(_situation(when, body[1:]))
        general += _forbidding(body[1:])
    return "\n".join(general), found


def _forbidding(lines: list[str]) -> list[str]:
    """The sentences of a situation's `lines` that forbid a quoted phrase ("Never use
    "denied""): wording, not a topic, so forbidden in every reply, as a phrase list is; the
    rest of the line (a line it asks for) stays the situation's."""
    return [
        s
        for line in lines
        for s in sentences(line)
        if (neg := _prohibition(s)) and quoted(s[neg.start() :])
    ]


def _situation_label(line: str) -> re.Match[str] | None:
    """The bold label opening `line` when it tells a situation (`_SITUATION_LABEL`), not a
    name in title case ("**Quality Inspection Reports:**" is a kind of document)."""
    label = _LABEL.match(line)
    if not label or _title_case(label.group(1)):
        return None
    return label if _SITUATION_LABEL.search(label.group(1).strip()) else None


def _title_case(text: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z]+", text) if len(w) > 3]
    return len(words) >= 2 and all(w[0].isupper() for w in words)


# A line added under a condition inside a sentence: 'For anything to do with an open claim,
# add: "For urgent claim help, call ..."', '涉及理赔的回复，加上：“……”'.
_CONDITIONAL_LINE = re.compile(
    r"^\W*(?:for|if|when|whenever|in)\s+(.{5,100}?),\s*(?:also\s+)?"
    r"(?:add|include|say|write|give|append)\b[^\"“]{0,20}[\"“]([^\"”]{8,})[\"”]\W*$"
    r"|^\W*(?:如果|若|当|凡|涉及)(.{2,40}?)(?:时|的回复)?[，,]\s*(?:请|还要|也要)?"
    r"(?:加上|补充|附上|添加|写上|注明)[^“「]{0,6}[“「]([^”」]{4,})[”」]\W*$",
    re.IGNORECASE,
)


def _without_conditional_lines(lines: list[str], found: list[Situation]) -> list[str]:
    """`lines` without the sentences that add a line under a condition (`_CONDITIONAL_LINE`),
    each of which becomes a situation of its own in `found`: the line is not every reply's."""
    kept: list[str] = []
    for line in lines:
        parts = sentences(line) or [line]
        rest = []
        for sentence in parts:
            conditional = _CONDITIONAL_LINE.match(sentence.replace("**", ""))
            said = (conditional.group(2) or conditional.group(4)).strip() if conditional else ""
            # 'If the name is not known, write "Hello,"' gives a form, not a line.
            if conditional and _is_line(said):
                when = (conditional.group(1) or conditional.group(3)).strip()
                found.append(Situation(when=when, lines=[said]))
            else:
                rest.append(sentence)
        if len(rest) == len(parts):
            kept.append(line)
        elif rest:
            kept.append(" ".join(rest))
    return kept


def _situation(when: str, lines: list[str]) -> Situation:
    """The rules of one situation's section: the sentence to open with, quoted lines, contact
    lines ("Give the Support Line: 1-800-..."), what to tell the customer, what not to say."""
    situation = Situation(when=when)
    for s in rule_sentences("\n".join(lines)):
        s = s.replace("**", "")
        neg = _prohibition(s)
        if neg:
            banned = quoted(s[neg.start() :]) + _mentions(s)
            situation.forbidden += [b for b in banned if b not in situation.forbidden]
            continue
        quotes = quoted(s)
        if quotes and _OPENING.search(s) and not situation.opening:
            situation.opening = quotes[0]
            continue
        example = EXAMPLE.search(s)
        said = [q for q in quotes if _is_line(q) and not _exemplifies(example, s, q)]
        said = said or [line for line in (_contact(s), _told(s)) if line]
        situation.lines += [line for line in said if line not in situation.lines]
    return situation


# "Start with "..."", "以“……”开头" (the sentence may end at the quote: 以“请节哀。”).
_OPENING = re.compile(
    r"\b(open|start|begin)\s+(with|by)\b|\b(?:put|place)\s+(?:this|the)\s+(?:line|sentence)\s+first\b"
    r"|以.{0,30}开头|^\W*以\s*[“「『]|开头(先)?(说|写)",
    re.I,
)
_MENTION = re.compile(
    r"\b(?:do not|don't|never|must not|avoid)\s+(?:mention\w*|discuss\w*|bring up|talk about|refer to)"
    r"\s+([^;；.。]+)|(?:不要|不得|避免|切勿)(?:提及|提到|谈及)([^;；。]+)",
    re.IGNORECASE,
)
_CONTACT = re.compile(
    r"^\W*(?:give|provide|share|include|offer)\s+(?:them\s+|the\s+customer\s+)?(?:the\s+|our\s+)?"
    r"([^:：]{3,60}?)\s*[:：]\s*(.*\d.*?)[.。]?$|^\W*(?:提供|告知|给出)(?:客户)?([^:：]{2,20})[:：](.*\d.*?)。?$",
    re.IGNORECASE,
)
_TOLD = re.compile(
    r"^\W*(?:tell|remind|reassure|let)\s+(?:the\s+customer|customers|them)\s+(?:know\s+)?(?:that\s+)?(.+?)[.]?$"
    r"|^\W*(?:告知|告诉|提醒)(?:客户|对方)[，,]?(.+?)。?$",
    re.IGNORECASE,
)
_THIRD_PERSON = {"they": "you", "their": "your", "them": "you", "theirs": "yours"}


def _mentions(sentence: str) -> list[str]:
    """ "Do not mention renewals, add-ons or any sales offer" -> the things not to mention."""
    listed = _MENTION.search(sentence)
    if not listed:
        return []
    items = re.split(r",\s*|\s+(?:or|and|nor)\s+|、|或", listed.group(1) or listed.group(2))
    return [re.sub(r"^(any|an?|the)\s+", "", i.strip(), flags=re.I) for i in items if i.strip()]


def _contact(sentence: str) -> str:
    """ "Give the Bereavement Support Line: 1-800-555-0163 (9am to 5pm)" -> that line, as said."""
    found = _CONTACT.match(sentence)
    if not found:
        return ""
    if found.group(1):
        label, value = found.group(1).strip(), found.group(2).strip()
        return f"{label[:1].upper()}{label[1:]}: {value}."
    return f"{found.group(3).strip()}：{found.group(4).strip()}。"


def _told(sentence: str) -> str:
    """ "Tell the customer they can ask us to review it" -> "You can ask us to review it."."""
    found = _TOLD.match(sentence)
    if not found:
        return ""
    if found.group(2):
        return re.sub(r"他们|他|她", "您", found.group(2).strip()) + "。"
    said = re.sub(
        r"\b(they|their|them|theirs)\b",
        lambda m: _THIRD_PERSON[m.group(1).lower()],
        found.group(1).strip(),
        flags=re.IGNORECASE,
    )
    return f"{said[:1].upper()}{said[1:]}."


def _prohibition(sentence: str) -> re.Match[str] | None:
    """The first "never/avoid/禁止" of `sentence` that is not inside a condition."""
    for match in _FORBID.finditer(sentence):
        if not _CONDITION.search(sentence[: match.start()]):
            return match
    return None


def _read_required_quotes(rules: StyleRules, sentence: str, quotes: list[str]) -> None:
    """A quoted example of quoting the case number becomes the reference form; a quoted full
    sentence the guide says to include (not an example) becomes a required line."""
    example = EXAMPLE.search(sentence)
    for quote in quotes:
        code = _CODE.search(quote) or _NUMBERED.search(quote)
        if code and _REFERENCE.search(sentence) and not rules.reference_form:
            span = code.span(1) if code.re is _NUMBERED else code.span()
            rules.reference_form = quote[: span[0]] + "{reference}" + quote[span[1] :]
            rules.sources["reference_form"] = sentence
        elif (
            quote not in rules.lines
            and _is_line(quote)
            and not _exemplifies(example, sentence, quote)
        ):
            rules.lines.append(quote)
            rules.sources.setdefault("lines", sentence)


def _exemplifies(example: re.Match[str] | None, sentence: str, quote: str) -> bool:
    """`quote` comes after "for example" in `sentence`."""
    return example is not None and example.start() < sentence.find(quote)


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    toks = re.findall(r"[\u4e00-\u9fff]|\w+", text.lower())
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def copies_message(draft: str, message: str, limit: float = 0.5) -> bool:
    """True when most of the draft's 4-grams come from the customer's own message."""
    d = _grams(draft)
    return bool(d) and len(d & _grams(message)) / len(d) >= limit


def form_prefix(form: str) -> str:
    """The fixed words a greeting form opens with ("Dear {name}," -> "Dear")."""
    return _prefix(form)


def form_lines(form: str) -> list[str]:
    """A sign-off form's fixed lines, without placeholders (the signer's line) and trailing
    punctuation: what every draft's sign-off holds."""
    lines = (_fill(line, "").strip(" ,，") for line in form.splitlines())
    return [line for line in lines if line]


# A rule for one channel: "Emails: close with ...", "Letters close with ...", "短信：...".
_LABELLED_CHANNEL = re.compile(
    r"\W*(?:in\s+|for\s+)?(?:(?P<email>e-?mails?)|(?P<letter>(?:printed\s+)?letters?)"
    r"|(?P<text>text(?:\s+messages?)?|sms)|(?P<chat>chats?)|(?P<zh_email>邮件)|(?P<zh_letter>信函)"
    r"|(?P<zh_text>短信))\b\W",
    re.IGNORECASE,
)
# A request's channel: "emailed us", "a printed letter", "by text".
_REQUEST_CHANNEL = re.compile(
    r"\b(?:(?P<email>e-?mail(?:s|ed)?|inbox)|(?P<letter>letters?|mailed|by post)"
    r"|(?P<text>texts?|texted|sms)|(?P<chat>chat)|(?P<zh_email>邮件)|(?P<zh_letter>信函|来信)"
    r"|(?P<zh_text>短信))\b",
    re.IGNORECASE,
)


def _channel(match: re.Match[str] | None) -> str:
    if match is None:
        return ""
    found = next(name for name, value in match.groupdict().items() if value)
    return found.removeprefix("zh_")


def _is_closing(quote: str) -> bool:
    return len(quote.split()) <= 4 and quote.rstrip()[-1:] in ",，!"


def request_channel(request: str) -> str:
    """The one channel the request names ("emailed us": 'email'), or "" (none, or two: a
    printed letter about an e-mail)."""
    named = {_channel(m) for m in _REQUEST_CHANNEL.finditer(request)}
    return next(iter(named)) if len(named) == 1 else ""


def for_channel(rules: StyleRules, request: str) -> StyleRules:
    """`rules` with the greeting and closing of the channel the request names ("emailed
    us": "Thank you," where letters close with "Sincerely,"); unchanged when it names none
    the guide has, or when it names two (a printed letter about an e-mail)."""
    channel = request_channel(request)
    greeting = rules.channel_greetings.get(channel)
    rules = rules.model_copy(update={"greeting": greeting}) if greeting else rules
    closing = rules.channel_closings.get(channel)
    if not closing or not rules.sign_off:
        return rules
    _, *signature = rules.sign_off.split("\n", 1)  # the closing line gives way, not the rest
    return rules.model_copy(update={"sign_off": "\n".join([closing, *signature])})


def sign_off_text(rules: StyleRules) -> str:
    """The sign-off a draft ends with: the signer's line (`SIGNER`) left for the person
    sending it to fill ("[Your name]"), other placeholders dropped."""
    lines = (
        _SIGNER_LINE if line.strip() == SIGNER else _fill(line, "")
        for line in rules.sign_off.splitlines()
    )
    return "\n".join(line for line in lines if line.strip())


def _fill(form: str, name: str) -> str:
    return re.sub(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>", name, form).strip()


def _prefix(form: str) -> str:
    """The fixed words a form opens with, before any placeholder or punctuation."""
    return re.split(r"[{\[<]", form)[0].strip(" ,，:：")


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def uses(text: str, phrase: str) -> bool:
    """`text` holds `phrase` as words ("Hi" is not in "this"), case aside."""
    if re.search(r"[\u4e00-\u9fff]", phrase):
        return phrase in text
    pattern = r"(?<![A-Za-z])" + r"\s+".join(map(re.escape, phrase.split())) + r"(?![A-Za-z])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def greeting_for(rules: StyleRules, name: str = "") -> str:
    """The greeting line for a customer called `name` ("" when not known: the guide's
    fallback, or the form without the name)."""
    if not rules.greeting:
        return ""
    if not name and rules.greeting_fallback:
        return rules.greeting_fallback
    title, words = _titled(name)
    if title and any(title.lower() == f.lower() for f in rules.forbidden):
        # "Never use "Mrs." or "Miss"": the neutral "Ms." they stand for.
        title = "Ms." if title in ("Mrs.", "Miss") else ""
    # A guide's slots in any brackets: "Dear [Title] [Last name]," is "Dear {title} {last name},".
    form = re.sub(r"[\[<]([^\]>\n]{1,30})[\]>]", lambda m: "{" + m.group(1) + "}", rules.greeting)
    if re.search(r"\{first", form, re.IGNORECASE):
        name = words[0] if words else ""
    elif re.search(r"\{title", form, re.IGNORECASE) and title and words:
        name = f"{title} {words[-1]}"
    elif re.search(r"\{last", form, re.IGNORECASE) and words:
        name = " ".join([title, words[-1]] if title else words)
    form = re.sub(r"\{title\}\s*", "", form, flags=re.IGNORECASE)
    return _fill(form, name).replace(" ,", ",").replace(" ：", "：")


_TITLE = re.compile(r"^(Mr|Ms|Mrs|Miss|Mx|Dr|Prof)\.?$")


def _titled(name: str) -> tuple[str, list[str]]:
    """A name's title ("Mr.", "Dr.") and its other words."""
    words = name.split()
    if words and _TITLE.match(words[0]):
        bare = words[0].rstrip(".")
        return (bare if bare == "Miss" else bare + "."), words[1:]
    return "", words


def reference_line(rules: StyleRules, reference: str, chinese: bool = False) -> str:
    """The sentence quoting the customer's case number, in the guide's form when it gives one."""
    if rules.reference_form:
        line = rules.reference_form.replace("{reference}", reference)
        # A form quoted mid-sentence ("in the form "your claim reference X"") opens one here.
        line = line[:1].upper() + line[1:]
        return line if re.search(r"[.!?。！？]$", line) else line + ("。" if chinese else ".")
    return f"您的编号是{reference}。" if chinese else f"Your reference number is {reference}."


def problems(
    draft: str,
    rules: StyleRules,
    message: str = "",
    name: str = "",
    reference: str = "",
    situation: Situation | None = None,
) -> list[str]:
    """What a draft breaks, in words; empty when it follows the rules. `name` and `reference`
    are the customer's name and case number, when the request gives them; `situation` the
    guide's situation the customer's message is about, if any."""
    situation = situation or _NO_SITUATION
    out = []
    greeting = greeting_for(rules, name)
    head = greeting if (name or rules.greeting_fallback) else _prefix(rules.greeting)
    if head and not _flat(draft).startswith(_flat(head).rstrip(",:，：")):
        out.append(f"does not open with {head!r}")
    tail = _flat(sign_off_text(rules)).strip(" ,，")
    if tail and tail not in _flat(draft)[-len(tail) - 80 :]:
        out.append(f"does not end with {rules.sign_off!r}")
    forbidden = rules.forbidden + situation.forbidden
    out += [f"uses forbidden {p!r}" for p in forbidden if uses(draft, p)]
    if reference and _quotes_reference(rules, reference) and reference not in draft:
        out.append(f"does not quote the case number {reference!r}")
    wanted = [situation.opening] if situation.opening else []
    wanted += rules.lines + situation.lines
    out += [f"lacks the line {line!r}" for line in wanted if _flat(line) not in _flat(draft)]
    if message and copies_message(draft, message):
        out.append("copies the customer's message")
    if apply_forms(draft, rules.formats) != draft:
        out.append("writes a code, date or amount in a form the guide does not use")
    return out


def repair(
    draft: str,
    rules: StyleRules,
    name: str = "",
    reference: str = "",
    situation: Situation | None = None,
) -> str:
    """The draft in the guide's frame: its greeting (with the customer's `name`), the
    `situation`'s opening sentence, the case number quoted (`reference`), the situation's
    and the guide's required lines, the sign-off; sentences with a forbidden phrase dropped;
    codes, dates and amounts written in the guide's forms (`data.value_forms`). The draft's
    own greeting and sign-off give way to the guide's."""
    situation = situation or _NO_SITUATION
    forbidden = rules.forbidden + situation.forbidden
    chinese = bool(re.search(r"[\u4e00-\u9fff]", draft + rules.greeting + rules.sign_off))
    text = _without_closing(_without_opening(draft.strip(), rules), rules)
    # Before the forbidden phrases: "order #48213" is rewritten ("order SO-48213"), not dropped.
    text = apply_forms(text, rules.formats)
    # A placeholder ("[Your Name]") is for a person to fill, never sent as written.
    text = PLACEHOLDER.sub(" ", text)
    # The passages' list copied ("[1] (docs/returns.md#3. RMA) [2] (...)"): no words of a reply.
    text = _SOURCE_LIST.sub(" ", text)
    if rules.greeting:  # the guide's greeting opens it: none of the draft's own stays
        text = _GREETING_LINE.sub("", text)
    text = _written_instead(text, rules.instead)
    cut = [_without_lead(s, forbidden) for s in _once(sentences(text))]
    kept = [s for s in cut if not any(uses(s, p) for p in forbidden)]
    kept = [s for s in kept if _flat(s) != _flat(situation.opening)]
    if reference and _quotes_reference(rules, reference) and not any(reference in s for s in kept):
        kept.insert(0, reference_line(rules, reference, chinese))
    if situation.opening:  # "before anything else"
        kept.insert(0, situation.opening)
    for line in situation.lines + rules.lines:
        if _flat(line) not in _flat(" ".join(kept)):
            kept.append(line)
    body = apply_forms(("" if chinese else " ").join(kept), rules.formats)  # the added lines
    parts = [greeting_for(rules, name), body, sign_off_text(rules)]
    return "\n\n".join(p for p in parts if p).strip()


# A placeholder a model writes for a person to fill ("[Your Name]", "[Customer Name]", or
# the "[" it was cut off after): never sent as written, and no fact to verify.
PLACEHOLDER = re.compile(
    r"\[(?:your|customer|insert|name)[^\]\n]*\]?|\[[ \t]*(?=\n|$)", re.IGNORECASE
)
_SOURCE_LIST = re.compile(
    r"(?:\[\d+\]\s*\([^)\n]*\)\s*)+"
    r"|\([\w./ -]+\.(?:md|csv|txt|pdf|docx?|html?|xlsx|jsonl?)(?:[#:][^)\n]*)?\)"
)


def _once(found: list[str]) -> list[str]:
    """The draft's sentences without a small model's loops: a sentence said before, and its
    cut-off repeat at the end ("I am working on a project that involves exped")."""
    out: list[str] = []
    for sentence in found:
        flat = _flat(sentence)
        if any(flat == _flat(s) for s in out):
            continue
        if sentence is found[-1] and any(_flat(s).startswith(flat) for s in out):
            continue
        out.append(sentence)
    return out


def _written_instead(text: str, instead: dict[str, str]) -> str:
    """`text` with each forbidden phrase the guide gives words for replaced by them ("the
    claim is rejected" -> "the claim is not approved"): the sentence keeps its facts."""
    for phrase, words in instead.items():

        def cased(match: re.Match[str], words: str = words) -> str:
            first = match.group()[:1]
            return (words[:1].upper() if first.isupper() else words[:1].lower()) + words[1:]

        edges = (r"(?<!\w)", r"(?!\w)") if re.match(r"\w", phrase) else ("", "")
        text = re.sub(edges[0] + re.escape(phrase) + edges[1], cased, text, flags=re.I)
    return text


def _without_lead(sentence: str, forbidden: list[str]) -> str:
    """`sentence` without a forbidden phrase that only leads it ("Unfortunately, the fee is
    $25." -> "The fee is $25."): the fact stays, the phrase goes."""
    for phrase in forbidden:
        lead = re.match(rf"\W*{re.escape(phrase)}\s*[,，]\s*(\w)", sentence, re.IGNORECASE)
        if lead:
            rest = sentence[lead.start(1) :]
            return rest[:1].upper() + rest[1:]
    return sentence


def _without_opening(text: str, rules: StyleRules) -> str:
    """`text` without its first line when that line is a greeting ("Hi Maria,") and the guide
    has its own."""
    first, _, rest = text.partition("\n")
    greets = len(first.split()) <= 6 and first.rstrip()[-1:] in ",:，：!！"
    return rest.strip() if rules.greeting and greets and rest.strip() else text


def _without_closing(text: str, rules: StyleRules) -> str:
    """`text` cut where it starts the guide's sign-off (or any closing of its own form:
    "Warm regards, Ridge"), or a closing line of its own ("Best regards," and the "[Your
    Name]" lines a model writes under it), so the guide's full sign-off ends it once."""
    opening = _fill(rules.sign_off, "").strip().splitlines()
    if not opening:
        return text
    first = opening[0].strip(" ,，")
    # Where a line or sentence starts with it, as a closing ("Thank you," / "Thank you!"),
    # not inside a sentence ("I would like to thank you for your patience").
    closing = rf"(?:^|(?<=[\n.!?。！？]))[ \t]*{re.escape(first)}(?=[ \t]*(?:[,，!.。]|\n|$))"
    found = [m.start() for m in re.finditer(closing, text, re.IGNORECASE)]
    found += [m.start() for m in _CLOSING_LINE.finditer(text)]
    late = [at for at in found if at > len(text) // 3]
    return text[: min(late)].strip() if late else text


# A line that greets: "Dear ,", "Hello Maria,", "尊敬的客户：".
_GREETING_LINE = re.compile(
    r"^[ \t]*(?:dear|hi|hello|hey|greetings|尊敬的|亲爱的)\b[^\n.!?]{0,40}[,:，：][ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# A line that closes a letter: "Best regards,", "Sincerely", "此致".
_CLOSING_LINE = re.compile(
    r"^[ \t]*(?:(?:best|kind|warm|warmest|with\s+kind)\s+regards|regards|sincerely"
    r"|yours\s+(?:sincerely|truly|faithfully)|best(?:\s+wishes)?|many\s+thanks|thanks"
    r"|thank\s+you|cheers)[ \t]*[,!.]?[ \t]*$|^[ \t]*此致",
    re.IGNORECASE | re.MULTILINE,
)


def addressee(message: str, titled_first: bool = False) -> str:
    """The customer's name as their message gives it ("this is Maria Lopez", a signature line
    "- Aisha Rahman, reference ...", "Thanks, Mark Feldman", "我是王芳"), or "".

    `titled_first`: `message` is an adviser's instruction, where "I'm Tasha Greene" is the
    adviser and the customer is the one named with a title ("Ms. Dana Morales ... Write her
    back. I'm Tasha Greene, ext 3105.")."""
    said = re.search(
        r"\b(?i:this is|i am|i'm|im|my name is|it's|its)\s+([A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+)?)",
        message,
    )
    # A drafting request names who the reply is to: "Draft a reply to Mr. Dietrich Hahn",
    # "Dr. Elena Petrova wants to ...", "a letter for Mr. Okonkwo".
    titled = re.search(
        r"(?:\b(?:to|for)\s+|^\W*|[.!?]\s+)((?:Mr|Ms|Mrs|Miss|Mx|Dr|Prof)\.?\s+[A-Z][a-z'’-]+"
        r"(?:\s+[A-Z][a-z'’-]+)?)",
        message,
    )
    if said and not (titled and titled_first):
        return said.group(1)
    if titled:
        return titled.group(1).removesuffix("'s").removesuffix("’s")
    signed = re.search(
        r"(?:^|[.!?\n]|\s[-–—]+|,)\s*(?:(?:thanks|thank you|regards|best|cheers|sincerely)[,!]?\s+)?"
        r"([A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+){1,2})\s*(?:[,(]\s*[^.!?\n]{0,40})?[\s\"”)]*$",
        message.strip(),
    )
    if signed:
        return signed.group(1)
    chinese = re.search(r"(?:我是|我叫|本人)([\u4e00-\u9fff]{2,3}?)(?:[，,。！\s]|$)", message)
    chinese = chinese or re.search(r"[—-]{1,2}\s*([\u4e00-\u9fff]{2,4})\s*$", message.strip())
    return chinese.group(1) if chinese else ""


# Whom an instruction writes to, by full name without a title: "Reply to an email from Marcus
# Hale", "Write back to Kenji Watanabe", "Reply to Harold Jensen's email", "Email Olivia
# Brandt back", "mailed to Robert Castellano".
_RECIPIENT = re.compile(
    r"(?:\b(?i:to)\s+|\b(?i:e-?mail|message|note|letter|comment|text|voicemail)s?\s+(?i:from)\s+"
    r"|\b(?i:e-?mail)\s+(?=\S+\s+\S+\s+(?i:back)\b))"
    r"([A-Z][a-z-]+\s+[A-Z][a-z-]+)(?![\w-]|\s+[A-Z])"
)


def recipient(instruction: str) -> str:
    """The full name an adviser's instruction writes to, when it gives one without a title."""
    found = _RECIPIENT.search(instruction)
    return found.group(1) if found else ""


# The customer signing with one name: a message ending "Thanks, Dana" or "- Kevin", or the
# adviser saying so ("just signed 'Kevin'"; not "signed 'Harriet Boateng'").
_FIRST_NAME_SIGNATURE = re.compile(
    r"(?:\b(?:thanks|thank you|regards|best|cheers|sincerely)\s*[,!]?\s+|\n\s*|[-–—]+\s*)"
    r"([A-Z][a-z'’-]+)[\s.!\"”']*$",
    re.IGNORECASE,
)
_SIGNED_ONE_NAME = re.compile(r"\bsign(?:ed|s)\b[^.'\"‘“]{0,30}['‘\"“]([A-Z][a-z'’-]+)['’\"”]")


def first_name_only(request: str, message: str) -> str:
    """The first name the customer signs with when they sign with it alone, or ""."""
    said = _SIGNED_ONE_NAME.search(request)
    if said:
        return said.group(1)
    signed = _FIRST_NAME_SIGNATURE.search(message.strip()) if message else None
    name = signed.group(1) if signed else ""
    return "" if _CLOSING_LINE.match(name) else name


def _quotes_reference(rules: StyleRules, reference: str) -> bool:
    """The guide asks for the case number quoted, or gives the form of its code: a reply
    about RMA-2024-01387 quotes it as the guide writes it."""
    return "reference" in rules.required or form_code(reference, rules.formats) == reference


def reference_in(message: str, forms: list[ValueForm] | None = None) -> str:
    """The case, order or ticket number the customer's message gives, or "": first one of
    a code the guide gives the form of, as the guide writes it (`data.value_forms`)."""
    written = form_code(message, forms or [])
    if written:
        return written
    code = _CODE.search(message)
    if code:
        return code.group(0)
    numbered = _NUMBERED.search(message)
    return numbered.group(1) if numbered else ""


def merge(first: StyleRules, second: StyleRules) -> StyleRules:
    """`first`'s rules win where both set one; forbidden phrases, required elements,
    required lines and situations add up."""
    out = first.model_copy(deep=True)
    for name in (
        "greeting",
        "greeting_fallback",
        "first_name_greeting",
        "sign_off",
        "reference_form",
        "formality",
        "max_words",
    ):
        if not getattr(out, name) and getattr(second, name):
            setattr(out, name, getattr(second, name))
            if name in second.sources:
                out.sources[name] = second.sources[name]
    for name in ("forbidden", "required", "lines", "situations", "formats"):
        mine = getattr(out, name)
        added = [x for x in getattr(second, name) if x not in mine]
        mine += added
        if added and name in second.sources:
            out.sources.setdefault(name, second.sources[name])
    out.masked = out.masked or second.masked
    out.instead = {**second.instead, **out.instead}
    out.channel_closings = {**second.channel_closings, **out.channel_closings}
    out.channel_greetings = {**second.channel_greetings, **out.channel_greetings}
    for name in set(second.sources) - set(out.sources):
        if name in out.required:
            out.sources[name] = second.sources[name]
    return out


def _by_file(chunks: list[Chunk]) -> dict[str, list[Chunk]]:
    files: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        files.setdefault(source_file(chunk.source), []).append(chunk)
    return files


def _joined(chunks: list[Chunk]) -> str:
    """A file's chunks as its text: each a block of its own, so that a chunk's first line
    (a bold label, "**Greeting:** ...") is not read as the end of the chunk before; under
    its section's heading where a section starts, so the guide's sections (a situation's
    rules: `split_situations`) are read as written."""
    parts: list[str] = []
    section: list[str] = []
    for chunk in chunks:
        # Every heading on the chunk's path that the chunk before was not under: a section
        # without text of its own ("## Specific situations" over "### Late shipment") too.
        shared = 0
        while shared < min(len(section), len(chunk.headings)) and (
            section[shared] == chunk.headings[shared]
        ):
            shared += 1
        for depth in range(shared, len(chunk.headings)):
            parts.append(f"{'#' * min(depth + 1, 6)} {chunk.headings[depth]}")
        section = chunk.headings
        parts.append(chunk.text)
    return "\n\n".join(parts)


def rules_from(style: list[Chunk], documents: list[Chunk]) -> tuple[StyleRules, dict[str, str]]:
    """The rules of the declared style material, then of documents that read as tone guides,
    and which files they came from (file -> why it counts as style material).

    Declared material wins over recognized guides: the user named it. A recognized guide
    stays among the documents (the user listed it as knowledge, and a question about
    the guide itself is answerable from it); only its rules are read here.
    """
    rules, used = StyleRules(), {}
    for name, chunks in _by_file(style).items():
        rules = merge(rules, extract_rules(_joined(chunks)))
        used[name] = "listed under sources.style"
    for name, chunks in _by_file(documents).items():
        title = chunks[0].headings[0] if chunks[0].headings else name
        text = _joined(chunks)
        found, why = is_style_guide(title, text)
        if found:
            rules = merge(rules, extract_rules(text))
            used[name] = why
    rules.files = list(used)
    return rules, used


# Ways people ask for a reply; varied so the model learns the rules, not one request's wording.
_DRAFT_ASKS_EN = (
    'Write a reply to this customer: "{q}"',
    'Reply to this customer: "{q}"',
    'Please draft an email replying to: "{q}"',
    'Compose a response to a customer asking "{q}"',
)
_DRAFT_ASKS_ZH = (
    "请回复这位客户：“{q}”",
    "客户来信：“{q}” 请起草回复。",
    "帮我写一封回复邮件，客户问：“{q}”",
)


def drafting_examples(
    faq: list[Conversation], rules: StyleRules, chinese: bool, seed: int, n: int
) -> list[Conversation]:
    """Up to `n` drafting requests made from FAQ rows, each answered by the row's answer in
    the guide's frame (greeting, sign-off, no forbidden phrase): the drafts the model
    trains on follow the rules. None when the rules give no frame to follow."""
    if not (rules.greeting or rules.sign_off or rules.forbidden):
        return []
    asks = _DRAFT_ASKS_ZH if chinese else _DRAFT_ASKS_EN
    rng = random.Random(seed)
    picked = rng.sample(faq, min(n, len(faq)))
    out = []
    for row in picked:
        question, answer = row.messages[0].content, row.messages[-1].content
        reply = repair(answer, rules)
        if reply.strip() and not problems(reply, rules):
            out.append(qa(rng.choice(asks).format(q=question), reply, row.source, "chat"))
    return out
