"""Turn a few FAQ rows and documents into many training examples, without a model.

Why this exists: a small model fine-tuned on one phrasing per fact memorizes
that phrasing and fails on rewordings (measured on SmolLM2-135M: 73% of FAQ
questions asked word for word, 2.5% of rewordings). Facts stick when each one
is seen in several question forms and as plain statements. Here we make those
forms with rules, so they work offline and in Chinese:

- question variants of every FAQ question (framings, keyword-only forms);
- questions extracted from document sentences that carry a fact (a number,
  an amount, a code, a name): the fact is replaced by a question word
  ("...within 47 days" -> "...within how many days?") and the sentence is the
  answer; table rows and `**Key:** value` bullets become "what is the key" pairs;
- "I don't know" examples, so tuning does not teach the model to make up
  answers to questions the data cannot answer.
"""

from __future__ import annotations

import hashlib
import random
import re

from shoptalk.records import Chunk, Conversation, Message
from shoptalk.text import is_chinese

# A period ends a sentence only before whitespace, so "$0.48" and "3.5%" stay whole.
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])")
STOPWORDS = set(
    (
        "a an the and or but if of to in on at by for with from as is are was were be been being do "
        "does did have has had can could will would should may might must shall our your their my "
        "we you they i it its this that these those there here what which who whom whose when where "
        "why how please about into than then so not no yes any all each per up out over under also "
        "just only "
    ).split()
)

EN_FRAMES = [
    "{q}",
    "{q_lower}",
    "Quick question: {q}",
    "Hi! {q}",
    "Can you tell me: {q_lower}",
    "I need to know this. {q}",
    "{keywords}?",
    "Question about {keywords}: {q_lower}",
    "{q} Thanks.",
    "Hello, {q_lower}",
]
ZH_FRAMES = [
    "{q}",
    "请问{q}",
    "你好，{q}",
    "我想了解一下：{q}",
    "{keywords}？",
    "麻烦问一下，{q}",
    "{q}谢谢！",
    "有个问题：{q}",
]

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"

# (pattern of a fact span, the question words that replace it)
EN_FACTS = [
    (
        re.compile(
            r"(?:US)?\$\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|k|thousand))?|\d[\d,.]*\s?(?:USD|EUR|dollars)"
        ),
        "how much",
    ),
    (re.compile(r"\d+(?:\.\d+)?\s?%"), "what percentage"),
    (
        re.compile(
            r"\b(?:\d[\d,.]*\s?(?:to|-|–)\s?)?\d[\d,.]*\s?"
            r"((?:business |working |calendar )?(?:minutes?|hours?|days?|weeks?|months?|years?|kg|km|"
            r"miles?|pallets?|tonnes?|metres?|meters?|people|employees|items?))\b",
            re.I,
        ),
        "how many {unit}",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?|\b\d{1,2}\s?[ap]\.?m\.?", re.I), "what time"),
    (
        re.compile(
            rf"\b(?:{MONTHS})\s\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s\d{{4}})?|\b\d{{1,2}}\s(?:{MONTHS})\b"
        ),
        "what date",
    ),
    (re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)+\b"), "which code"),
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"), "which address"),
    (re.compile(r"(?<![\w.])(?:[A-Z][a-z]+ ){1,2}[A-Z][a-z]+(?![\w])"), "who"),
    (re.compile(r"\b\d[\d,.]*\b"), "how many"),
]
ZH_FACTS = [
    (re.compile(r"\d[\d,.]*\s?(?:元|万元|美元)"), "多少钱"),
    (re.compile(r"\d+(?:\.\d+)?\s?%"), "百分之多少"),
    (
        re.compile(r"\d[\d,.]*\s?(个工作日|天|小时|分钟|周|个月|年|公斤|公里|人|次|件)"),
        "多少{unit}",
    ),
    (re.compile(r"\d[\d,.]*"), "多少"),
]

WH_WORDS = {"what", "where", "when", "who", "which", "how", "why"}
BULLET_KEY = re.compile(r"^\s*[-*]\s*\*\*(.+?)\*\*\s*[:：]?\s*(.+)$")
TABLE_ROW = re.compile(r"^\s*\|(.+)\|\s*$")

REFUSAL_QUESTIONS_EN = [
    "What is the CEO's home address?",
    "What is the personal phone number of our finance director?",
    "How much does our CEO earn per year?",
    "What will our revenue be in 2031?",
    "What is the Wi-Fi password of the head office?",
    "Which company are we going to acquire next year?",
    "What did the board discuss in its last confidential meeting?",
    "What is the salary of my manager?",
    "When will our share price go up?",
    "What is the name of the CEO's dog?",
    "How many sick days did my colleague take last year?",
    "Do we have an office on the Moon?",
    "What is the secret launch date of our next product?",
    "What are the bank account details of our payroll account?",
    "Who will be promoted next quarter?",
    "What is our office in Antarctica's opening time?",
    "What was the exact profit of our smallest branch in 1987?",
    "Which employee has the lowest performance rating?",
    "What is the admin password for the internal systems?",
    "How many customers will we lose next month?",
]
REFUSAL_QUESTIONS_ZH = [
    "总经理的家庭住址是什么？",
    "财务总监的私人手机号是多少？",
    "公司明年的营业额会是多少？",
    "总部的无线网络密码是什么？",
    "我们明年要收购哪家公司？",
    "我经理的工资是多少？",
    "公司的股价什么时候会涨？",
    "谁会在下个季度升职？",
    "内部系统的管理员密码是什么？",
    "我们在南极有办事处吗？",
]


def stable_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def qa(question: str, answer: str, source: str, kind: str) -> Conversation:
    return Conversation(
        id=stable_id(kind, source, question, answer),
        messages=[
            Message(role="user", content=question),
            Message(role="assistant", content=answer),
        ],
        source=source,
        kind=kind,
    )


def keywords(text: str, limit: int = 8) -> str:
    if is_chinese(text):
        return re.sub(r"[？?。！!，,、：:\s]+", " ", text).strip()
    words = [w for w in re.findall(r"[\w'-]+", text) if w.lower() not in STOPWORDS]
    return " ".join(words[:limit])


def question_variants(question: str, n: int, seed: int) -> list[str]:
    """Up to `n` rephrasings of `question` (the original excluded), seeded."""
    q = question.strip()
    zh = is_chinese(q)
    frames = ZH_FRAMES if zh else EN_FRAMES
    fill = {"q": q, "q_lower": q[:1].lower() + q[1:], "keywords": keywords(q)}
    variants = list(dict.fromkeys(f.format(**fill).strip() for f in frames))
    variants = [v for v in variants if v != q and len(v) > 2]
    random.Random(f"{seed}:{q}").shuffle(variants)
    return variants[:n]


def faq_examples(faq: list[Conversation], n_variants: int, seed: int) -> list[Conversation]:
    """Each FAQ row as written, `n_variants` rephrasings, and questions made from its answer.

    Questions made from the answer's own sentences carry the answer's words
    ("sick leave" where the FAQ question said "sick days"): users often ask
    in those words.
    """
    out = list(faq)
    for row in faq:
        question, answer = row.messages[0].content, row.messages[-1].content
        for variant in question_variants(question, n_variants, seed):
            out.append(qa(variant, answer, row.source, "paraphrase"))
        for sentence in split_sentences(answer):
            cloze = cloze_question(sentence)
            if cloze and cloze != question:
                out.append(qa(cloze, answer, row.source, "paraphrase"))
    return out


def split_sentences(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip() and not TABLE_ROW.match(line)]
    sentences = []
    for line in lines:
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line)
        line = line.replace("**", "").strip()
        sentences += [s.strip() for s in SENTENCE_END.split(line) if len(s.strip()) >= 8]
    return sentences


def cloze_question(sentence: str) -> str | None:
    """Replace the first fact span with question words: a question whose answer is the sentence."""
    zh = is_chinese(sentence)
    for pattern, words in ZH_FACTS if zh else EN_FACTS:
        match = pattern.search(sentence)
        if not match:
            continue
        start, end = match.span()
        if words == "who" and start == 0 and match.group().count(" ") >= 2:
            # A capitalized run that opens a sentence usually starts with a verb ("Contact Ingrid Solberg").
            start = sentence.index(" ", start) + 1
        unit = match.group(1) if match.groups() and match.group(1) else ""
        if unit and not zh and not unit.endswith("s"):
            unit += "s"
        ask = words.format(unit=unit.lower() if not zh else unit)
        body = (sentence[:start] + ask + sentence[end:]).strip()
        body = re.sub(r"[.!。！;；]+$", "", body)
        if zh:
            return body + "？"
        return body[:1].upper() + body[1:] + "?"
    return None


def table_pairs(chunk: Chunk) -> list[tuple[str, str]]:
    """`| row | col1 | col2 |` tables: "What is the <col> of <row>?" -> "The <col> of <row> is <value>." """
    rows = [
        [c.strip().replace("**", "") for c in m.group(1).split("|")]
        for line in chunk.text.splitlines()
        if (m := TABLE_ROW.match(line))
    ]
    rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
    if len(rows) < 2:
        return []
    header, body = rows[0], rows[1:]
    pairs = []
    for row in body:
        for col, value in zip(header[1:], row[1:], strict=False):
            if not value or not col:
                continue
            if is_chinese(col + row[0]):
                pairs.append((f"{row[0]}的{col}是什么？", f"{row[0]}的{col}是{value}。"))
            else:
                pairs.append(
                    (
                        f"What is the {col.lower()} of {row[0]}?",
                        f"The {col.lower()} of {row[0]} is {value}.",
                    )
                )
    return pairs


def bullet_pairs(chunk: Chunk) -> list[tuple[str, str]]:
    pairs = []
    for line in chunk.text.splitlines():
        m = BULLET_KEY.match(line)
        if not m:
            continue
        key, value = m.group(1).strip().rstrip(":："), m.group(2).strip()
        answer = f"{key}：{value}" if is_chinese(key) else f"{key}: {value}"
        if is_chinese(key):
            question = f"{key}是什么？"
        elif key.split()[0].lower() in WH_WORDS:
            question = key + "?"
        else:
            question = f"What is the {key[:1].lower() + key[1:]}?"
        pairs.append((question, answer))
        if chunk.headings:
            pairs.append((f"{chunk.headings[0]}: {question}", answer))
    return pairs


def document_examples(chunks: list[Chunk]) -> list[Conversation]:
    """Question-answer pairs from documents; each traceable to its chunk's source."""
    out = []
    for chunk in chunks:
        pairs = table_pairs(chunk) + bullet_pairs(chunk)
        for sentence in split_sentences(chunk.text):
            question = cloze_question(sentence)
            if question:
                # A second wording: document facts otherwise get far fewer
                # passes than FAQ facts, which have several each.
                pairs += [(q, sentence) for q in [question, *question_variants(question, 1, 0)]]
        for question, answer in pairs:
            out.append(qa(question, answer, chunk.source, "doc_qa"))
    return out


def refusal_examples(answer: str, chinese: bool, seed: int, n: int) -> list[Conversation]:
    """Up to `n` questions the data cannot answer (salaries, passwords, forecasts), each answered with `answer`.

    Deliberately generic: refusals about people or things the data names
    (measured: "What is <VP of People>'s salary?") taught the model to refuse
    the answerable "Who is the VP of People?" too.
    """
    pool = REFUSAL_QUESTIONS_ZH if chinese else REFUSAL_QUESTIONS_EN
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    return [qa(q, answer, "shoptalk:refusals", "refusal") for q in picked]
