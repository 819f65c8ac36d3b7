"""The one 'is it Chinese' rule every stage shares."""

import pytest

from shoptalk.text import is_chinese


@pytest.mark.parametrize(
    ("text", "chinese"),
    [
        ("退货期限是多久？", True),
        ("KX-220 的保修期是多久？", True),  # digits and punctuation do not count
        ("价", True),
        ("Model KX-220 (保修)", False),
        ("How long is the claim window?", False),
        ("", False),
        ("12345，。！", False),  # no letters at all
        ("Ｈｅｌｌｏ，ｗｏｒｌｄ", False),  # full-width Latin letters are still Latin
        ("退货 ok", True),  # half the letters are Chinese: a tie goes to Chinese
    ],
)
def test_chinese_when_chinese_characters_are_at_least_half_the_letters(text, chinese):
    assert is_chinese(text) is chinese
