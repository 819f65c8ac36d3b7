"""What a greeting or a question about the assistant is shown: the persona's words, never "not
in the documents".

    shown = self_reply("Who are you?", generated, persona=system_prompt, organization="Acme")
    shown.status   # "verified" (the reply as generated) or "repaired"
    shown.message

Such a question (`rag.voice.route` == "assistant") is answered closed book with the system
prompt, and no document was asked, so the documents' refusal is no answer to it. What the
reply says is still checked against the system prompt, sentence by sentence (`vouched`): a
sentence is kept only if it speaks of the assistant in the first person and every word and
value of it is the system prompt's; a name, number, e-mail or claim about the organization
the system prompt does not hold is never shown, nor is the system prompt echoed back.
- A reply whose every sentence is kept is shown as generated ("verified").
- Otherwise the kept sentences, with greeting-only ones (they claim nothing), when at least
  one self-description remains ("repaired").
- Otherwise the assistant introduces itself (`introduction`): its name as the system prompt
  gives it (`assistant_name`), the organization's name from the config (`name:`), and what
  it does, in the question's language ("repaired").
The name is found by the shape of the sentence that gives it ("You are <Capitalized Name>",
"named/called ...", "你是…助手“…”", "名叫…"), never by any organization's wording.
"""

from __future__ import annotations

import re

from shoptalk.rag.bm25 import language, terms
from shoptalk.rag.citations import normalized
from shoptalk.rag.verify import (
    Verification,
    claims,
    declines,
    holds,
    persona_passage,
    values,
)
from shoptalk.rag.voice import greeting, thanks

_FIRST_PERSON = re.compile(r"(?i:\b(?:i|i'm|i’m|me|my|myself)\b)|我")
# What a self-description may add to the persona's words: "I am", and greeting words.
_SELF_WORDS = frozenset(
    "i i'm i’m im am me my myself hi hello hey good morning afternoon evening thanks thank "
    "你好 您好 谢谢 嗨".split()
)
_CJK_ONLY = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_OPEN = "\"“「『'‘"
_CLOSE = "\"”」』'’"
# A quoted name after the words that introduce one: `You are "Max"`, `助手“小茶”`.
_QUOTED_NAME = re.compile(
    r"(?:(?i:\byou\s+are|\byou're|\bnamed|\bcalled|\bname\s+is)"
    r"|助手|助理|客服|机器人|名叫|叫做|名字是|名为|你叫|你是)"
    rf"\s*[{_OPEN}]([^{_CLOSE}\n]{{1,40}})[{_CLOSE}]"
)
# An unquoted name: capitalized words right after "You are" (not "You are a/the ...").
_CAPITALIZED_NAME = re.compile(
    r"(?i:\byou\s+are|\byou're|\bnamed|\bcalled|\byour\s+name\s+is)\s+"
    r"([A-Z][\w&-]*(?:[ \t]+[A-Z0-9][\w&-]*)*)(?![ \t]+[A-Z0-9]|['’\w])"
)
_CHINESE_NAME = re.compile(r"(?:名叫|叫做|名字是|名为|你叫)\s*([^\s，。,.;；！!？?、]{1,16})")


def assistant_name(system_prompt: str) -> str | None:
    """The assistant's name as the system prompt gives it, or None when it gives none."""
    for pattern in (_QUOTED_NAME, _CAPITALIZED_NAME, _CHINESE_NAME):
        found = pattern.search(system_prompt)
        if found and found.group(1).strip():
            return found.group(1).strip()
    return None


def introduction(question: str, persona: str, organization: str = "") -> str:
    """The assistant's own introduction from the system prompt and the organization's name,
    in the question's language: who it is, and that it answers from the organization's files."""
    name = assistant_name(persona)
    org = organization.strip()
    if name and name == org:
        name = None
    if language(question) == "zh":
        opening = ("不客气！" if thanks(question) else "您好！") if greeting(question) else ""
        owner = f"{org}的" if org else "本组织的"
        who = f"我是{owner}助手“{name}”。" if name else f"我是{owner}助手。"
        does = f"我可以根据{owner}资料回答问题；资料中没有的，我会如实说明。"
        return f"{opening}{who}{does}"
    opening = ""
    if greeting(question):
        opening = "You're welcome! " if thanks(question) else "Hello! "
    if name:
        who = f"I am {name}, the assistant of {org}." if org else f"I am {name}, an assistant."
    else:
        who = f"I am the assistant of {org}." if org else "I am this organization's assistant."
    # "the documents of X", not "X's documents": no possessive to get wrong on "...s".
    files = f"the documents of {org}" if org else "the organization's documents"
    does = (
        f"I can answer your questions from {files}, "
        "and I will say so when they do not hold the answer."
    )
    return f"{opening}{who} {does}"


def vouched(claim: str, persona: str) -> bool:
    """`claim` speaks of the assistant in the first person and says nothing the system prompt
    `persona` does not: each of its words is the persona's (or "I am" and greeting words), each
    value too. Stricter than `about_itself`'s half of the words: with no passage to quote, the
    persona is all there is, and "I'm <name>, the largest carrier in <place>" is half its words.
    An echo of the prompt itself ("You are ...") is not a self-description."""
    if not persona.strip() or not _FIRST_PERSON.search(claim) or declines(claim):
        return False
    own = set(terms(persona))
    text = normalized(persona).lower()
    words = all(
        t in own or t in _SELF_WORDS or (_CJK_ONLY.fullmatch(t) and t in text) for t in terms(claim)
    )
    passage = persona_passage(persona)
    return words and all(v in _SELF_WORDS or holds(v, passage) for v in values(claim))


def self_reply(question: str, text: str, persona: str, organization: str = "") -> Verification:
    """`text`, a reply to a question about the assistant, as far as the system prompt
    `persona` vouches for it; the assistant's `introduction` when it vouches for none of it."""
    found = [claim for claim, _ in claims(text)]
    kept: list[str] = []
    unsupported: list[str] = []
    said = False  # some kept sentence says who the assistant is
    for claim in found:
        key = " ".join(claim.lower().split())
        if any(key == " ".join(k.lower().split()) for k in kept):
            continue  # a small model repeats itself; once is enough
        if vouched(claim, persona):
            kept.append(claim)
            said = True
        elif greeting(claim):
            kept.append(claim)
        else:
            passage = persona_passage(persona)
            unsupported += sorted(v for v in values(claim) if not holds(v, passage))
    if said and len(kept) == len(found):
        return Verification(status="verified", message=text, generated=text)
    if said:
        message = ("" if language(text) == "zh" else " ").join(kept)
    else:
        message = introduction(question, persona, organization)
    return Verification(
        status="repaired",
        message=message,
        generated=text,
        unsupported=list(dict.fromkeys(unsupported)),
    )
