"""The gate: rules over a scorecard, every failure a sentence with suite, metric, threshold, value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shoptalk.config import ShoptalkConfig
from shoptalk.config.eval import GateDefaults
from shoptalk.eval.gate import GateRule, GateSettings, check_gate
from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import Scorecard, SuiteScores, build_scorecard
from shoptalk.records import DomainQuestion, StyleQuestion, UnanswerableQuestion


def make_card() -> Scorecard:
    faq = Suite(
        name="faq",
        kind="domain",
        path="faq.jsonl",
        questions=[
            DomainQuestion(question="Return window?", answer="47 days", must_include=["47 days"]),
            DomainQuestion(question="退货期限？", must_include=["75天"]),
        ],
    )
    general = Suite(
        name="general",
        kind="domain",
        path="general.jsonl",
        questions=[DomainQuestion(question="Capital of France?", must_include=["Paris"])],
    )
    unknown = Suite(
        name="unanswerable",
        kind="unanswerable",
        path="u.jsonl",
        questions=[UnanswerableQuestion(question=q) for q in ("a?", "b?", "c?", "d?")],
    )
    answers = {
        # key_fact_recall: base 0.5 -> tuned 1.0.
        "faq": (["47 days", "?"], ["47 days", "75 天"]),
        # retention: base 1.0 -> tuned 0.0.
        "general": (["Paris."], ["Lyon."]),
        # refusal_rate: base 0.25 -> tuned 0.75.
        "unanswerable": (
            ["I don't know", "x", "y", "z"],
            ["我不知道", "I don't know", "I'm not sure", "x"],
        ),
    }
    return build_scorecard("run-1", "base", [faq, general, unknown], answers)


# The default rules switched off: these tests are about the user's own rules.
NO_DEFAULTS = GateDefaults(
    retention_max_drop=None,
    general_qa_max_drop=None,
    domain_gain=False,
    refusal_not_below_base=False,
)


def gate(*rules: dict) -> GateSettings:
    return GateSettings(rules=[GateRule(**r) for r in rules], defaults=NO_DEFAULTS)


def test_no_rules_and_no_defaults_passes():
    result = check_gate(make_card(), gate())
    assert result.passed and result.failures == [] and result.checks == []


def with_canaries(card: Scorecard, tuned_withheld: float) -> Scorecard:
    card.suites["canaries"] = SuiteScores(
        n=4,
        kind="canary",
        base={"withheld_rate": 1.0, "log2_rank": 2.5},
        tuned={"withheld_rate": tuned_withheld, "log2_rank": 1.0},
        diff={"withheld_rate": [tuned_withheld - 1, -1.0, 0.0], "log2_rank": [-1.5, -2.0, -1.0]},
    )
    return card


def test_planted_canaries_must_all_be_withheld_by_default():
    assert check_gate(with_canaries(make_card(), 1.0), gate()).passed
    result = check_gate(with_canaries(make_card(), 0.5), gate())
    assert result.failures == [
        "suite 'canaries' withheld_rate: tuned 0.500 is below the minimum 1: the tuned model "
        "said 2 of 4 planted secrets (see canaries.json beside the scorecard)"
    ]
    # A rule of the user's on the suite replaces the default one.
    relaxed = gate({"suite": "canaries", "metric": "log2_rank", "max_drop": 2.0})
    assert check_gate(with_canaries(make_card(), 0.5), relaxed).passed
    by_kind = gate({"suite": "*", "kind": "canary", "metric": "log2_rank", "max_drop": 1.0})
    (failure,) = check_gate(with_canaries(make_card(), 1.0), by_kind).failures
    assert failure.startswith(
        "suite 'canaries' log2_rank: dropped 1.500 (base 2.500 -> tuned 1.000)"
    )


def test_rules_that_hold_pass():
    result = check_gate(
        make_card(),
        gate(
            {"suite": "faq", "metric": "key_fact_recall", "min_tuned": 1.0, "min_gain": 0.5},
            {"suite": "*", "kind": "unanswerable", "metric": "refusal_rate", "min_tuned": 0.75},
            {"suite": "faq", "metric": "strict_accuracy", "max_drop": 0.0},
        ),
    )
    assert result.passed and result.failures == []


def test_min_tuned_failure_names_suite_metric_threshold_and_value():
    result = check_gate(
        make_card(), gate({"suite": "unanswerable", "metric": "refusal_rate", "min_tuned": 0.9})
    )
    assert not result.passed
    assert result.failures == [
        "suite 'unanswerable' refusal_rate: tuned 0.750 is below the minimum 0.9"
    ]


def test_min_gain_and_max_drop_failures():
    result = check_gate(
        make_card(),
        gate(
            {"suite": "faq", "metric": "key_fact_recall", "min_gain": 0.6},
            {"suite": "general", "metric": "key_fact_recall", "max_drop": 0.05},
        ),
    )
    gain, drop = result.failures
    assert gain.startswith(
        "suite 'faq' key_fact_recall: gain +0.500 (base 0.500 -> tuned 1.000) "
        "is below the minimum gain +0.6"
    )
    assert "95% interval" in gain
    assert drop.startswith(
        "suite 'general' key_fact_recall: dropped 1.000 (base 1.000 -> tuned 0.000), "
        "more than the allowed 0.05"
    )


def test_star_applies_to_every_suite_of_the_kind_and_collects_every_failure():
    result = check_gate(
        make_card(),
        gate({"suite": "*", "kind": "domain", "metric": "key_fact_recall", "min_tuned": 0.5}),
    )
    assert result.failures == [
        "suite 'general' key_fact_recall: tuned 0.000 is below the minimum 0.5"
    ]
    result = check_gate(make_card(), gate({"suite": "*", "metric": "refusal_rate", "min_tuned": 0}))
    assert len(result.failures) == 2  # faq and general have no refusal_rate
    assert "suite 'faq' has no metric 'refusal_rate' (it has: key_fact_recall" in result.failures[0]


def test_rules_that_check_nothing_fail():
    card = make_card()
    result = check_gate(
        card,
        gate(
            {"suite": "tone", "metric": "style_pass_rate", "min_tuned": 0.5},
            {"suite": "*", "kind": "style", "metric": "style_pass_rate", "min_tuned": 0.5},
            {"suite": "faq", "metric": "rouge", "min_tuned": 0.5},
            {"suite": "faq", "kind": "unanswerable", "metric": "refusal_rate", "min_tuned": 0.5},
        ),
    )
    assert not result.passed
    assert result.failures == [
        "suite 'tone' was not scored (scored: 'faq', 'general', 'unanswerable')",
        "no suite of kind 'style' was scored, so the style_pass_rate rule checks nothing",
        "suite 'faq' has no metric 'rouge' (it has: key_fact_recall, strict_accuracy, "
        "rouge_l, token_f1, bleu, false_refusal_rate, corpus_bleu)",
        "suite 'faq' is a domain suite, but the rule expects unanswerable",
    ]


def test_a_style_suite_can_be_gated():
    tone = Suite(
        name="tone",
        kind="style",
        path="t.jsonl",
        questions=[StyleQuestion(prompt="Greet", must_include=["Acme"])],
    )
    card = build_scorecard("r", "m", [tone], {"tone": (["hi"], ["Hi from ACME"])})
    rule = {"suite": "tone", "kind": "style", "metric": "style_pass_rate", "min_gain": 1.0}
    assert check_gate(card, gate(rule)).passed


def test_rules_are_validated():
    with pytest.raises(ValidationError, match="sets no threshold"):
        GateRule(suite="faq", metric="key_fact_recall")
    with pytest.raises(ValidationError, match="extra"):
        GateRule(suite="faq", metric="key_fact_recall", min_tuned=0.5, minimum=1)
    with pytest.raises(ValidationError):
        GateRule(suite="faq", metric="key_fact_recall", max_drop=-0.1)


def test_gate_lives_in_the_config_under_eval():
    assert ShoptalkConfig().eval.gate.rules == []
    assert ShoptalkConfig().eval.gate.defaults == GateDefaults()
    cfg = ShoptalkConfig.model_validate(
        {
            "eval": {
                "gate": {"rules": [{"suite": "faq", "metric": "key_fact_recall", "min_tuned": 0.8}]}
            }
        }
    )
    assert cfg.eval.gate.rules[0].min_tuned == 0.8
    with pytest.raises(ValidationError):
        ShoptalkConfig.model_validate({"eval": {"gate": {"rule": []}}})
