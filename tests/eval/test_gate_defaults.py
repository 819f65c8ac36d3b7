"""The default gate: each shipped rule passes, fails and is reported "not checked" when its
suite was not scored; a rule of the user's replaces it; the verdict reaches the report."""

from __future__ import annotations

from shoptalk.config.eval import GateDefaults, GateRule, GateSettings
from shoptalk.eval.gate import check_gate, render_checks
from shoptalk.eval.questions import Suite
from shoptalk.eval.report import render_report
from shoptalk.eval.scorecard import Scorecard, SuiteScores, build_scorecard
from shoptalk.records import DomainQuestion

ONLY = {
    "retention": GateDefaults(
        general_qa_max_drop=None, domain_gain=False, refusal_not_below_base=False
    ),
    "general_qa": GateDefaults(
        retention_max_drop=None, domain_gain=False, refusal_not_below_base=False
    ),
    "domain": GateDefaults(
        retention_max_drop=None, general_qa_max_drop=None, refusal_not_below_base=False
    ),
    "refusal": GateDefaults(retention_max_drop=None, general_qa_max_drop=None, domain_gain=False),
}


def scores(kind: str, metric: str, base: float, tuned: float, interval: tuple[float, float]):
    return SuiteScores(
        n=50,
        kind=kind,
        base={metric: base},
        tuned={metric: tuned},
        diff={metric: [tuned - base, *interval]},
    )


def card(**suites: SuiteScores) -> Scorecard:
    named = {name.replace("_rag", "+rag"): s for name, s in suites.items()}
    return Scorecard(run_id="r", base_model="m", created="now", suites=named)


def only(rule: str, *mine: GateRule) -> GateSettings:
    return GateSettings(rules=list(mine), defaults=ONLY[rule])


def test_retention_fails_on_a_significant_drop_beyond_the_margin():
    # The held-out organization of issue 17: -0.99 -> -1.80 nats/token.
    lost = card(retention=scores("retention", "log_likelihood", -0.99, -1.80, (-0.85, -0.77)))
    result = check_gate(lost, only("retention"))
    assert not result.passed
    (failure,) = result.failures
    assert failure.startswith(
        "suite 'retention' log_likelihood: dropped 0.810 nats/token (base -0.990 -> tuned -1.800)"
    )
    assert "eval.gate.defaults" in failure
    (check,) = result.checks
    assert check.status == "failed" and check.change == [-0.81, -0.85, -0.77]


def test_retention_passes_a_small_drop_and_a_drop_within_noise():
    small = card(retention=scores("retention", "log_likelihood", -0.99, -1.10, (-0.13, -0.09)))
    assert check_gate(small, only("retention")).passed
    noisy = card(retention=scores("retention", "log_likelihood", -0.99, -1.50, (-1.10, 0.02)))
    assert check_gate(noisy, only("retention")).passed


def test_an_unscored_suite_is_not_checked_and_does_not_fail():
    result = check_gate(card(), GateSettings())
    assert result.passed and result.failures == []
    statuses = {c.rule.split(":")[0]: (c.status, c.note) for c in result.checks}
    assert statuses["retention log_likelihood"] == (
        "not checked",
        "suite 'retention' was not scored (eval.retention is off)",
    )
    assert statuses["general_qa key_fact_recall"][0] == "not checked"
    assert statuses["unanswerable refusal_rate"] == (
        "not checked",
        "no unanswerable suite was scored",
    )
    domain = "key_fact_recall over the domain suites, closed book or with retrieval"
    assert statuses[domain][0] == "not checked"
    assert any(line.startswith("not checked  retention") for line in render_checks(result))


def test_a_user_rule_on_the_same_suite_replaces_the_default_and_stays_strict():
    lost = card(retention=scores("retention", "log_likelihood", -0.99, -1.80, (-0.85, -0.77)))
    mine = GateRule(suite="retention", metric="log_likelihood", max_drop=1.0)
    result = check_gate(lost, only("retention", mine))
    assert result.passed and len(result.checks) == 1
    assert result.checks[0].rule == "retention log_likelihood: max_drop 1"
    # The user's rule on a suite that was not scored fails, as before.
    assert not check_gate(card(), only("retention", mine)).passed


def test_general_qa_fails_on_a_significant_drop_and_passes_noise():
    qa = "general_qa"
    drop = card(general_qa=scores("domain", "key_fact_recall", 0.40, 0.28, (-0.19, -0.04)))
    (failure,) = check_gate(drop, only(qa)).failures
    assert "suite 'general_qa' key_fact_recall: dropped 0.120" in failure
    # Issue 17's held-out organization: 0.328 -> 0.284, an interval that reaches 0.
    noise = card(general_qa=scores("domain", "key_fact_recall", 0.328, 0.284, (-0.10, 0.01)))
    assert check_gate(noise, only(qa)).passed
    # The fifth held-out organization: 0.373 -> 0.269, an interval whose top is 0 exactly.
    touching = card(general_qa=scores("domain", "key_fact_recall", 0.373, 0.269, (-0.209, 0.0)))
    (failure,) = check_gate(touching, only(qa)).failures
    assert "[-0.209, +0.000] does not reach above 0" in failure
    assert check_gate(card(), only(qa)).checks[0].status == "not checked"


def domain_card(gains: int, n: int = 30, rag_gains: int = 0) -> Scorecard:
    """A domain suite of `n` questions, the tuned model right on the first `gains` of them;
    general QA and a '+rag' copy where the tuned model gains on `rag_gains` questions."""
    questions = [DomainQuestion(question=f"q{i}?", must_include=[f"F{i}"]) for i in range(n)]
    suites = [
        Suite(name=name, kind="domain", path=f"{name}.jsonl", questions=questions)
        for name in ("docs", "general_qa", "docs+rag")
    ]
    right = [f"F{i}" for i in range(n)]
    wrong = ["?"] * n
    answers = {
        "docs": (wrong, right[:gains] + wrong[gains:]),
        "general_qa": (wrong, right),  # never pooled with the project's own questions
        "docs+rag": (wrong, right[:rag_gains] + wrong[rag_gains:]),
    }
    return build_scorecard("r", "m", suites, answers)


def test_domain_gain_needs_an_interval_above_zero():
    passed = check_gate(domain_card(gains=8), only("domain"))
    assert passed.passed
    (check,) = passed.checks
    assert check.suite == "docs" and check.base == 0.0 and round(check.tuned, 3) == 0.267
    assert check.change[1] > 0
    # No gain on the project's questions, closed book or with retrieval: general QA's
    # gain does not count.
    result = check_gate(domain_card(gains=0, rag_gains=0), only("domain"))
    (failure,) = result.failures
    assert failure.startswith(
        "key_fact_recall over the 30 questions of docs: gain +0.000 with 95% interval "
        "[+0.000, +0.000]; over the 30 questions of docs+rag: gain +0.000"
    )
    assert "no real gain from tuning" in failure


def test_domain_gain_with_retrieval_is_a_real_gain():
    # A model trained to read: nothing recalled closed book, passages read better.
    result = check_gate(domain_card(gains=0, rag_gains=10), only("domain"))
    assert result.passed
    (check,) = result.checks
    assert check.suite == "docs+rag" and check.base == 0.0 and round(check.tuned, 3) == 0.333
    assert check.change[1] > 0


def test_domain_gain_is_not_checked_without_domain_questions():
    (check,) = check_gate(card(), only("domain")).checks
    assert check.status == "not checked"


def test_refusal_must_not_fall_below_the_base_closed_book_or_with_retrieval():
    same = scores("unanswerable", "refusal_rate", 0.5, 0.5, (-0.1, 0.1))
    fewer = scores("unanswerable", "refusal_rate", 0.6, 0.1, (-0.7, -0.3))
    result = check_gate(card(unanswerable=same, unanswerable_rag=fewer), only("refusal"))
    (failure,) = result.failures
    assert failure.startswith("suite 'unanswerable+rag' refusal_rate: dropped 0.500")
    assert [c.status for c in result.checks] == ["passed", "failed"]
    slight = scores("unanswerable", "refusal_rate", 0.111, 0.056, (-0.167, 0.0))
    assert check_gate(card(unanswerable=slight), only("refusal")).passed


def test_the_report_shows_the_verdict_and_each_rule_s_numbers():
    scored = card(retention=scores("retention", "log_likelihood", -0.99, -1.80, (-0.85, -0.77)))
    scored.gate = check_gate(scored, GateSettings())
    html = render_report(scored)
    assert "Gate: FAILED" in html
    assert "retention log_likelihood: no significant drop beyond 0.3 nats/token" in html
    assert "-0.810 [-0.850, -0.770]" in html and "not checked" in html
