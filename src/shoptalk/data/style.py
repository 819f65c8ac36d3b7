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
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*|\n+")
# Double and CJK quotes anywhere; single quotes only off word edges, so "that's" stays whole.
_QUOTE = re.compile(
    r"[\"“「『]([^\"“”「」『』\n]{1,80})[\"”」』]|(?<!\w)['‘]([^'‘’\n]{1,80}?)['’](?!\w)"
)


class StyleRules(BaseModel, extra="forbid"):
    """The rules a draft must follow, with the sentence each came from."""

    greeting: str = Field("", description="the form a draft opens with, e.g. 'Dear {name},'")
    sign_off: str = Field("", description="the line a draft ends with")
    forbidden: list[str] = Field(default_factory=list, description="phrases a draft must not use")
    required: list[str] = Field(
        default_factory=list, description="elements a draft must carry (reference, apology)"
    )
    formality: str = Field(
        "", description="register: 'formal' or 'informal' when the guide says so"
    )
    max_words: int | None = Field(None, description="length limit in words (or characters for zh)")
    sources: dict[str, str] = Field(
        default_factory=dict, description="rule name -> the sentence it was read from"
    )

    def empty(self) -> bool:
        return not (self.greeting or self.sign_off or self.forbidden or self.required)


def sentences(text: str) -> list[str]:
    return [s.strip(" -*#>\t") for s in _SENTENCE.split(text) if s.strip(" -*#>\t")]


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


def _quoted(sentence: str) -> list[str]:
    found = [a or b for a, b in _QUOTE.findall(sentence)]
    return [q.strip() for q in found if q.strip(" ,，")]


_GREETING = re.compile(r"\b(greet|open|start|begin|salutation|address)\w*|开头|称呼|问候", re.I)
_SIGN_OFF = re.compile(r"\b(sign[- ]?off|sign|close|closing|end)\w*|落款|结尾|结束语|署名", re.I)
_FORBID = re.compile(
    r"\b(never|avoid|do not|don't|must not|banned|forbidden)\b|禁止|不要|不得|避免|请勿|禁用", re.I
)
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


def extract_rules(text: str) -> StyleRules:
    """Read greeting, sign-off, forbidden phrases, required elements, register and length."""
    rules = StyleRules()
    for s in sentences(text):
        # Quotes after "never/avoid/禁止" are forbidden; quotes before it are the form to use.
        neg = _FORBID.search(s)
        forbids = neg is not None
        banned = _quoted(s[neg.start() :]) if neg else []
        quotes = _quoted(s[: neg.start()]) if neg else _quoted(s)
        if banned:
            rules.forbidden += [q for q in banned if q not in rules.forbidden]
            rules.sources.setdefault("forbidden", s)
        if quotes and not rules.greeting and _GREETING.search(s):
            rules.greeting, rules.sources["greeting"] = quotes[0], s
        elif quotes and not rules.sign_off and _SIGN_OFF.search(s):
            rules.sign_off, rules.sources["sign_off"] = quotes[0], s
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
        if limit and rules.max_words is None:
            rules.max_words = int(limit.group(1) or limit.group(3))
            rules.sources["max_words"] = s
    return rules


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


def form_text(form: str) -> str:
    """A sign-off form without its placeholders and trailing punctuation."""
    return _fill(form, "").strip(" ,，")


def _fill(form: str, name: str) -> str:
    return re.sub(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>", name, form).strip()


def _prefix(form: str) -> str:
    """The fixed words a form opens with, before any placeholder or punctuation."""
    return re.split(r"[{\[<]", form)[0].strip(" ,，:：")


def problems(draft: str, rules: StyleRules, message: str = "") -> list[str]:
    """What a draft breaks, in words; empty when it follows the rules."""
    out = []
    head = _prefix(rules.greeting)
    if head and not draft.lstrip().lower().startswith(head.lower()):
        out.append(f"does not open with {rules.greeting!r}")
    tail = _fill(rules.sign_off, "").strip(" ,，")
    if tail and tail.lower() not in draft[-len(tail) - 80 :].lower():
        out.append(f"does not end with {rules.sign_off!r}")
    out += [f"uses forbidden {p!r}" for p in rules.forbidden if p.lower() in draft.lower()]
    if message and copies_message(draft, message):
        out.append("copies the customer's message")
    return out


def repair(draft: str, rules: StyleRules, name: str = "") -> str:
    """Add the greeting and sign-off and drop sentences with a forbidden phrase."""
    kept = [s for s in sentences(draft) if not any(p.lower() in s.lower() for p in rules.forbidden)]
    body = " ".join(kept)
    greeting = _fill(rules.greeting, name).replace(" ,", ",")
    if greeting and not body.lower().startswith(_prefix(rules.greeting).lower()):
        body = f"{greeting}\n\n{body}"
    sign_off = _fill(rules.sign_off, "").strip()
    if sign_off and sign_off.lower() not in body[-len(sign_off) - 80 :].lower():
        body = f"{body}\n\n{sign_off}"
    return body.strip()


def merge(first: StyleRules, second: StyleRules) -> StyleRules:
    """`first`'s rules win where both set one; forbidden phrases and required elements add up."""
    out = first.model_copy(deep=True)
    for name in ("greeting", "sign_off", "formality", "max_words"):
        if not getattr(out, name) and getattr(second, name):
            setattr(out, name, getattr(second, name))
            if name in second.sources:
                out.sources[name] = second.sources[name]
    for name in ("forbidden", "required"):
        mine = getattr(out, name)
        added = [x for x in getattr(second, name) if x not in mine]
        mine += added
        if added and name in second.sources:
            out.sources.setdefault(name, second.sources[name])
    for name in set(second.sources) - set(out.sources):
        if name in out.required:
            out.sources[name] = second.sources[name]
    return out


def _by_file(chunks: list[Chunk]) -> dict[str, list[Chunk]]:
    files: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        files.setdefault(chunk.source.split("#")[0].split(":")[0], []).append(chunk)
    return files


def rules_from(style: list[Chunk], documents: list[Chunk]) -> tuple[StyleRules, dict[str, str]]:
    """The rules of the declared style material, then of documents that read as tone guides,
    and which files they came from (file -> why it counts as style material).

    Declared material wins over recognized guides: the user named it. A recognized guide
    stays among the documents (the user listed it as knowledge, and a question about
    the guide itself is answerable from it); only its rules are read here.
    """
    rules, used = StyleRules(), {}
    for name, chunks in _by_file(style).items():
        rules = merge(rules, extract_rules("\n".join(c.text for c in chunks)))
        used[name] = "listed under sources.style"
    for name, chunks in _by_file(documents).items():
        title = chunks[0].headings[0] if chunks[0].headings else name
        text = "\n".join(c.text for c in chunks)
        found, why = is_style_guide(title, text)
        if found:
            rules = merge(rules, extract_rules(text))
            used[name] = why
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
