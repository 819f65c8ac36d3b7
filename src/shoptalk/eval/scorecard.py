"""The scorecard: base and tuned answers scored per suite, with paired bootstrap intervals.

Written to `.shoptalk/evals/<run-id>/scorecard.json`:

    {"run_id", "base_model", "created",
     "suites": {"<suite>": {"n", "kind", "base": {"<metric>": float},
                            "tuned": {...}, "diff": {"<metric>": [mean, low, high]}}},
     "questions": [...], "timing": {...}}
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from rich.table import Table
from rich.text import Text

from shoptalk.errors import SourceError
from shoptalk.eval.metrics import (
    bleu,
    bleu_stats,
    bootstrap_corpus_bleu_diff,
    bootstrap_diff,
    corpus_bleu,
    is_refusal,
    key_fact_recall,
    rouge_l,
    strict_match,
    style_pass,
    token_f1,
)
from shoptalk.eval.questions import Suite
from shoptalk.records import DomainQuestion, Question, StyleQuestion, SuiteKind

# Metric name -> value for one model on one suite, e.g. {"key_fact_recall": 0.8}.
# A plain dict (not a model) so the JSON is exactly {"<metric>": float}.
VariantScores = dict[str, float]

# Display and JSON order of the metrics; the first of each kind is the
# per-question score shown in QuestionResult.
METRICS: dict[SuiteKind, tuple[str, ...]] = {
    "domain": (
        "key_fact_recall",
        "strict_accuracy",
        "rouge_l",
        "token_f1",
        "bleu",
        "false_refusal_rate",
    ),
    "unanswerable": ("refusal_rate",),
    "style": ("style_pass_rate",),
}


class QuestionResult(BaseModel):
    suite: str
    kind: SuiteKind
    prompt: str
    reference: str | None = None
    must_include: list[str] = Field(default_factory=list)
    base_answer: str
    tuned_answer: str
    base_score: float
    tuned_score: float
    source: str | None = None
    file: str = ""
    line: int = 0
    judge_verdict: str | None = None  # with eval.judge: the verdict and the judge's rationale


# Lower is better: a rise is shown as a loss (eval/report.py).
LOWER_IS_BETTER = {"false_refusal_rate", "unsupported_claims"}

# Corpus BLEU of a domain suite: from n-gram counts summed over its questions,
# so it has no per-question value; listed after the per-question metrics.
CORPUS_BLEU = "corpus_bleu"

# Suites measured on the models rather than on answers to questions, with no
# per-question rows: general-ability retention (eval/retention.py) and leakage
# canaries (eval/canary.py); and retrieval quality (eval/retrieval.py).
CheckKind = Literal["retention", "canary", "judge", "retrieval"]


class SuiteScores(BaseModel):
    n: int
    kind: SuiteKind | CheckKind
    base: VariantScores
    tuned: VariantScores
    # metric -> [mean(tuned - base), 2.5th percentile, 97.5th percentile]
    diff: dict[str, list[float]]


class GateCheck(BaseModel):
    """One gate rule on one suite: the numbers it judged and its verdict (eval/gate.py)."""

    rule: str
    suite: str
    metric: str
    status: Literal["passed", "failed", "not checked"]
    base: float | None = None
    tuned: float | None = None
    # [mean(tuned - base), 2.5th percentile, 97.5th percentile], when one was measured
    change: list[float] | None = None
    failures: list[str] = Field(default_factory=list)
    note: str = ""


class GateResult(BaseModel):
    passed: bool
    failures: list[str] = Field(default_factory=list)
    checks: list[GateCheck] = Field(default_factory=list)


class Scorecard(BaseModel):
    run_id: str
    base_model: str
    created: str
    suites: dict[str, SuiteScores]
    questions: list[QuestionResult] = Field(default_factory=list)
    timing: dict[str, float] = Field(default_factory=dict)
    # The two models compared: ["base", "tuned"], or the A and B of `shoptalk
    # eval --compare A B`, which take the "base" and "tuned" places in every field.
    labels: list[str] = Field(default_factory=lambda: ["base", "tuned"])
    # Variants not scored, and why: e.g. {"base+RAG": "eval.rag is off ..."}.
    not_run: dict[str, str] = Field(default_factory=dict)
    # The verdict of `eval.gate` on this scorecard (base vs tuned only).
    gate: GateResult | None = None
    # Each mode (base, base+rag, tuned, tuned+rag) scored on the same questions, and the
    # one `eval.promote` serves, with why (eval/promote.py).
    modes: dict[str, float] = Field(default_factory=dict)
    mode: str | None = None
    mode_reason: str = ""
    # Per mode ("base", "base+rag", ... or the compared labels): "refusal" on the
    # unanswerable suites' questions and "false_refusal" (answerable questions refused) on
    # the domain suites', with how many questions each ("unanswerable", "answerable").
    abstention: dict[str, dict[str, float]] = Field(default_factory=dict)


def abstention_rates(
    card: Scorecard, skip: frozenset[str] = frozenset(), refusal: str = ""
) -> dict[str, dict[str, float]]:
    """`Scorecard.abstention`: each mode's refusals, on questions it should and should not refuse.

    A '+rag' suite's answers are its '<label>+rag' mode's; the suites in `skip` (the general
    QA suite of retention: no project question) are left out. `refusal` is the project's
    own refusal answer (`data.refusal_answer`), counted as one whatever its words.
    """
    counts: dict[str, dict[str, list[float]]] = {}
    for q in card.questions:
        if q.kind not in ("domain", "unanswerable") or q.suite.removesuffix("+rag") in skip:
            continue
        rag = "+rag" if q.suite.endswith("+rag") else ""
        for label, answer in zip(card.labels, (q.base_answer, q.tuned_answer), strict=True):
            mode = counts.setdefault(label + rag, {"domain": [], "unanswerable": []})
            mode[q.kind].append(float(is_refusal(answer, refusal)))
    out: dict[str, dict[str, float]] = {}
    for mode, kinds in counts.items():
        rates: dict[str, float] = {}
        if kinds["unanswerable"]:
            rates["refusal"] = sum(kinds["unanswerable"]) / len(kinds["unanswerable"])
            rates["unanswerable"] = len(kinds["unanswerable"])
        if kinds["domain"]:
            rates["false_refusal"] = sum(kinds["domain"]) / len(kinds["domain"])
            rates["answerable"] = len(kinds["domain"])
        out[mode] = rates
    return out


def question_metrics(question: Question, answer: str, refusal: str = "") -> VariantScores:
    """Every metric of the question's kind for one answer (`refusal`: the project's own
    refusal answer, `data.refusal_answer`, counted as declining).

    ROUGE-L and token F1 need a reference answer; a domain question with only
    `must_include` has neither, and those suite means cover the questions that do.
    """
    if isinstance(question, DomainQuestion):
        scores = {
            "key_fact_recall": key_fact_recall(answer, question.must_include),
            "strict_accuracy": float(strict_match(answer, question.must_include)),
            # An answerable question answered "not in the documents" (or any refusal).
            "false_refusal_rate": float(is_refusal(answer, refusal)),
        }
        if question.answer:
            scores["rouge_l"] = rouge_l(answer, question.answer)
            scores["token_f1"] = token_f1(answer, question.answer)
            scores["bleu"] = bleu(answer, question.answer)
        return scores
    if isinstance(question, StyleQuestion):
        passed = style_pass(
            answer, question.must_include, question.must_not_include, question.regex
        )
        return {"style_pass_rate": float(passed)}
    return {"refusal_rate": float(is_refusal(answer, refusal))}


def _result(
    suite: Suite, question: Question, answers: tuple[str, str], scores: tuple[float, float]
) -> QuestionResult:
    is_domain = isinstance(question, DomainQuestion)
    # Not getattr: an unanswerable row may carry an ignored extra "must_include".
    has_phrases = isinstance(question, (DomainQuestion, StyleQuestion))
    return QuestionResult(
        suite=suite.name,
        kind=suite.kind,
        prompt=question.prompt_text,
        reference=question.answer if is_domain else None,
        must_include=question.must_include if has_phrases else [],
        base_answer=answers[0],
        tuned_answer=answers[1],
        base_score=scores[0],
        tuned_score=scores[1],
        source=question.source if is_domain else None,
        file=question.file,
        line=question.line,
    )


def score_suite(
    suite: Suite, base_answers: list[str], tuned_answers: list[str], refusal: str = ""
) -> tuple[SuiteScores, list[QuestionResult]]:
    """Score both models' answers (in question order) and bootstrap each metric's change."""
    n = len(suite.questions)
    if len(base_answers) != n or len(tuned_answers) != n:
        raise ValueError(
            f"suite {suite.name!r} has {n} questions but {len(base_answers)} base and "
            f"{len(tuned_answers)} tuned answers"
        )
    primary = METRICS[suite.kind][0]
    paired: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in METRICS[suite.kind]}
    results = []
    rows = zip(suite.questions, base_answers, tuned_answers, strict=True)
    for question, base_answer, tuned_answer in rows:
        base_m = question_metrics(question, base_answer, refusal)
        tuned_m = question_metrics(question, tuned_answer, refusal)
        for metric, value in base_m.items():
            paired[metric][0].append(value)
            paired[metric][1].append(tuned_m[metric])
        scores = (base_m[primary], tuned_m[primary])
        results.append(_result(suite, question, (base_answer, tuned_answer), scores))
    paired = {m: values for m, values in paired.items() if values[0]}
    suite_scores = SuiteScores(
        n=n,
        kind=suite.kind,
        base={m: sum(b) / len(b) for m, (b, _) in paired.items()},
        tuned={m: sum(t) / len(t) for m, (_, t) in paired.items()},
        diff={m: list(bootstrap_diff(b, t)) for m, (b, t) in paired.items()},
    )
    add_corpus_bleu(suite_scores, suite, base_answers, tuned_answers)
    return suite_scores, results


def add_corpus_bleu(
    scores: SuiteScores, suite: Suite, base_answers: list[str], tuned_answers: list[str]
) -> None:
    """Corpus BLEU over the suite's questions that have a reference answer."""
    rows = [
        (bleu_stats(b, q.answer), bleu_stats(t, q.answer))
        for q, b, t in zip(suite.questions, base_answers, tuned_answers, strict=True)
        if isinstance(q, DomainQuestion) and q.answer
    ]
    if not rows:
        return
    base, tuned = [b for b, _ in rows], [t for _, t in rows]
    scores.base[CORPUS_BLEU] = corpus_bleu(base)
    scores.tuned[CORPUS_BLEU] = corpus_bleu(tuned)
    scores.diff[CORPUS_BLEU] = list(bootstrap_corpus_bleu_diff(base, tuned))


def build_scorecard(
    run_id: str,
    base_model: str,
    suites: list[Suite],
    answers: dict[str, tuple[list[str], list[str]]],
    refusal: str = "",
) -> Scorecard:
    """Score every suite; `answers[suite.name]` is (base answers, tuned answers); `refusal`
    is the project's own refusal answer (`data.refusal_answer`)."""
    missing = [suite.name for suite in suites if suite.name not in answers]
    if missing:
        raise ValueError(f"no answers for suites {missing}")
    scores: dict[str, SuiteScores] = {}
    questions: list[QuestionResult] = []
    for suite in suites:
        suite_scores, results = score_suite(suite, *answers[suite.name], refusal)
        scores[suite.name] = suite_scores
        questions.extend(results)
    return Scorecard(
        run_id=run_id,
        base_model=base_model,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        suites=scores,
        questions=questions,
    )


def write_scorecard(card: Scorecard, path: Path) -> None:
    """Write the scorecard JSON atomically: a reader sees the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    # The temp file lives in the same folder so os.replace is a same-filesystem rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_scorecard(path: Path) -> Scorecard:
    """Load a scorecard written by `write_scorecard`."""
    try:
        return Scorecard.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(path, None, "scorecard not found") from None
    except ValidationError as exc:
        raise SourceError(path, None, f"not a valid scorecard: {exc.errors()[0]['msg']}") from None


def _change_cell(diff: list[float]) -> Text:
    mean, low, high = diff
    text = Text(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]")
    # Colour only when the 95% interval excludes zero: the change is real, not noise.
    if low > 0:
        text.stylize("green")
    elif high < 0:
        text.stylize("red")
    return text


def render_table(card: Scorecard) -> Table:
    """One row per suite and metric: base, tuned and the change with its 95% interval."""
    a, b = card.labels
    title = f"{card.run_id} vs base {card.base_model}" if a == "base" else f"{a} (A) vs {b} (B)"
    table = Table(title=title)
    captions = []
    if card.not_run:
        reasons = sorted(set(card.not_run.values()))
        captions.append(f"{', '.join(card.not_run)}: not run ({'; '.join(reasons)})")
    if card.modes:
        modes = ", ".join(f"{m} {v:.3f}" for m, v in card.modes.items())
        captions.append(f"modes: {modes}; serving {card.mode or 'none'}")
    table.caption = "\n".join(captions) or None
    table.add_column("suite")
    table.add_column("n", justify="right")
    table.add_column("metric")
    table.add_column(a, justify="right")
    table.add_column(b, justify="right")
    table.add_column("change [95% CI]", justify="right")
    for name, scores in card.suites.items():
        for i, metric in enumerate(scores.base):
            last = i == len(scores.base) - 1
            table.add_row(
                name if i == 0 else "",
                str(scores.n) if i == 0 else "",
                metric,
                f"{scores.base[metric]:.3f}",
                f"{scores.tuned[metric]:.3f}",
                _change_cell(scores.diff[metric]),
                end_section=last,
            )
    return table
