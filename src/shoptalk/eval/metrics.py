"""Model-free answer metrics, correct for English and Chinese.

Every function is pure: same inputs, same output, no model, no I/O. Chinese has
no spaces between words, so matching ignores whitespace entirely and token
metrics treat each CJK character as a token (the usual choice for Chinese
ROUGE; it needs no segmenter and no dictionary).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

# CJK ideographs (basic, extension A, compatibility, extensions B and later),
# kana and hangul syllables: scripts written without spaces between words.
_CJK_RANGES = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003ffff"  # CJK extensions B and later
)
CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")

# A token is one CJK character, a number kept whole ("3.5", "1,250"), or a run
# of other letters/digits. `[^\W_...]` is "a word character that is not an
# underscore and not CJK"; everything else (punctuation, CJK punctuation,
# symbols, spaces) separates tokens and is dropped.
_TOKEN = re.compile(rf"[{_CJK_RANGES}]|\d+(?:[.,]\d+)+|[^\W_{_CJK_RANGES}]+")
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Fold text for substring matching: NFKC, casefold, all whitespace removed.

    Removing (not collapsing) whitespace is what makes "75 天" match "75天" and
    full-width "ＫＸ－２２０" match "KX-220"; punctuation is kept, so "KX-220"
    and "KX 220" stay different.
    """
    return _WHITESPACE.sub("", unicodedata.normalize("NFKC", text).casefold())


def _contains(haystack: str, needle: str) -> bool:
    return normalize(needle) in normalize(haystack)


def key_fact_recall(answer: str, must_include: Sequence[str]) -> float:
    """Fraction of `must_include` facts found in `answer` (normalized substrings).

    An empty fact list is vacuously fully recalled (1.0); the question loader
    never produces one.
    """
    if not must_include:
        return 1.0
    folded = normalize(answer)
    found = sum(normalize(fact) in folded for fact in must_include)
    return found / len(must_include)


def strict_match(answer: str, must_include: Sequence[str]) -> bool:
    """True when every `must_include` fact is found in `answer`."""
    return key_fact_recall(answer, must_include) == 1.0


def tokenize(text: str) -> list[str]:
    """Tokens for ROUGE-L and F1: CJK characters one by one, other words lowercased."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    # Classic dynamic programme, one row at a time: O(len(a) * len(b)) time,
    # O(len(b)) memory.
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b, start=1):
            if token_a == token_b:
                current.append(previous[j - 1] + 1)
            else:
                current.append(max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _f1(overlap: int, n_prediction: int, n_reference: int) -> float:
    if overlap == 0:
        return 0.0
    precision = overlap / n_prediction
    recall = overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: longest common token subsequence, over `tokenize` tokens.

    Two empty texts score 1.0, one empty text 0.0 (the SQuAD convention).
    """
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    return _f1(_lcs_length(pred, ref), len(pred), len(ref))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 over the bag of `tokenize` tokens."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f1(overlap, len(pred), len(ref))


def bleu_tokenizer(reference: str) -> str:
    """sacrebleu's tokenizer for a reference: `zh` when it has Chinese, else the standard `13a`.

    `13a` splits on spaces and punctuation, so a Chinese sentence would be one
    token; `zh` makes each Chinese character a token (and treats the rest like `13a`).
    """
    return "zh" if CJK_CHAR.search(reference) else "13a"


@cache
def _bleu(tokenize: str):
    from sacrebleu.metrics import BLEU  # late: sacrebleu is only needed when scoring

    return BLEU(tokenize=tokenize, effective_order=True)


def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU in [0, 1] (sacrebleu, exponential smoothing), tokenized per `bleu_tokenizer`."""
    return _bleu(bleu_tokenizer(reference)).sentence_score(prediction, [reference]).score / 100


# BLEU's sufficient statistics of one answer: hypothesis length, reference
# length, then matching and total n-grams for n = 1..4. Summed over answers
# they give corpus BLEU, which is not the mean of sentence BLEUs.
BLEU_ORDER = 4


def bleu_stats(prediction: str, reference: str) -> list[int]:
    """[hyp_len, ref_len, correct_1..4, total_1..4] of one answer against its reference."""
    score = _bleu(bleu_tokenizer(reference)).corpus_score([prediction], [[reference]])
    return [score.sys_len, score.ref_len, *score.counts, *score.totals]


def corpus_bleu(stats: Sequence[Sequence[int]]) -> float:
    """Corpus BLEU in [0, 1] from summed `bleu_stats` (no smoothing, as sacrebleu's corpus BLEU)."""
    from sacrebleu.metrics import BLEU

    total = np.asarray(stats, dtype=np.int64).sum(axis=0).tolist()
    sys_len, ref_len = total[0], total[1]
    correct, counts = total[2 : 2 + BLEU_ORDER], total[2 + BLEU_ORDER :]
    return BLEU.compute_bleu(correct, counts, sys_len, ref_len).score / 100


def bootstrap_corpus_bleu_diff(
    base: Sequence[Sequence[int]], tuned: Sequence[Sequence[int]], n: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Paired bootstrap of corpus BLEU(tuned) - corpus BLEU(base), like `bootstrap_diff`."""
    if len(base) != len(tuned) or not base:
        raise ValueError(f"need paired BLEU statistics, got {len(base)} base, {len(tuned)} tuned")
    b, t = np.asarray(base, dtype=np.int64), np.asarray(tuned, dtype=np.int64)
    rng = np.random.default_rng(seed)
    deltas = [
        corpus_bleu(t[idx]) - corpus_bleu(b[idx])
        for idx in rng.integers(0, len(b), size=(n, len(b)))
    ]
    low, high = np.percentile(deltas, [2.5, 97.5])
    return corpus_bleu(t) - corpus_bleu(b), float(low), float(high)


# Refusal detection is a phrase heuristic, not a classifier: an answer counts as
# a refusal when it contains one of these phrases. English phrases are first
# person or about the documents, because bare "unable to" / "not sure" also
# occur in helpful answers ("if you are unable to log in, ..."). They match on
# word boundaries of the casefolded text, so "no information" does not fire
# inside "piano information". Chinese phrases match as substrings with all
# whitespace removed; for the same reason they are first person where a bare
# phrase ("不清楚", "不知道") also opens helpful answers ("如果您不清楚型号，...").
_REFUSALS_EN = (
    "i don't know",
    "i do not know",
    "i don't have",
    "i do not have",
    "i have no information",
    "i'm not sure",
    "i am not sure",
    "not sure about",
    "couldn't find",
    "could not find",
    "can't find",
    "cannot find",
    "no information",
    "no relevant information",
    "not in the documents",
    "not in the provided",
    "not mentioned in",
    "i'm unable to",
    "i am unable to",
    "unable to answer",
    "unable to find",
    "unable to provide",
    "can't answer",
    "cannot answer",
    "can not answer",
    "i'm not able to",
    "i am not able to",
    "i'm not aware",
    "i am not aware",
    "don't have access",
    "do not have access",
    "beyond my knowledge",
)
_REFUSALS_ZH = (
    "我不知道",
    "我也不知道",
    "我不清楚",
    "不太清楚",
    "我不确定",
    "没有相关信息",
    "没有相关的信息",
    "没有这方面的信息",
    "暂无相关信息",
    "无法回答",
    "无法提供",
    "没有找到",
    "未找到",
    "找不到相关",
    "无法找到",
    "文档中没有",
    "资料中没有",
    "没有提到",
    "未提及",
)
_REFUSAL_EN = re.compile(
    r"(?<![a-z0-9])(?:" + "|".join(re.escape(p) for p in _REFUSALS_EN) + r")(?![a-z0-9])"
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def is_refusal(answer: str, own: str = "") -> bool:
    """True when the answer declines to answer, in English or Chinese (phrase heuristic),
    or says `own`: the project's own refusal (`data.refusal_answer`), whatever its words."""
    folded = _folded(answer)
    if _REFUSAL_EN.search(_WHITESPACE.sub(" ", folded)):
        return True
    no_space = _WHITESPACE.sub("", folded)
    if own.strip() and _WHITESPACE.sub("", _folded(own)).rstrip(".。!！") in no_space:
        return True
    return any(phrase in no_space for phrase in _REFUSALS_ZH)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)


def style_pass(
    answer: str,
    must_include: Sequence[str] = (),
    must_not_include: Sequence[str] = (),
    regex: Sequence[str] = (),
) -> bool:
    """True when the answer has every required phrase, no forbidden one, and matches each regex.

    Phrases compare normalized (like `key_fact_recall`); regexes search the raw
    answer, so their author controls case and spacing (use `(?i)` to ignore case).
    """
    if not all(_contains(answer, phrase) for phrase in must_include):
        return False
    if any(_contains(answer, phrase) for phrase in must_not_include):
        return False
    return all(re.search(pattern, answer) for pattern in regex)


def bootstrap_diff(
    base: Sequence[float], tuned: Sequence[float], n: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Paired bootstrap of mean(tuned - base): (observed mean, 2.5th, 97.5th percentile).

    Questions are resampled with replacement, keeping each question's base and
    tuned scores together (paired), so a per-question gain is not drowned by
    how hard the questions are. Deterministic for a given seed.
    """
    if len(base) != len(tuned):
        raise ValueError(f"paired scores differ in length: {len(base)} base, {len(tuned)} tuned")
    if not base:
        raise ValueError("bootstrap_diff needs at least one paired score")
    diffs = np.asarray(tuned, dtype=float) - np.asarray(base, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    # Resample in blocks so memory stays bounded for large suites.
    block = max(1, 2_000_000 // len(diffs))
    for start in range(0, n, block):
        stop = min(n, start + block)
        idx = rng.integers(0, len(diffs), size=(stop - start, len(diffs)))
        means[start:stop] = diffs[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diffs.mean()), float(low), float(high)
