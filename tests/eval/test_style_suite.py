"""A project with style rules but no style suite of its own gets one, made from its rules."""

from shoptalk.eval.metrics import style_pass
from shoptalk.eval.questions import STYLE_SUITE, suite_from_style
from shoptalk.rag.voice import follow_style, route

RULES = {
    "greeting": "Hello {first name},",
    "sign_off": "Warm wishes, the Member Desk",
    "forbidden": ["no worries"],
}
ASKED = ["How long do refunds take?", "退货运费谁承担？", "Can I change my address?"]


def test_the_suite_drafts_replies_to_asked_questions_scored_on_the_rules():
    suite = suite_from_style(RULES, ASKED)
    assert suite is not None and suite.name == STYLE_SUITE and suite.kind == "style"
    assert len(suite.questions) == len(ASKED)
    for question, asked in zip(suite.questions, ASKED, strict=True):
        assert asked in question.prompt
        assert route(question.prompt) == "draft"  # answered as a draft, in every mode
        assert question.must_include == ["Hello", "Warm wishes, the Member Desk"]
        assert question.must_not_include == ["no worries"]


def test_a_styled_draft_passes_and_a_bare_answer_does_not():
    question = suite_from_style(RULES, ASKED).questions[0]
    bare = "Refunds take 14 days."
    assert not style_pass(bare, question.must_include, question.must_not_include)
    fixed = follow_style(question.prompt, bare, RULES)
    assert style_pass(fixed, question.must_include, question.must_not_include)


def test_no_checkable_rules_or_no_questions_give_no_suite():
    assert suite_from_style({}, ASKED) is None
    assert suite_from_style({"formality": "formal"}, ASKED) is None
    assert suite_from_style(RULES, []) is None
