"""Which mode the build serves: base, base+rag, tuned or tuned+rag, by `eval.promote`.

    eval:
      promote:
        prefer: [tuned+rag, base+rag, tuned, base]
        require_gate: true
        switch_if_better: true

A mode is available when it was scored (the '+rag' modes need a retrieval
index) and, for the tuned modes with `require_gate`, when the gate passed.
The first available mode of `prefer` is served, unless another available mode
is better on the same questions: its per-question scores (each suite's primary
metric: key_fact_recall, refusal_rate, style_pass_rate) beat the preferred
mode's with a paired-bootstrap 95% interval of the difference above 0. Each
mode's mean over those questions is the scorecard's `modes`.
"""

from __future__ import annotations

from shoptalk.config.eval import PromoteSettings
from shoptalk.eval.gate import RAG_SUFFIX
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.retention import QA_SUITE
from shoptalk.eval.scorecard import Scorecard

MODES = ("base", "base+rag", "tuned", "tuned+rag")


def mode_rows(card: Scorecard) -> dict[str, list[float]]:
    """Per mode, its per-question scores on the project's suites that every scored mode
    answered (closed book and '+rag' alike), in the same order."""
    names = [
        n
        for n, s in card.suites.items()
        if n != QA_SUITE and not n.endswith(RAG_SUFFIX) and s.kind != "retention"
    ]
    with_rag = [n for n in names if n + RAG_SUFFIX in card.suites]
    suites = with_rag or names
    rows: dict[str, list[float]] = {}
    for suite in suites:
        closed = [q for q in card.questions if q.suite == suite]
        grounded = [q for q in card.questions if q.suite == suite + RAG_SUFFIX]
        rows.setdefault("base", []).extend(q.base_score for q in closed)
        rows.setdefault("tuned", []).extend(q.tuned_score for q in closed)
        if with_rag:
            rows.setdefault("base+rag", []).extend(q.base_score for q in grounded)
            rows.setdefault("tuned+rag", []).extend(q.tuned_score for q in grounded)
    return {mode: scores for mode, scores in rows.items() if scores}


def mode_scores(card: Scorecard) -> dict[str, float]:
    """Each scored mode's mean score over the same questions (see `mode_rows`)."""
    return {m: sum(s) / len(s) for m, s in mode_rows(card).items()}


def choose_mode(
    card: Scorecard, settings: PromoteSettings, gate_passed: bool
) -> tuple[str | None, str]:
    """(the mode to serve, or None if none is available; why), by `eval.promote`."""
    rows = mode_rows(card)
    available = [
        m
        for m in settings.prefer
        if m in rows and (gate_passed or not settings.require_gate or not m.startswith("tuned"))
    ]
    if not available:
        return None, "no mode of eval.promote.prefer was scored and allowed"
    chosen = available[0]
    why = f"first available of eval.promote.prefer {settings.prefer}"
    if not gate_passed and settings.require_gate:
        why += " (the gate failed: tuned modes not allowed)"
    if settings.switch_if_better:
        for other in available[1:]:
            mean, low, high = bootstrap_diff(rows[chosen], rows[other])
            if low > 0:
                why = (
                    f"{other} beats {chosen} by {mean:+.3f} [{low:+.3f}, {high:+.3f}] "
                    "(eval.promote.switch_if_better)"
                )
                chosen = other
                break
    return chosen, why
