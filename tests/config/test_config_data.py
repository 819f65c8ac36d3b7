"""The data settings' derived values."""

from shoptalk.config import DataSettings


def test_own_refusal_answer_is_empty_while_the_default_stands():
    assert DataSettings().own_refusal_answer == ""
    own = "抱歉，我们的资料中没有这方面的信息。"
    assert DataSettings(refusal_answer=own).own_refusal_answer == own
