"""Find people's names, organization names and street addresses (`data.pii.ner`).

Off by default. Unlike the validated detectors in `pii`, these are a model's
guesses: they miss some names and take some words for names, so a team turns
them on knowing that, and `bench/pii_eval.py` says how often on a labelled set.
Spans found here never override a validated one: they only fill the gaps.

- Chinese text goes through jieba's part-of-speech tagger (offline, already a
  dependency): `nr` is a person's name, `nt` an organization. Single-character
  "names" are dropped (a surname with 先生/女士 names no one by itself), and so
  are a few words jieba often takes for names.
- Other text goes through Presidio with a spaCy pipeline (the `ner` extra);
  spaCy's own PERSON and ORG labels. Place names (GPE/LOC) are not kept. A text
  with any Chinese character is left to jieba, so an English name inside a
  Chinese sentence is not found.
- Addresses are found by rule in both languages, because a place name alone is
  not personal data but a house number is: a road/street with a number (路/街/
  大道 + 号; "742 Evergreen Terrace"), with the divisions written right before it
  (省/市/区...) and the building, unit and room after it; or a residential
  compound with a building number (小区5栋2单元301室).
- Chinese organizations are also recognized by their suffix (公司, 银行, 医院,
  大学...) after a run of name-like words, since jieba tags few of them `nt`.

Neither jieba nor Presidio logs the text it is given (Presidio only with its
decision log, never turned on here), and nothing here puts a value in a log
or an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from shoptalk.errors import MissingExtraError

log = logging.getLogger(__name__)

CJK = re.compile(r"[\u4e00-\u9fff]")
CJK_ONLY = re.compile(r"[\u4e00-\u9fff]+")


class Token(NamedTuple):
    start: int
    end: int
    word: str
    flag: str


# Words jieba tags `nr` that are rarely anyone's name in business text.
NOT_NAMES = set(
    "先生 女士 小姐 老师 经理 师傅 同学 阿姨 大爷 老板 总监 主任 客服 高达 金山 长城 支付宝 银行卡".split()
)
# Common single-character surnames: jieba often splits a name it does not know into
# the surname and a given name it tags as a name ("林/nr 志强/nrfg").
SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛"
    "郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰"
    "焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁"
)
GIVEN_NAME_FLAGS = {"nr", "nrfg", "nrt"}
TITLES = ("先生", "女士", "小姐", "老师", "经理", "总", "师傅")
ORG_SUFFIXES = tuple(
    "有限公司 公司 集团 银行 分行 支行 医院 大学 学院 中学 小学 幼儿园 研究所 研究院 "
    "事务所 委员会 协会 基金会 物流 保险 证券 中心".split()
)
# Word classes that can be part of a name-like run (nouns, names, places, abbreviations).
NAME_LIKE = {"n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "j", "eng", "vn", "an"}
# Words that end a run going left even though they are nouns.
RUN_STOP = set("地址 住址 收货地址 地点 办公地点 房子 家 我家 旧址 总部 工厂 仓库".split())
ROAD_NUMBER = re.compile(
    r"(?:路|街|大街|大道|巷|弄|胡同|道)(?:[一二三四五六七八九十]+段)?\d+号(?!楼)"
)
COMPOUND_NUMBER = re.compile(r"(?:小区|花园|公寓|家园|新村|苑|村)\d+(?:栋|幢|号楼|座)")
# After the number: building, unit, floor, room ("3号楼502室", "中石化大厦B座2008室").
UNIT_TAIL = re.compile(
    r"(?:[\u4e00-\u9fffA-Za-z]{0,12}?(?:\d+|[A-Za-z])(?:号楼|单元|栋|幢|座|层|楼|室|号))+"
)
STREET_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|"
    "Terrace|Way|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Row"
)
EN_ADDRESS = re.compile(
    rf"(?<![\w-])\d{{1,6}}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]*\.?\s+){{1,4}}(?:{STREET_TYPES})\b\.?"
    r"(?:\s+(?:North|South|East|West)\b)?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Room|#)\.?\s*#?\d+[A-Za-z]?\b)?"
)
STREET_TYPE_LAST = re.compile(rf"\b(?:{STREET_TYPES})\.?$")
EN_TITLE_BEFORE = re.compile(r"(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s*$")


def find_entities(
    text: str, mode: str, kinds: Iterable[str], model: str = "en_core_web_sm"
) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans of the `kinds` asked for.

    Text with Chinese characters is read by jieba in every mode (an English spaCy
    pipeline cannot read it). Other text: "jieba" leaves it alone, "auto" reads it
    with Presidio when installed (else warns once), "presidio" requires Presidio.
    """
    kinds = set(kinds)
    spans: list[tuple[int, int, str]] = []
    if CJK.search(text):
        spans += chinese_entities(text, kinds)
    elif mode in ("auto", "presidio"):
        if "address" in kinds:
            spans += [(m.start(), m.end(), "address") for m in EN_ADDRESS.finditer(text)]
        wanted = kinds & {"person", "org"}
        if wanted and (mode == "presidio" or presidio_ready(model)):
            spans += presidio_entities(text, wanted, model)
    return longest_first(spans)


def longest_first(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    taken: list[tuple[int, int, str]] = []
    for s, e, kind in sorted(spans, key=lambda t: (t[0] - t[1], t[0])):
        if all(e <= ts or s >= te for ts, te, _ in taken):
            taken.append((s, e, kind))
    return sorted(taken)


# --- Chinese: jieba -------------------------------------------------------------


@lru_cache(maxsize=1)
def _posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # it prints dictionary loading to stderr otherwise
    return jieba.posseg


def tag(text: str) -> list[Token]:
    """jieba's words with their part of speech and offsets in `text`."""
    tokens, cursor = [], 0
    for pair in _posseg().cut(text):
        start = text.find(pair.word, cursor)
        if start < 0:  # jieba keeps every character; this guards a future change
            continue
        cursor = start + len(pair.word)
        tokens.append(Token(start, cursor, pair.word, pair.flag))
    return tokens


def chinese_entities(text: str, kinds: set[str]) -> list[tuple[int, int, str]]:
    tokens = tag(text)
    spans = []
    if "person" in kinds:
        spans += [(t.start, t.end, "person") for t in tokens if is_person(t)]
        spans += split_names(tokens)
    if "org" in kinds:
        spans += chinese_orgs(tokens)
    if "address" in kinds:
        spans += chinese_addresses(text, tokens)
    return spans


def is_person(token: Token) -> bool:
    word = token.word
    return (
        token.flag == "nr"
        and 2 <= len(word) <= 4
        and CJK_ONLY.fullmatch(word) is not None
        and word not in NOT_NAMES
        and not word.endswith(TITLES)
    )


def split_names(tokens: list[Token]) -> list[tuple[int, int, str]]:
    """A surname token followed by a one- or two-character given name tagged as a name."""
    return [
        (surname.start, given.end, "person")
        for surname, given in zip(tokens, tokens[1:], strict=False)
        if surname.word in SURNAMES
        and given.flag in GIVEN_NAME_FLAGS
        and 1 <= len(given.word) <= 2
        and CJK_ONLY.fullmatch(given.word)
        and given.word not in NOT_NAMES
    ]


def chinese_orgs(tokens: list[Token]) -> list[tuple[int, int, str]]:
    spans = []
    for i, token in enumerate(tokens):
        if token.word.endswith(ORG_SUFFIXES):
            first = extend_left(tokens, i, max_chars=16)
            name = "".join(t.word for t in tokens[first : i + 1])
            # "公司" or "这家银行" alone is no name: two more characters before the suffix.
            if len(name) - len(suffix_of(token.word)) >= 2:
                spans.append((tokens[first].start, token.end, "org"))
        elif token.flag == "nt" and len(token.word) >= 2:
            spans.append((token.start, token.end, "org"))
    return spans


def suffix_of(word: str) -> str:
    return next(s for s in ORG_SUFFIXES if word.endswith(s))


def extend_left(tokens: list[Token], i: int, max_chars: int) -> int:
    """Index of the first token of the name-like run that ends at token `i`."""
    first, length = i, len(tokens[i].word)
    while first > 0:
        prev = tokens[first - 1]
        if prev.flag not in NAME_LIKE or prev.word in RUN_STOP or not CJK.search(prev.word):
            break
        if length + len(prev.word) > max_chars:
            break
        first, length = first - 1, length + len(prev.word)
    return first


def chinese_addresses(text: str, tokens: list[Token]) -> list[tuple[int, int, str]]:
    spans = []
    for pattern in (ROAD_NUMBER, COMPOUND_NUMBER):
        for m in pattern.finditer(text):
            i = next((k for k, t in enumerate(tokens) if t.start <= m.start() < t.end), None)
            start = m.start() if i is None else tokens[extend_left(tokens, i, max_chars=24)].start
            tail = UNIT_TAIL.match(text, m.end())
            spans.append((start, tail.end() if tail else m.end(), "address"))
    return spans


# --- Other languages: Presidio with a spaCy pipeline ------------------------------


@lru_cache(maxsize=4)
def presidio_ready(model: str) -> bool:
    """Whether Presidio and `model` are installed; "auto" warns once when not."""
    try:
        analyzer(model)
    except MissingExtraError as exc:
        log.warning("data.pii.ner is 'auto': names in non-Chinese text are not redacted. %s", exc)
        return False
    return True


@lru_cache(maxsize=2)
def analyzer(model: str):
    """A Presidio engine that runs only spaCy's NER: the regex detectors in `pii`
    already cover what Presidio's pattern recognizers would find, and some of those
    (URLs, e-mail) would reach for the network to fetch a domain list."""
    missing = MissingExtraError(
        "English name detection (data.pii.ner) needs Presidio and spaCy: "
        "pip install 'shoptalk[ner]'"
    )
    try:
        import spacy
    except ImportError as exc:
        raise missing from exc
    # Checked before importing Presidio, which takes seconds (it imports transformers),
    # and because Presidio would download a missing model itself.
    if not (spacy.util.is_package(model) or Path(model).is_dir()):
        raise MissingExtraError(
            f"data.pii.ner_model: the spaCy pipeline {model!r} is not installed "
            f"(expected a package name or a folder): python -m spacy download {model}"
        )
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
    except ImportError as exc:
        raise missing from exc
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    recognizer = SpacyRecognizer(supported_entities=["PERSON", "ORGANIZATION"])
    registry = RecognizerRegistry(recognizers=[recognizer], supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


PRESIDIO_KINDS = {"PERSON": "person", "ORGANIZATION": "org"}


def presidio_entities(text: str, kinds: set[str], model: str) -> list[tuple[int, int, str]]:
    entities = [e for e, kind in PRESIDIO_KINDS.items() if kind in kinds]
    spans = []
    for result in analyzer(model).analyze(text=text, language="en", entities=entities):
        kind = PRESIDIO_KINDS[result.entity_type]
        start, end = result.start, result.end
        value = text[start:end]
        # "Oxford Road" tagged ORG is a road: EN_ADDRESS decides what is an address.
        if not plausible_name(value) or STREET_TYPE_LAST.search(value):
            continue
        # "Mr. Smith": a surname with a title names no one by itself (as 王先生).
        one_word = " " not in value.strip()
        if kind == "person" and one_word and EN_TITLE_BEFORE.search(text, max(0, start - 6), start):
            continue
        spans.append((start, end, kind))
    return spans


def plausible_name(value: str) -> bool:
    """A small spaCy model also tags codes, acronyms and lowercase words as names
    ("SKU-04472", "IBAN", "config"): a name starts with a capital and has no digits."""
    one_acronym = value.isupper() and " " not in value
    return value[:1].isupper() and not any(c.isdigit() for c in value) and not one_acronym
