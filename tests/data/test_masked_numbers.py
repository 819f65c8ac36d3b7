from __future__ import annotations

from shoptalk.data.masked_numbers import masked, phrase, read_mask, request_numbers
from shoptalk.data.style import extract_rules

RULE = [
    "In emails and text messages, never write the full account number.",
    'Show only the last four digits, without hyphens: "your account ending in 1307."',
]


def test_the_masking_form_is_read_from_the_guides_example():
    form = read_mask(RULE)
    assert (form.example, form.keep, form.label) == ("your account ending in 1307", 4, "account")
    # The sentence before speaks of the number: it may name the channels.
    assert form.source == " ".join(RULE)
    # Last digits without an example of them, or an example without "last digits": no form.
    assert read_mask(["Show only the last four digits of the account number."]) is None
    assert read_mask(['Quote the order, for example "order ending in 1307".']) is None
    zh = read_mask(["账号只显示后四位，例如“您尾号1307的账户”。"])
    assert (zh.example, zh.keep, zh.label) == ("您尾号1307的账户", 4, "账户")


def test_the_requests_account_numbers_are_written_masked_in_any_grouping():
    form = read_mask(RULE)
    request = "Ms. Dana Morales (acct 340-27719-01) emailed. Her card 4111 is fine; call 555-0100."
    # After the word or its abbreviation only: a phone number is no account number.
    assert request_numbers(request, form) == ["340-27719-01"]
    assert phrase("340-27719-01", form) == "your account ending in 1901"
    draft = "Your account 340-27719-01 is past due. We looked at 3402771901 again."
    assert masked(draft, request, form) == (
        "Your account ending in 1901 is past due. We looked at your account ending in 1901 again."
    )
    assert "27719" not in masked("Account #340 27719 01 is open.", request, form)


def test_a_guides_masking_rule_is_for_the_channels_it_names():
    rules = extract_rules("# Writing to customers\n\n" + " ".join(RULE))
    assert rules.masked.channels == ["email", "text"]
    every = extract_rules(
        '# Writing to customers\n\nShow only the last 4 digits: "card ending in 4242".'
    )
    assert every.masked.channels == [] and every.masked.label == "card"


def test_a_chinese_account_number_is_masked_in_chinese_text():
    form = read_mask(["账号只显示后四位，例如“您尾号1307的账户”。"])
    request = "客户王女士（账号：6222 0212 3456 7788）来信说扣款两次。"
    assert request_numbers(request, form) == ["6222 0212 3456 7788"]
    assert masked("您的账号6222021234567788已退款。", request, form) == "您尾号7788的账户已退款。"


def test_a_form_shown_in_markdown_code_quotes_is_read():
    form = read_mask(
        ["In any reply, show only the last four digits: `your Heron Card ending in 4821`."]
    )
    assert (form.example, form.label) == ("your Heron Card ending in 4821", "card")
    request = "Mr. Ode's Heron Card 6012 3456 7890 1234 was charged twice. Reply to him."
    # Named, the words before the label stay as written; bare, the whole form.
    assert masked("The Heron Card 6012 3456 7890 1234 is refunded.", request, form) == (
        "The Heron Card ending in 1234 is refunded."
    )
    assert masked("6012345678901234 is refunded.", request, form) == (
        "Your Heron Card ending in 1234 is refunded."
    )


def test_a_bare_number_after_an_article_takes_no_second_one():
    form = read_mask(['Show only the last four digits: "your Heron Card ending in 4821".'])
    request = "His Heron Card 6012 3400 7781 0456 was stolen. Write back to Kenji Watanabe."
    assert masked("It is a 6012340077810456 card.", request, form) == (
        "It is a Heron Card ending in 0456 card."
    )
