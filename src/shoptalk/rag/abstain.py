"""Calibrated abstention: answer, or say "not in the documents", from signals a small model need not compute.

    idf = term_idf([chunk.text for chunk in chunks])
    rule = load_rule(index_dir / ABSTAIN_RULE)          # the default rule when none was fitted
    if rule.refuses(signals(question, passages, idf)): ...

The signals are the IDF-weighted share of the question's content words covered
by the best selected passage (with its heading) and by all of them. Raw word
overlap and sentence similarity do not separate unanswerable questions
(bench/RESULTS.md): a paraphrase also misses common words, so each word counts by
how rare it is in the corpus. Words are compared as `words` cuts them: English
stemmed ("laptops" covers "laptop") without question-shape words ("how much did
...") and Chinese as jieba's words, each covered wherever the passage holds it
(jieba may segment the question and the passage differently). Character pairs
were tried: they refused 0.12 of the Chinese example's own answerable questions
(this cut: none) (bench/RESULTS.md, Abstention). The embedding similarity of the best
sentence is not a signal: on the project's own split it separates well (its
unanswerable questions lost their topic with their answer) but not on questions
that keep the topic and miss the fact, which is what users ask. Before the rule,
a question asking for an amount, a count or a time whose best passages hold no
such value is refused (`rag.answer_type`), so is one about a past or future
period ("last quarter") no passage names, so is one naming something of
several capitalized words ("Ocean Freight") that the passages do not name
(`missing_name`), and so is one about a site at a place they do not name ("an
office in Denver", "深圳门店": `missing_place`), so is one asking who holds a role they
do not name ("Who is the chief financial officer?" against the CEO's sentence:
`missing_role`), so is one about a kind of offering they never name ("pet insurance"
among the benefits: `missing_qualifier`), so is one asking a role's pay no sentence naming
the role states ("the CEO's salary": `unpaid_role`), so is one whose subject has no word
anywhere in the documents ("Does the dental plan cover braces for adults?":
`missing_subject`). The rule is a logistic regression over these signals, fitted on
the project's own questions (answerable ones, and the same questions with the document
that answers them left out of retrieval), never on evaluation questions; its threshold
keeps false refusals on those answerable questions at most `max_false_refusal`.

    abstention = index.abstention                        # the rule written beside the index
    if abstention.refuses(question, passages): ...       # before generation, on every path

The rule is fitted at index time (`rag.abstain_fit.fit_index_rule`, called by
`rag.index`) on
the project's FAQ: each row's question, with the row itself left out of
retrieval, is answerable when another chunk (a document, another row) states
the row's answer; the same question with every chunk stating it left out is
not. A row whose answer nothing but itself states is not used (it would teach
the rule to answer from passages that do not answer). Too few rows: DEFAULT_RULE.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from shoptalk.artifacts import write_json
from shoptalk.rag.answer_type import (
    holds,
    mismatch,
    question_clause,
    table_rows,
    uncounted,
    unnamed_period,
    unnamed_year,
)
from shoptalk.rag.bm25 import STOPWORDS, stem, terms, tokens
from shoptalk.rag.citations import chinese_places

if TYPE_CHECKING:
    from shoptalk.records import Chunk

log = logging.getLogger(__name__)


class Passage(Protocol):
    """What the signals read of a selected passage (`rag.select.Passage`; not imported:
    retrieval, which selection reads, imports this module)."""

    text: str
    score: float
    chunk: Chunk

    @property
    def heading(self) -> str: ...


SIGNALS = ("best_coverage", "all_coverage")
# Words that shape a question rather than say what it is about ("how much did you ...").
QUESTION_WORDS = frozenset(
    "much many did make made get got gets just some any each every also about would could "
    "should shall may might must am been being was were here there then than into out up "
    "down over off very too so not no yes please tell know want need "
    "多久 多长 多长时间 什么时候 何时 哪里 哪儿 哪个 哪位 为什么 如何 怎样 请问 一下 是否".split()
)
_SKIPPED = STOPWORDS | QUESTION_WORDS
# Chinese characters that pair with anything: skipped when cutting Chinese into pairs.
_ZH_FILLER = frozenset("的了是在和吗呢吧我你您们什么怎多少哪些有要能会可以还就都也")
# How many of the best passages the value check (`rag.answer_type`) reads.
TYPE_PASSAGES = 2


class FitStats(BaseModel, extra="forbid"):
    """How the rule was fitted: on how many of the project's own rows, and how it does on them."""

    answerable: int = Field(description="Own questions whose answer was left in the index")
    unanswerable: int = Field(description="The same questions, every chunk stating it left out")
    false_refusal: float = Field(description="Share of the answerable ones the rule refuses")
    refusal: float = Field(description="Share of the unanswerable ones the rule refuses")
    max_false_refusal: float = Field(description="The bound the threshold was chosen under")
    fitted: bool = Field(description="False: too few rows, DEFAULT_RULE is used (stats of it)")
    key: str = Field("", description="Digest of what the fit read; unchanged -> not refitted")


class AbstainRule(BaseModel, extra="forbid"):
    """Refuse when the fitted probability that the passages answer is below `threshold`."""

    weights: list[float] = Field(description="One weight per signal, in `signals` order")
    bias: float = Field(description="Intercept of the logistic regression")
    threshold: float = Field(description="Refuse below this probability of an answer")
    signals: list[str] = Field(default=list(SIGNALS), description="Names of the signals used")
    fit: FitStats | None = Field(None, description="How it was fitted; none for DEFAULT_RULE")

    def probability(self, values: dict[str, float]) -> float:
        z = self.bias + sum(
            w * values[name] for w, name in zip(self.weights, self.signals, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z))

    def refuses(self, values: dict[str, float]) -> bool:
        return self.probability(values) < self.threshold


# Without a fitted rule (too few FAQ rows): refuse when the passages together cover under
# 0.3 of the question's IDF-weighted words. On the examples' own splits this refused
# 0.25-0.72 of the unanswerable questions and 0.06-0.12 of the answerable ones
# (bench/RESULTS.md, Abstention).
DEFAULT_RULE = AbstainRule(weights=[0.0, 20.0], bias=-6.0, threshold=0.5)


@dataclass
class Abstention:
    """The rule and the corpus statistics its signals need: one decision for every answer path."""

    rule: AbstainRule
    idf: dict[str, float]

    def signals(self, question: str, passages: Sequence[Passage]) -> dict[str, float]:
        return signals(question, passages, self.idf)

    drafting: bool = False  # a drafting request: see `rag.voice.abstention_for`
    coverage: bool = True  # the fitted rule refuses too (rag.select.refuse_on_coverage)
    # The words of the organization's own name (the config's `name`, lowercased): "one of
    # the Ashcombe Vale clinics" names the organization, not a thing the passages must name.
    own_name: frozenset[str] = frozenset()

    def refuses(self, question: str, passages: Sequence[Passage]) -> bool:
        """The passages do not answer `question`: say "not in the documents", ask no model."""
        if not passages:
            return True
        if self.drafting:
            return False
        if mismatch(question, [p.text for p in passages[:TYPE_PASSAGES]]):
            return True
        if unnamed_period(question, [f"{p.heading}\n{p.text}" for p in passages]):
            return True
        chunks = [f"{p.heading}\n{p.chunk.text}" for p in passages]
        if unnamed_year(question, chunks) or uncounted(question, chunks):
            return True
        if missing_name(question, passages, self.own_name):
            return True
        if missing_place(question, passages, self.own_name):
            return True
        if missing_role(question, passages) or missing_qualifier(question, passages, self.idf):
            return True
        if unpaid_role(question, passages) or missing_subject(
            question, passages, self.idf, self.own_name
        ):
            return True
        return self.coverage and self.rule.refuses(self.signals(question, passages))


def words(text: str) -> list[str]:
    """The words coverage compares: English stemmed, without stopwords and QUESTION_WORDS;
    Chinese as jieba cuts it, without words of filler characters only (了, 可以, 多少)."""
    out: list[str] = []
    for token in tokens(text):
        if _is_cjk(token[0]):
            out += [w for w in terms(token) if not set(w) <= _ZH_FILLER]
            continue
        # "it's", "what's": the stopword is the word before the 's.
        base = token.removesuffix("'s").removesuffix("’s")
        if token in _SKIPPED or base in _SKIPPED:
            continue
        # Codes and numbers as written (KX-340, 4.5%); words stemmed.
        out.append(stem(base) if base.isalpha() else base)
    return [w for w in out if w not in QUESTION_WORDS]


def _is_cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


# A run of two or more capitalized words: a product, a place, a team ("Blue Harbor Depot").
_NAME_RUN = re.compile(r"[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)+")


# A name given beside another for the same thing: "Miss Utility / 811", "(811)".
_ALIAS = re.compile(r"\s*(?:/|\(|\bor\s+\d)")
_ALIAS_BEFORE = re.compile(r"(?:/|\()\s*$")


def missing_name(
    question: str, passages: Sequence[Passage], own: frozenset[str] = frozenset()
) -> str | None:
    """A name of several words the question uses that the passages do not all hold.

    "What does the Ocean Freight service cost?" read against the table of the services
    that exist covers "freight", "service" and "cost": the passages are about another
    service. A word that starts the sentence is not taken for part of a name, nor is a
    name of the organization's own words (`own`), nor one given beside another ("Miss
    Utility / 811": the passages may use the other). Read in the passages' whole chunks:
    "open on Christmas Day?" selects the opening hours, and the holidays are the next
    sentence.
    """
    have = set(re.findall(r"\w+", _chunks_text(passages).lower()))
    for match in _NAME_RUN.finditer(question):
        if _ALIAS.match(question, match.end()) or _ALIAS_BEFORE.search(question[: match.start()]):
            continue  # "Miss Utility / 811": the question names it another way too
        run = match.group().split()
        if _starts_sentence(question, match.start()):
            run = run[1:]
        if len(run) < 2 or _own(run, own):
            continue
        for word in run:
            if not set(re.findall(r"\w+", word.lower().removesuffix("'s"))) <= have:
                return " ".join(run)
    return None


# A site of the organization: "an office in Denver", "the Dallas warehouse", "深圳门店".
_SITE = (
    r"offices?|branch(?:es)?|stores?|shops?|warehouses?|depots?|sites?|locations?|facilit(?:y|ies)"
    r"|plants?|factor(?:y|ies)|clinics?|hospitals?|campus(?:es)?|headquarters|hq|outlets?"
    r"|(?:distribution|service|call)\s+cent(?:er|re)s?"
)
_PLACE = r"[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*"
# Case matters for the place (a name is capitalized), not for the site. Two patterns, as
# they overlap: "the Kestrel warehouse in Dallas".
_SITE_PLACES = (
    re.compile(rf"\b(?i:{_SITE})\s+(?i:in|at|near)\s+({_PLACE})"),
    re.compile(rf"({_PLACE})\s+(?:[a-z]+\s+)?(?i:{_SITE})\b"),  # "the Westbrook payment office"
)
_ZH_SITE = re.compile(
    r"门店|分店|店铺|旗舰店|办公室|仓库|网点|分公司|营业部|营业厅|工厂|门市|诊所|医院|分院|校区|园区"
)
# Capitalized words that are no place: "Our office", "the Main branch", "Which store".
_NOT_PLACES = frozenset(
    "the our your their its which what each every any this that main head new local nearest "
    "closest a an do does is are can i where how when who".split()
)


# Whose site it is, when not the organization's: "a customer site in Ohio".
_OTHER_PARTIES = frozenset(
    "customer customers client clients supplier suppliers vendor vendors partner partners "
    "their his her".split()
)


def _other_party(text: str, at: int) -> bool:
    before = re.findall(r"[\w'’]+", text[:at].lower())
    return bool(before) and before[-1].removesuffix("'s").removesuffix("’s") in _OTHER_PARTIES


def missing_place(
    question: str, passages: Sequence[Passage], own: frozenset[str] = frozenset()
) -> str | None:
    """A place the question names for one of the organization's sites that no passage names.

    "Does Kestrel have an office in Denver?" reads the passage about the head office in
    Reno: the passages answer for another site. Only with a site ("office", "warehouse",
    "门店"): "the per diem for a trip to Seattle" is a rule for any city; nor "the Ashcombe
    Vale clinics" when that is the organization's name (`own`), nor another party's site
    ("a customer site in Ohio"). Only the clause that asks (`question_clause`): "going to a
    customer site in Ohio, how much can I spend on food?" asks about the meal allowance.
    Chinese places are the words jieba tags as places (北京 ns).
    """
    text = " ".join(f"{p.heading} {p.text}" for p in passages)
    lowered = text.lower()
    asked = question_clause(question)
    for match in (m for pattern in _SITE_PLACES for m in pattern.finditer(asked)):
        if _other_party(asked, match.start()):
            continue
        bare = (w.removesuffix("'s").removesuffix("’s") for w in match.group(1).split())
        words = [w for w in bare if w.lower() not in _NOT_PLACES]
        if words and not _own(words, own) and " ".join(words).lower() not in lowered:
            return " ".join(words)
    if _ZH_SITE.search(asked):
        for name in sorted(chinese_places(asked)):
            if name not in text:
                return name
    return None


# A role the question asks who holds: "Who is Kestrel's chief financial officer?", "Who's
# the VP of People?", "成都店的店长是谁？". The role's own words, up to three before its noun.
_ROLE_NOUN = (
    r"officer|director|manager|lead|head|president|vp|chief|chair(?:man|woman|person)?"
    r"|coordinator|supervisor|secretary|treasurer|controller|counsel|c[etofimp]o|ciso"
)
_WHO_ROLE = re.compile(
    r"(?:\bwho(?:'s|’s|\s+is|\s+are|\s+was)|\bname\s+of)\s+"
    r"(?:the\s+|our\s+|your\s+|its\s+|[\w-]+['’]s\s+)?"
    rf"((?:[\w&-]+\s+){{0,3}}(?:{_ROLE_NOUN})(?:\s+(?:of|for)\s+[\w&-]+)?)\b",
    re.IGNORECASE,
)
_ZH_ROLE_NOUN = (
    r"负责人|总经理|经理|总监|主管|店长|总裁|董事长|主任|部长|首席[\u4e00-\u9fff]{1,4}官"
)
_ZH_ROLE = re.compile(
    rf"([\u4e00-\u9fff]{{0,12}}?)的?({_ZH_ROLE_NOUN})"
    r"(?:是谁|叫什么)|谁是([\u4e00-\u9fff]{0,12}?)的?(负责人|总经理|经理|总监|主管|店长|总裁|董事长|主任|部长)"
)
# Words of the question, not of the role's name: "the current head of IT".
_ROLE_FILLER = frozenset("of for the our your its new current acting interim present".split())


def missing_role(question: str, passages: Sequence[Passage]) -> str | None:
    """A role the question asks who holds that the passages do not name.

    "Who is Kestrel's chief financial officer?" read against "Dana Whitlock-Reyes, chief
    executive officer" covers "chief", "officer" and a person's name: the passages name
    another role. Each word of the role must be in them, stemmed ("directors"), or its
    initials as an acronym ("CFO" for "chief financial officer", and an acronym asked
    for by the words it stands for in them). Chinese: the role ("店长") and what it is of
    ("成都宽巷店") as written. Read in the passages' whole chunks: a table row selected
    alone names its role in the header row ("| Site | ... | Site lead |"). Also asked as
    "What is the name of the EHS Manager?"; and named, the role must have a person's name
    beside it (`_holder_named`).
    """
    text = _chunks_text(passages)
    zh = _ZH_ROLE.search(question)
    if zh:
        parts = [g for g in zh.groups() if g]
        return next((part for part in parts if part not in text), None)
    asked = _WHO_ROLE.search(question)
    if not asked:
        return None
    words = [w for w in re.findall(r"[\w&-]+", asked.group(1)) if w.lower() not in _ROLE_FILLER]
    tokens = re.findall(r"[\w&-]+", text)
    have = {stem(t.lower()) for t in tokens}
    written = {t.lower() for t in tokens if t.isupper() and len(t) >= 2}  # "CFO", "EHS"
    if len(words) >= 2 and "".join(w[0] for w in words).lower() in written:
        return None  # "chief financial officer" asked, "CFO" written
    spelled = {
        "".join(w[0] for w in tokens[i : i + n]).lower()
        for n in (2, 3, 4)
        for i in range(len(tokens) - n + 1)
    }
    missing = [
        w
        for w in words
        if stem(w.lower()) not in have and not (w.isupper() and w.lower() in spelled)
    ]
    if missing or not _holder_named(passages, words):
        return asked.group(1)
    return None


def _role_units(text: str) -> list[str]:
    """A table whole (its header row names the role, a row the person), and each sentence."""
    table = table_rows(text)
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    sentences = re.split(r"(?<=[.!?])\s+|\n+", prose)
    return [table, *sentences] if table else sentences


# A person's name: two or more capitalized words ("Marisol Etxeberria"), not an acronym.
_PERSON = re.compile(
    r"\b[A-Z][a-z'’]+(?:-[A-Z]?[a-z'’]+)?(?:\s+[A-Z][a-z'’]+(?:-[A-Z]?[a-z'’]+)?)+\b"
)


def _holder_named(passages: Sequence[Passage], role: list[str]) -> bool:
    """Some sentence naming the role also names a person (two capitalized words): "Owner:
    EHS Manager, ehs@example.com, ext. 5510" names the role, nobody in it, and "What is the
    name of the EHS Manager?" is not answered by its e-mail, nor by "Owner: IT Manager,
    Harbor Point Plant" (another role). Every word of the role, stemmed, or as an acronym
    either way ("CEO", "Chief Executive Officer")."""
    return any(
        _names_role(unit, role) and _PERSON.search(unit)
        for passage in passages
        for unit in _role_units(passage.chunk.text)
    )


# A role's pay the question asks: "What is the CEO's annual salary?", "How much does the
# Millrace plant manager make a year?", "总经理的年薪是多少？".
_PAY = r"salary|salaries|pay|compensation|bonus|wages?|income|earnings"
_ROLE = rf"((?:[\w&-]+\s+){{0,3}}(?:{_ROLE_NOUN}))"
_ROLE_PAY = re.compile(
    rf"\b{_ROLE}['’]s\s+(?:[\w-]+\s+){{0,2}}(?:{_PAY})\b"
    rf"|\b(?:{_PAY})\s+of\s+(?:the\s+|our\s+|your\s+|its\s+|[\w-]+['’]s\s+)?{_ROLE}\b"
    r"|\bhow\s+much\s+(?:does|do|did|will|would)\s+(?:the\s+|our\s+|your\s+|its\s+|an?\s+"
    rf"|[\w-]+['’]s\s+)?{_ROLE}s?\s+(?:make|earn|get\s+paid|take\s+home)\b",
    re.IGNORECASE,
)
_ZH_ROLE_PAY = re.compile(rf"({_ZH_ROLE_NOUN})的?(?:年薪|月薪|工资|薪水|薪酬|收入|奖金)")


def unpaid_role(question: str, passages: Sequence[Passage]) -> str | None:
    """A role whose pay the question asks when no sentence naming the role states an amount.

    "What is the CEO's annual salary?" retrieves "the 401(k) match is 4.5% of your salary"
    and "Our CEO is Dana Whitlock-Reyes": an amount, a salary and the CEO, but never in one
    sentence, and `rag.answer_type` sees only that an amount is there. The role's words as
    `missing_role` compares them (stemmed, or as an acronym either way); the amount as
    `rag.answer_type` reads money. A table whole counts as one sentence.
    """
    asked = question_clause(question)
    zh = _ZH_ROLE_PAY.search(asked)
    match = zh or _ROLE_PAY.search(asked)
    if match is None:
        return None
    found = next(g for g in match.groups() if g)
    if not zh:  # "What is the CEO's": the role starts after the question's own words
        words = found.split()
        while words[:-1] and words[0].lower() in _SKIPPED | _ROLE_FILLER:
            words = words[1:]
        found = " ".join(words)
    role = [w for w in re.findall(r"[\w&-]+", found) if w.lower() not in _ROLE_FILLER]
    for passage in passages:
        for unit in _role_units(passage.chunk.text):
            if holds("money", unit) and (found in unit if zh else _names_role(unit, role)):
                return None
    return found


def _names_role(unit: str, role: list[str]) -> bool:
    """`unit` names every word of `role`, stemmed, or the role as an acronym either way."""
    tokens = re.findall(r"[\w&]+", unit)
    have = {stem(t.lower()) for t in tokens}
    spelled = {
        "".join(t[0] for t in tokens[i : i + n]).lower()
        for n in (2, 3, 4)
        for i in range(len(tokens) - n + 1)
    }
    initials = "".join(w[0] for w in role).lower()
    return initials in {t.lower() for t in tokens} or all(
        stem(w.lower()) in have or (w.isupper() and w.lower() in spelled) for w in role
    )


# What an organization offers, whose kinds a word before it names: "pet insurance", "a gym
# membership", "bereavement leave", "宠物保险".
_OFFER = (
    r"insurance|policy|policies|cover|coverage|plan|plans|account|card|loan|membership"
    r"|subscription|warranty|benefit|scheme|service|allowances?|stipends?|bonus(?:es)?|discounts?"
    r"|leave"
)
# The word before the offering, unless "to" makes it a verb ("to switch plans").
_QUALIFIED = re.compile(rf"(?<!\bto )\b([a-z][\w'’-]*)\s+(?:{_OFFER})\b")
# Prepositions the stopword list lacks: "still under warranty" asks of no kind of warranty.
_PREPOSITIONS = frozenset(
    "under within without after before across through during per via beyond toward towards "
    "against among between beneath beside besides despite except inside outside onto upon".split()
)
# "... with a visa card", "by credit card": the means of paying, not what is asked about.
_INSTRUMENT = re.compile(r"\b(?:with|by|using|via|through)\s+(?:an?\s+|the\s+|my\s+|our\s+)?$")
_ZH_OFFER = frozenset("保险 险种 会员 套餐 服务 账户 贷款 福利 补贴 保障".split())


def missing_qualifier(
    question: str, passages: Sequence[Passage], corpus: Collection[str] = frozenset()
) -> str | None:
    """The word that names which kind of an offering the question asks about ("pet" of "pet
    insurance", "relocation" of "relocation allowance"), when the passages' chunks never use it.

    "Does Kestrel offer pet insurance as a benefit?" reads the benefits overview: every
    other word is there, and a small model answers "yes". Only the clause that asks
    (`question_clause`: "I have the plus policy - will it pay for an engineer?" asks about
    the engineer), the one lowercase word right before the offering (a name is
    `missing_name`'s), no stopword and no superlative ("the biggest service credit"), nor
    the means of doing something ("if I pay with a visa card?" asks about a fee), and not a
    word the documents use elsewhere (`corpus`, the index's words: "my health insurance"
    retrieves the medical plans' chunks, and the documents name health insurance too).
    Chinese: the word jieba cuts right before 保险, 会员, 套餐 ...
    """
    asked = question_clause(question)
    text = _chunks_text(passages)
    # A hyphenated word holds its parts: "sign-on bonus" names the "signing bonus".
    found = re.findall(r"[\w'’-]+", text) + re.findall(r"[\w'’]+", text)
    have = {stem(t.lower()) for t in found}
    for match in _QUALIFIED.finditer(asked):
        word = match.group(1).removesuffix("'s").removesuffix("’s")
        if word in _SKIPPED or word in _PREPOSITIONS or word.endswith("est"):
            continue
        if _INSTRUMENT.search(asked[: match.start()]):
            continue
        if stem(word) not in have and stem(word) not in corpus:
            return match.group()
    cut = [w for w in terms(asked) if _is_cjk(w[0])]
    for before, word in zip(cut, cut[1:], strict=False):
        if word in _ZH_OFFER and not set(before) <= _ZH_FILLER and before not in text:
            return before + word
    return None


# A question naming what it asks about in its last words: "What is Kestrel's stock ticker
# symbol?", "Does the dental plan cover braces for adults?".
_DET = r"(?:the\s+|our\s+|your\s+|its\s+|their\s+|an?\s+|[\w-]+['’]s\s+)?"
_SUBJECT = (
    re.compile(
        rf"^\s*what(?:'s|’s|s|\s+is|\s+are|\s+was|\s+were)\s+{_DET}"
        r"(?P<thing>[\w'’&-]+(?:\s+[\w'’&-]+){0,4})\s*\?*\s*$",
        re.IGNORECASE,
    ),
    re.compile(
        r"^\s*(?:does|do|will|would|can|is|are)\b.*?\b(?:covers?|includes?|offers?|provides?"
        r"|pays?\s+for|reimburses?)\s+(?P<thing>[^?,;]+?)\s*\?*\s*$",
        re.IGNORECASE,
    ),
)
# Fewer content words are no evidence: "Does the plan cover glasses?" against "frames or
# contact lenses" is one word the documents say otherwise.
SUBJECT_WORDS = 2


def missing_subject(
    question: str,
    passages: Sequence[Passage],
    corpus: Collection[str] = frozenset(),
    own: frozenset[str] = frozenset(),
) -> str | None:
    """What the question asks about, when the passages' chunks hold none of its words.

    "What is Kestrel's stock ticker symbol?" retrieves the tracking-number format and the
    head office: a small model reads a code there. "Does the dental plan cover braces for
    adults?" retrieves the dental plan: "yes". Only a question that names its subject in
    its last words (after "what is", or after "cover", "include", "offer", "pay for" in a
    yes/no question), of `SUBJECT_WORDS` content words or more (`words`: stemmed, without
    stopwords), none of them in the chunks nor anywhere in the `corpus` (the words of the
    index: "whats the rush charge?" retrieves the wrong passage, but the documents charge
    for an expedite), nor of the organization's own name ("wifi" is "Wi-Fi"'s).
    """
    asked = question_clause(question)
    match = next((m for pattern in _SUBJECT if (m := pattern.search(asked))), None)
    if match is None:
        return None
    thing = match.group("thing")
    wanted = {w for w in words(thing) if w not in own}
    if len(wanted) < SUBJECT_WORDS:
        return None
    text = _chunks_text(passages)
    joined = re.sub(r"(?<=\w)-(?=\w)", "", text)  # "Wi-Fi" is also "WiFi"
    have = set(words(text)) | set(words(joined)) | set(words(text.replace("-", " ")))
    return None if any(w in have or w in corpus for w in wanted) else thing


def own_words(name: str) -> frozenset[str]:
    """The lowercased words of the organization's name, for `Abstention.own_name`."""
    return frozenset(re.findall(r"\w+", name.lower()))


def _own(words: Sequence[str], own: frozenset[str]) -> bool:
    """Every word of a name is one of the organization's own ("Ashcombe Vale's")."""
    bare = (w.lower().removesuffix("'s").removesuffix("’s") for w in words)
    return bool(own) and all(set(re.findall(r"\w+", w)) <= own for w in bare)


def _chunks_text(passages: Sequence[Passage]) -> str:
    """The passages' whole chunks, each under its heading: a selected sentence without the
    rest of its chunk may lack what names it (a table row its header row)."""
    return " ".join(f"{p.heading} {p.chunk.text}" for p in passages)


def _starts_sentence(text: str, at: int) -> bool:
    before = text[:at].rstrip()
    return not before or before[-1] in ".?!:;\"'(“‘"


def corpus_idf(chunks: Sequence[Chunk]) -> dict[str, float]:
    """`term_idf` of the index's chunks, each with its headings (what a passage is shown under)."""
    return term_idf([f"{' '.join(c.headings)}\n{c.text}" for c in chunks])


def term_idf(texts: Sequence[str]) -> dict[str, float]:
    """Smoothed inverse document frequency of every term of `texts` (the corpus)."""
    frequency = Counter(t for text in texts for t in set(words(text)))
    n = len(texts)
    return {t: math.log((n + 1) / (f + 1)) + 1.0 for t, f in frequency.items()}


def coverage(question: str, text: str, idf: dict[str, float]) -> float:
    """IDF-weighted share of the question's words in `text`; a word absent from the corpus weighs most."""
    wanted = set(words(question))
    if not wanted:
        return 0.0
    unseen = max(idf.values(), default=1.0) + 1.0
    weight = {t: idf.get(t, unseen) for t in wanted}
    have = set(words(text))
    raw = text.lower()
    # A Chinese word is covered wherever the text holds it: jieba may cut 多少钱 and 钱
    # differently in a question and a passage.
    got = sum(w for t, w in weight.items() if t in have or (_is_cjk(t[0]) and t in raw))
    return got / sum(weight.values())


def signals(question: str, passages: Sequence[Passage], idf: dict[str, float]) -> dict[str, float]:
    """The SIGNALS of a question and its selected passages (best first); zeros when none."""
    if not passages:
        return dict.fromkeys(SIGNALS, 0.0)
    best = passages[0]
    together = "\n".join(f"{p.heading}\n{p.text}" for p in passages)
    return {
        "best_coverage": coverage(question, f"{best.heading}\n{best.text}", idf),
        "all_coverage": coverage(question, together, idf),
    }


def fit_rule(
    values: Sequence[dict[str, float]],
    answerable: Sequence[bool],
    max_false_refusal: float = 0.1,
    steps: int = 2000,
) -> AbstainRule:
    """Logistic regression by full-batch gradient descent (deterministic), then the threshold.

    The threshold is the highest one refusing at most `max_false_refusal` of the answerable examples.
    """
    import numpy as np

    x = np.asarray([[v[name] for name in SIGNALS] for v in values], dtype=np.float64)
    y = np.asarray(answerable, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or y.min() == y.max():
        raise ValueError("fit_rule needs answerable and unanswerable examples, one row each")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float(np.mean(p - y))
    weights = w / scale  # back to the raw signals' units
    bias = b - float(weights @ mean)
    rule = AbstainRule(weights=weights.tolist(), bias=bias, threshold=1.0)
    # The rule's own arithmetic, not numpy's: a threshold one ulp above the probability
    # `refuses` computes for the same row would refuse the row it was chosen to keep.
    prob = sorted(
        rule.probability(row) for row, keep in zip(values, answerable, strict=True) if keep
    )
    allowed = int(math.floor(max_false_refusal * len(prob)))
    threshold = float(prob[allowed]) if allowed < len(prob) else 1.0
    return rule.model_copy(update={"threshold": threshold})


def save_rule(rule: AbstainRule, path: Path) -> None:
    write_json(path, rule.model_dump())


def load_rule(path: Path) -> AbstainRule:
    """The rule fitted for this index, or DEFAULT_RULE when none was (an older index)."""
    if not path.is_file():
        return DEFAULT_RULE
    try:
        rule = AbstainRule.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an abstention rule ({err})") from err
    if not set(rule.signals) <= set(SIGNALS) or len(rule.signals) != len(rule.weights):
        log.warning(
            "%s: fitted by an older version; the default rule is used until the "
            "index is rebuilt (shoptalk index)",
            path,
        )
        return DEFAULT_RULE
    return rule
