"""The gate: thresholds a scorecard must meet before a tuned model is promoted.

Configured under `eval.gate.rules` in `shoptalk.yaml`:

    eval:
      gate:
        rules:
          - {suite: faq, metric: key_fact_recall, min_tuned: 0.8, min_gain: 0.2}
          - {suite: "*", kind: unanswerable, metric: refusal_rate, min_tuned: 0.9}
          - {suite: general, metric: rouge_l, max_drop: 0.02}

No rules means the gate passes, with one default: when leakage canaries were
planted (suite 'canaries'), zero exposure is required unless a rule of the
user's names that suite. A rule that cannot be checked (its suite was
not scored, its metric is missing) is a failure, never silently skipped: a gate
that checks nothing must not look like a gate that passed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shoptalk.config import GateRule, GateSettings
from shoptalk.eval.scorecard import Scorecard, SuiteScores

# Float means such as 2/3 are compared with this slack, so "at least 0.8"
# holds for a measured 4/5 whatever the rounding.
_EPS = 1e-9


class GateResult(BaseModel):
    passed: bool
    failures: list[str] = Field(default_factory=list)


# Suite and metric of the leakage canaries, as eval/canary.py scores them.
CANARY_SUITE, CANARY_METRIC = "canaries", "withheld_rate"


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
    failures: list[str] = []
    for rule in [*settings.rules, *default_rules(card, settings)]:
        failures.extend(_check_rule(card, rule))
    return GateResult(passed=not failures, failures=failures)


def _check_rule(card: Scorecard, rule: GateRule) -> list[str]:
    if rule.suite == "*":
        names = [n for n, s in card.suites.items() if rule.kind is None or s.kind == rule.kind]
        if not names:
            which = f"of kind '{rule.kind}' " if rule.kind else ""
            return [f"no suite {which}was scored, so the {rule.metric} rule checks nothing"]
    else:
        names = [rule.suite]
    failures: list[str] = []
    for name in names:
        scores = card.suites.get(name)
        if scores is None:
            scored = ", ".join(repr(n) for n in card.suites) or "none"
            failures.append(f"suite '{name}' was not scored (scored: {scored})")
        elif rule.kind is not None and scores.kind != rule.kind:
            failures.append(
                f"suite '{name}' is a {scores.kind} suite, but the rule expects {rule.kind}"
            )
        elif rule.metric not in scores.tuned:
            has = ", ".join(scores.tuned) or "none"
            failures.append(f"suite '{name}' has no metric '{rule.metric}' (it has: {has})")
        else:
            failures.extend(_check_thresholds(name, scores, rule))
    return failures


def _check_thresholds(name: str, scores: SuiteScores, rule: GateRule) -> list[str]:
    metric = rule.metric
    base, tuned = scores.base[metric], scores.tuned[metric]
    where = f"suite '{name}' {metric}"
    interval = ""
    if metric in scores.diff:
        _, low, high = scores.diff[metric]
        interval = f" (95% interval of the change [{low:+.3f}, {high:+.3f}])"
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
