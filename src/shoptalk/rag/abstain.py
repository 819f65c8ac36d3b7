"""Calibrated abstention: answer, or say "not in the documents", from signals a small model need not compute.

    idf = term_idf([chunk.text for chunk in chunks])
    rule = load_rule(index_dir / ABSTAIN_RULE)          # the default rule when none was fitted
    if rule.refuses(signals(question, passages, idf)): ...

The signals are the best selected sentence's score (select.py), and the
IDF-weighted share of the question's content terms covered by the best passage
(with its heading) and by all selected passages. Raw word overlap and chunk
similarity do not separate unanswerable questions (bench/RESULTS.md): a
paraphrase also misses common words, so each term counts by how rare it is in
the corpus. The rule is a logistic regression over these signals, fitted on the
project's own questions (answerable ones, and the same questions with the
document that answers them left out of retrieval), never on evaluation
questions; its threshold keeps false refusals on those answerable questions at
most `max_false_refusal`.

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
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from shoptalk.artifacts import write_json
from shoptalk.rag.bm25 import terms

if TYPE_CHECKING:
    from shoptalk.records import Chunk


class Passage(Protocol):
    """What the signals read of a selected passage (`rag.select.Passage`; not imported:
    retrieval, which selection reads, imports this module)."""

    text: str
    score: float

    @property
    def heading(self) -> str: ...


SIGNALS = ("best_score", "best_coverage", "all_coverage")


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

    weights: list[float] = Field(description="One weight per signal, in SIGNALS order")
    bias: float = Field(description="Intercept of the logistic regression")
    threshold: float = Field(description="Refuse below this probability of an answer")
    signals: list[str] = Field(default=list(SIGNALS), description="Names of the signals used")
    fit: FitStats | None = Field(None, description="How it was fitted; none for DEFAULT_RULE")

    def probability(self, values: Sequence[float]) -> float:
        z = self.bias + sum(w * v for w, v in zip(self.weights, values, strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def refuses(self, values: Sequence[float]) -> bool:
        return self.probability(values) < self.threshold


# Without a fitted rule: refuse when the passages cover under a fifth of the question's
# IDF-weighted content terms (the old `min_question_overlap`, weighted by rarity).
DEFAULT_RULE = AbstainRule(weights=[0.0, 20.0, 0.0], bias=-4.0, threshold=0.5)


@dataclass
class Abstention:
    """The rule and the corpus statistics its signals need: one decision for every answer path."""

    rule: AbstainRule
    idf: dict[str, float]

    def signals(self, question: str, passages: Sequence[Passage]) -> list[float]:
        return signals(question, passages, self.idf)

    drafting: bool = False  # a drafting request: see `rag.voice.abstention_for`

    def refuses(self, question: str, passages: Sequence[Passage]) -> bool:
        """The passages do not answer `question`: say "not in the documents", ask no model."""
        if not passages:
            return True
        return not self.drafting and self.rule.refuses(self.signals(question, passages))


def corpus_idf(chunks: Sequence[Chunk]) -> dict[str, float]:
    """`term_idf` of the index's chunks, each with its headings (what a passage is shown under)."""
    return term_idf([f"{' '.join(c.headings)}\n{c.text}" for c in chunks])


def term_idf(texts: Sequence[str]) -> dict[str, float]:
    """Smoothed inverse document frequency of every term of `texts` (the corpus)."""
    frequency = Counter(t for text in texts for t in set(terms(text)))
    n = len(texts)
    return {t: math.log((n + 1) / (f + 1)) + 1.0 for t, f in frequency.items()}


def coverage(question: str, text: str, idf: dict[str, float]) -> float:
    """IDF-weighted share of the question's terms in `text`; a term absent from the corpus weighs most."""
    wanted = set(terms(question))
    if not wanted:
        return 0.0
    unseen = max(idf.values(), default=1.0) + 1.0
    weight = {t: idf.get(t, unseen) for t in wanted}
    have = set(terms(text))
    return sum(w for t, w in weight.items() if t in have) / sum(weight.values())


def signals(question: str, passages: Sequence[Passage], idf: dict[str, float]) -> list[float]:
    """The SIGNALS of a question and its selected passages (best first); zeros when none."""
    if not passages:
        return [0.0, 0.0, 0.0]
    best = passages[0]
    together = "\n".join(f"{p.heading}\n{p.text}" for p in passages)
    return [
        float(best.score),
        coverage(question, f"{best.heading}\n{best.text}", idf),
        coverage(question, together, idf),
    ]


def fit_rule(
    values: Sequence[Sequence[float]],
    answerable: Sequence[bool],
    max_false_refusal: float = 0.1,
    steps: int = 2000,
) -> AbstainRule:
    """Logistic regression by full-batch gradient descent (deterministic), then the threshold.

    The threshold is the highest one refusing at most `max_false_refusal` of the answerable examples.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
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
    prob = np.sort(1.0 / (1.0 + np.exp(-(x[y == 1] @ weights + bias))))
    allowed = int(math.floor(max_false_refusal * len(prob)))
    threshold = float(prob[allowed]) if allowed < len(prob) else 1.0
    names = list(SIGNALS)[: z.shape[1]]
    return AbstainRule(weights=weights.tolist(), bias=bias, threshold=threshold, signals=names)


def save_rule(rule: AbstainRule, path: Path) -> None:
    write_json(path, rule.model_dump())


def load_rule(path: Path) -> AbstainRule:
    """The rule fitted for this index, or DEFAULT_RULE when none was (an older index)."""
    if not path.is_file():
        return DEFAULT_RULE
    try:
        return AbstainRule.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an abstention rule ({err})") from err
