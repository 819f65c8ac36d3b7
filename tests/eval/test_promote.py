"""eval.promote: the four modes scored on the same questions, and the one the build serves."""

from __future__ import annotations

from shoptalk.config.eval import PromoteSettings
from shoptalk.eval.promote import choose_mode, mode_scores
from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import Scorecard, build_scorecard
from shoptalk.records import DomainQuestion, UnanswerableQuestion

N = 20


def card(closed: tuple[int, int], grounded: tuple[int, int] | None) -> Scorecard:
    """A domain suite (and its '+rag' copy) of N questions: (base, tuned) answer the first
    k of them right; an unanswerable suite both refuse; general QA, never a mode's question."""
    facts = Suite(
        name="docs",
        kind="domain",
        path="docs.jsonl",
        questions=[DomainQuestion(question=f"q{i}?", must_include=[f"F{i}"]) for i in range(N)],
    )
    unknown = Suite(
        name="unknown",
        kind="unanswerable",
        path="u.jsonl",
        questions=[UnanswerableQuestion(question="CEO's shoe size?")],
    )
    general = facts.model_copy(update={"name": "general_qa"})

    def right(k: int) -> list[str]:
        return [f"F{i}" if i < k else "?" for i in range(N)]

    refuse = ["I don't know."]
    suites = [facts, unknown, general]
    answers = {
        "docs": (right(closed[0]), right(closed[1])),
        "unknown": (refuse, refuse),
        "general_qa": (right(N), right(N)),
    }
    if grounded is not None:
        suites += [s.model_copy(update={"name": s.name + "+rag"}) for s in (facts, unknown)]
        answers["docs+rag"] = (right(grounded[0]), right(grounded[1]))
        answers["unknown+rag"] = (refuse, refuse)
    return build_scorecard("r", "m", suites, answers)


PREFER = PromoteSettings()


def test_the_four_modes_are_scored_on_the_same_questions():
    scores = mode_scores(card(closed=(0, 5), grounded=(14, 16)))
    # 20 domain questions + 1 refused unanswerable one each; general QA is not a mode's.
    assert scores == {
        "base": 1 / 21,
        "tuned": 6 / 21,
        "base+rag": 15 / 21,
        "tuned+rag": 17 / 21,
    }
    assert set(mode_scores(card(closed=(0, 5), grounded=None))) == {"base", "tuned"}


def test_the_first_preferred_mode_is_served_when_the_gate_passed():
    assert choose_mode(card((0, 5), (14, 16)), PREFER, gate_passed=True)[0] == "tuned+rag"
    # Without an index there is no '+rag' mode: the tuned model alone.
    assert choose_mode(card((0, 5), None), PREFER, gate_passed=True)[0] == "tuned"


def test_a_failed_gate_serves_the_base_with_retrieval():
    mode, why = choose_mode(card((0, 5), (14, 16)), PREFER, gate_passed=False)
    assert mode == "base+rag" and "the gate failed" in why
    assert choose_mode(card((0, 5), None), PREFER, gate_passed=False)[0] == "base"
    ungated = PromoteSettings(require_gate=False)
    assert choose_mode(card((0, 5), (14, 16)), ungated, gate_passed=False)[0] == "tuned+rag"


def test_a_later_mode_is_served_only_when_it_is_really_better():
    # base+rag right on 18, tuned+rag on 6: a real difference, so base+rag is served.
    mode, why = choose_mode(card((0, 5), (18, 6)), PREFER, gate_passed=True)
    assert mode == "base+rag" and "beats tuned+rag" in why
    # A difference within noise keeps the preferred mode.
    assert choose_mode(card((0, 5), (16, 15)), PREFER, gate_passed=True)[0] == "tuned+rag"
    fixed = PromoteSettings(switch_if_better=False)
    assert choose_mode(card((0, 5), (18, 6)), fixed, gate_passed=True)[0] == "tuned+rag"


def test_the_user_s_order_is_followed():
    closed_first = PromoteSettings(prefer=["tuned", "tuned+rag"], switch_if_better=False)
    assert choose_mode(card((0, 5), (14, 16)), closed_first, gate_passed=True)[0] == "tuned"
    only_tuned = PromoteSettings(prefer=["tuned"])
    assert choose_mode(card((0, 5), (14, 16)), only_tuned, gate_passed=False) == (
        None,
        "no mode of eval.promote.prefer was scored and allowed",
    )
