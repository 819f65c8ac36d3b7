"""The gate: thresholds a scorecard must meet before a tuned model is promoted.

Two kinds of rules, both under `eval.gate` in `shoptalk.yaml`:

    eval:
      gate:
        rules:                      # yours: each must be checkable
          - {suite: faq, metric: key_fact_recall, min_tuned: 0.8, min_gain: 0.2}
          - {suite: "*", kind: unanswerable, metric: refusal_rate, min_tuned: 0.9}
        defaults:                   # shipped: checked on whatever was scored
          retention_max_drop: 0.3
          general_qa_max_drop: 0.05
          domain_gain: true
          refusal_not_below_base: true

A rule of yours that cannot be checked (its suite was not scored, its metric
is missing) is a failure, never silently skipped: a gate that checks nothing
must not look like a gate that passed. A default rule whose suite was not
scored is reported as "not checked" and does not fail the build (retention is
off in a project that turned it off). A rule of yours on the same suite and
metric replaces the default one. When leakage canaries were planted (suite
'canaries'), zero exposure is required unless a rule of yours names that suite.

"Significant" in the default rules: the drop is beyond the margin AND the 95%
paired-bootstrap interval of the change does not reach above 0 (beyond a margin,
its top at 0 counts: a held-out organization's general QA fell 0.373 -> 0.269
with the interval [-0.209, +0.000], which passed while the test was "wholly
below 0"; the refusal rule, which has no margin, still needs it wholly below).
The point drop alone fails noisy small suites (67 general questions: one answer
is 0.015); the interval alone (its top below -margin) lets a 0.1 drop on 67
questions pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoptalk.config import GateRule, GateSettings
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.retention import METRIC as RETENTION_METRIC
from shoptalk.eval.retention import QA_SUITE
from shoptalk.eval.retention import SUITE as RETENTION_SUITE
from shoptalk.eval.scorecard import GateCheck, GateResult, Scorecard, SuiteScores

__all__ = ["GateCheck", "GateResult", "check_gate", "default_rules"]

# Float means such as 2/3 are compared with this slack, so "at least 0.8"
# holds for a measured 4/5 whatever the rounding.
_EPS = 1e-9

# Suite and metric of the leakage canaries, as eval/canary.py scores them.
CANARY_SUITE, CANARY_METRIC = "canaries", "withheld_rate"
DOMAIN_METRIC, REFUSAL_METRIC = "key_fact_recall", "refusal_rate"
# The '+rag' copies of the suites (eval/run.py): base+RAG vs tuned+RAG.
RAG_SUFFIX = "+rag"
DEFAULTS = "eval.gate.defaults"


def default_rules(card: Scorecard, settings: GateSettings) -> list[GateRule]:
    """Zero canary exposure, when canaries were planted and no configured rule covers them."""
    covered = any(
        r.suite == CANARY_SUITE or (r.suite == "*" and r.kind == "canary") for r in settings.rules
    )
    if CANARY_SUITE not in card.suites or covered:
        return []
    return [GateRule(suite=CANARY_SUITE, metric=CANARY_METRIC, min_tuned=1.0)]


def check_gate(card: Scorecard, settings: GateSettings) -> GateResult:
    """Check every rule against the scorecard; collect every failure, not just the first."""
    checks: list[GateCheck] = []
    for rule in [*settings.rules, *default_rules(card, settings)]:
        checks.extend(_rule_checks(card, rule))
    checks.extend(default_checks(card, settings))
    failures = [f for check in checks for f in check.failures]
    return GateResult(passed=not failures, failures=failures, checks=checks)


def _describe(rule: GateRule) -> str:
    limits = [
        f"{name} {value:g}"
        for name, value in (
            ("min_tuned", rule.min_tuned),
            ("min_gain", rule.min_gain),
            ("max_drop", rule.max_drop),
        )
        if value is not None
    ]
    kind = f" ({rule.kind})" if rule.kind else ""
    return f"{rule.suite}{kind} {rule.metric}: {', '.join(limits)}"


def _rule_checks(card: Scorecard, rule: GateRule) -> list[GateCheck]:
    text = _describe(rule)
    if rule.suite == "*":
        names = [n for n, s in card.suites.items() if rule.kind is None or s.kind == rule.kind]
        if not names:
            which = f"of kind '{rule.kind}' " if rule.kind else ""
            problem = f"no suite {which}was scored, so the {rule.metric} rule checks nothing"
            return [_failed(text, "*", rule.metric, problem)]
    else:
        names = [rule.suite]
    checks: list[GateCheck] = []
    for name in names:
        scores = card.suites.get(name)
        if scores is None:
            scored = ", ".join(repr(n) for n in card.suites) or "none"
            problem = f"suite '{name}' was not scored (scored: {scored})"
        elif rule.kind is not None and scores.kind != rule.kind:
            problem = f"suite '{name}' is a {scores.kind} suite, but the rule expects {rule.kind}"
        elif rule.metric not in scores.tuned:
            has = ", ".join(scores.tuned) or "none"
            problem = f"suite '{name}' has no metric '{rule.metric}' (it has: {has})"
        else:
            failures = _check_thresholds(name, scores, rule)
            checks.append(_measured(text, name, rule.metric, scores, failures))
            continue
        checks.append(_failed(text, name, rule.metric, problem))
    return checks


def _failed(rule: str, suite: str, metric: str, problem: str) -> GateCheck:
    return GateCheck(rule=rule, suite=suite, metric=metric, status="failed", failures=[problem])


def _measured(
    rule: str, suite: str, metric: str, scores: SuiteScores, failures: list[str]
) -> GateCheck:
    return GateCheck(
        rule=rule,
        suite=suite,
        metric=metric,
        status="failed" if failures else "passed",
        base=scores.base[metric],
        tuned=scores.tuned[metric],
        change=scores.diff.get(metric),
        failures=failures,
    )


def _interval(scores: SuiteScores, metric: str) -> str:
    if metric not in scores.diff:
        return ""
    _, low, high = scores.diff[metric]
    return f" (95% interval of the change [{low:+.3f}, {high:+.3f}])"


def _check_thresholds(name: str, scores: SuiteScores, rule: GateRule) -> list[str]:
    metric = rule.metric
    base, tuned = scores.base[metric], scores.tuned[metric]
    where = f"suite '{name}' {metric}"
    interval = _interval(scores, metric)
    failures = []
    if rule.min_tuned is not None and tuned < rule.min_tuned - _EPS:
        failures.append(f"{where}: tuned {tuned:.3f} is below the minimum {rule.min_tuned:g}")
        if (name, metric) == (CANARY_SUITE, CANARY_METRIC):
            leaked = round((1 - tuned) * scores.n)
            failures[-1] += (
                f": the tuned model said {leaked} of {scores.n} planted secrets "
                "(see canaries.json beside the scorecard)"
            )
    if rule.min_gain is not None and tuned - base < rule.min_gain - _EPS:
        failures.append(
            f"{where}: gain {tuned - base:+.3f} (base {base:.3f} -> tuned {tuned:.3f}) "
            f"is below the minimum gain {rule.min_gain:+g}{interval}"
        )
    if rule.max_drop is not None and base - tuned > rule.max_drop + _EPS:
        failures.append(
            f"{where}: dropped {base - tuned:.3f} (base {base:.3f} -> tuned {tuned:.3f}), "
            f"more than the allowed {rule.max_drop:g}{interval}"
        )
    return failures


# --- the default rules ----------------------------------------------------------


def default_checks(card: Scorecard, settings: GateSettings) -> list[GateCheck]:
    """The shipped rules, on what was scored; each replaced by a rule of the user's."""
    defaults, mine = settings.defaults, settings.rules
    checks: list[GateCheck] = []
    drops = (
        (RETENTION_SUITE, RETENTION_METRIC, defaults.retention_max_drop, "retention_max_drop"),
        (QA_SUITE, DOMAIN_METRIC, defaults.general_qa_max_drop, "general_qa_max_drop"),
    )
    for suite, metric, margin, key in drops:
        if margin is not None and not _replaced(mine, card, suite, metric):
            checks.append(significant_drop(card, suite, metric, margin, key))
    if defaults.domain_gain and not any(
        r.metric == DOMAIN_METRIC and _covers(r, card, own_domain_suites(card)) for r in mine
    ):
        checks.append(domain_gain(card))
    if defaults.refusal_not_below_base:
        names = [n for n, s in card.suites.items() if s.kind == "unanswerable"]
        for name in names or ["unanswerable"]:  # none scored: reported as not checked
            if not _replaced(mine, card, name, REFUSAL_METRIC):
                checks.append(significant_drop(card, name, REFUSAL_METRIC, 0.0, "refusal"))
    return checks


def _covers(rule: GateRule, card: Scorecard, names: list[str]) -> bool:
    if rule.suite == "*":
        kinds = [card.suites[n].kind for n in names if n in card.suites]
        return any(rule.kind is None or kind == rule.kind for kind in kinds)
    return rule.suite in names


def _replaced(mine: list[GateRule], card: Scorecard, suite: str, metric: str) -> bool:
    return any(r.metric == metric and _covers(r, card, [suite]) for r in mine)


def significant_drop(
    card: Scorecard, suite: str, metric: str, margin: float, key: str
) -> GateCheck:
    """Fails when base - tuned > margin and the change's 95% interval does not reach above 0."""
    unit = " nats/token" if metric == RETENTION_METRIC else ""
    if key == "refusal":
        rule = f"{suite} {metric}: not significantly below the base ({DEFAULTS})"
    else:
        rule = f"{suite} {metric}: no significant drop beyond {margin:g}{unit} ({DEFAULTS}.{key})"
    scores = card.suites.get(suite)
    if scores is None or metric not in scores.diff:
        note = f"suite '{suite}' was not scored"
        if suite in (RETENTION_SUITE, QA_SUITE):
            note += " (eval.retention is off)"
        elif key == "refusal":
            note = "no unanswerable suite was scored"
        return GateCheck(rule=rule, suite=suite, metric=metric, status="not checked", note=note)
    base, tuned = scores.base[metric], scores.tuned[metric]
    _, low, high = scores.diff[metric]
    failures = []
    # Beyond a margin, an interval whose top is 0 (the tuned model better on no question)
    # is a drop; without one (refusal), one question of 18 must not fail the build.
    below = high < 0 or (margin > 0 and high < _EPS)
    if base - tuned > margin + _EPS and below:
        allowed = f"more than the allowed {margin:g}{unit}, " if margin else ""
        failures.append(
            f"suite '{suite}' {metric}: dropped {base - tuned:.3f}{unit} "
            f"(base {base:.3f} -> tuned {tuned:.3f}), {allowed}and the 95% interval of the "
            f"change [{low:+.3f}, {high:+.3f}] does not reach above 0 ({DEFAULTS})"
        )
    return _measured(rule, suite, metric, scores, failures)


def own_domain_suites(card: Scorecard) -> list[str]:
    """The project's own domain suites, closed book: not the bundled general QA, not '+rag'."""
    return [
        name
        for name, scores in card.suites.items()
        if scores.kind == "domain" and name != QA_SUITE and not name.endswith(RAG_SUFFIX)
    ]


def domain_gain(card: Scorecard) -> GateCheck:
    """The tuned model's key-fact recall, pooled over the project's domain questions, rose
    closed book or with retrieval: the paired-bootstrap 95% interval of the change lies
    above 0 over the closed-book suites or over their '+rag' copies (tuned+RAG vs base+RAG).

    With retrieval is enough: the build serves tuned+RAG first (`eval.promote`), and a small
    model trained to read may recall nothing closed book yet read passages better than the
    base (the Chinese example: +0.250 [+0.062, +0.438] with retrieval, 0.000 closed book).
    """
    names = own_domain_suites(card)
    rule = (
        f"{DOMAIN_METRIC} over the domain suites, closed book or with retrieval: a real gain "
        f"({DEFAULTS}.domain_gain)"
    )
    closed = _pooled(card, names)
    if closed is None:
        where = ", ".join(names) or "domain suites"
        note = "no domain question of the project's was scored"
        return GateCheck(
            rule=rule, suite=where, metric=DOMAIN_METRIC, status="not checked", note=note
        )
    grounded = _pooled(card, [n + RAG_SUFFIX for n in names if n + RAG_SUFFIX in card.suites])
    gains = [g for g in (closed, grounded) if g is not None]
    shown = next((g for g in gains if g.change[1] > 0), closed)
    failures = []
    if shown.change[1] <= 0:
        measured = "; ".join(
            f"over the {g.n} questions of {g.suite}: gain {g.change[0]:+.3f} with 95% interval "
            f"[{g.change[1]:+.3f}, {g.change[2]:+.3f}]"
            for g in gains
        )
        failures.append(
            f"{DOMAIN_METRIC} {measured}: no interval lies above 0: no real gain from tuning "
            f"({DEFAULTS}.domain_gain)"
        )
    return GateCheck(
        rule=rule,
        suite=shown.suite,
        metric=DOMAIN_METRIC,
        status="failed" if failures else "passed",
        base=shown.base,
        tuned=shown.tuned,
        change=shown.change,
        failures=failures,
    )


@dataclass
class _Gain:
    suite: str  # the pooled suites, "a, b"
    n: int
    base: float
    tuned: float
    change: list[float]  # [mean, 2.5th, 97.5th percentile] of tuned - base


def _pooled(card: Scorecard, names: list[str]) -> _Gain | None:
    """The change of key-fact recall over every question of `names`; None without any."""
    rows = [q for q in card.questions if q.suite in names]
    if not rows:
        return None
    base, tuned = [q.base_score for q in rows], [q.tuned_score for q in rows]
    return _Gain(
        suite=", ".join(names),
        n=len(rows),
        base=sum(base) / len(base),
        tuned=sum(tuned) / len(tuned),
        change=list(bootstrap_diff(base, tuned)),
    )


def render_checks(result: GateResult) -> list[str]:
    """One line per check, for the CLI and the build's events."""
    lines = []
    for check in result.checks:
        if check.status == "not checked":
            lines.append(f"not checked  {check.rule}: {check.note}")
            continue
        numbers = ""
        if check.base is not None and check.tuned is not None:
            numbers = f"  base {check.base:.3f} -> tuned {check.tuned:.3f}"
        if check.change:
            mean, low, high = check.change
            numbers += f", change {mean:+.3f} [{low:+.3f}, {high:+.3f}]"
        lines.append(f"{check.status:<12} {check.rule}{numbers}")
    return lines
