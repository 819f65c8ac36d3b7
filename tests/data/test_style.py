"""Style material: guides written in different hands are recognized and read the same way."""

from shoptalk.data.style import (
    StyleRules,
    copies_message,
    extract_rules,
    is_style_guide,
    problems,
    repair,
)

GUIDE_EN = """# How we write to members

Open every email with "Hello {first name}," and never with a generic salutation.
Always quote the ticket number in the first paragraph.
Never say "calm down" or "that's not our problem".
If we got something wrong, apologize once and plainly.
Keep replies under 150 words.
Close with "Warm wishes, the Member Desk".
"""

GUIDE_EN_BULLETS = """Support replies

- Greet the customer as "Dear Customer,".
- Avoid "unfortunately" in the first sentence.
- Use a formal register at all times.
- Sign off with "Best regards".
- Do not promise delivery dates.
"""

GUIDE_ZH = """# 客服回复规范

开头统一使用“尊敬的{客户姓名}：”。
回复中务必注明订单号。
禁止使用“不知道”“没办法”等说法。
结尾落款为“此致，客服中心”。
回复控制在200字以内。
"""

NOT_A_GUIDE = """# Returns policy

Items can be returned within 30 days of delivery.
Refunds are issued to the original payment method.
Shipping costs are not refunded unless the item was faulty.
Store credit is available on request.
"""


def test_english_guide_rules():
    r = extract_rules(GUIDE_EN)
    assert r.greeting == "Hello {first name},"
    assert r.sign_off == "Warm wishes, the Member Desk"
    assert r.forbidden == ["calm down", "that's not our problem"]
    assert set(r.required) == {"reference", "apology"}
    assert r.max_words == 150
    assert "ticket number" in r.sources["reference"]


def test_bulleted_guide_rules():
    r = extract_rules(GUIDE_EN_BULLETS)
    assert r.greeting == "Dear Customer,"
    assert r.sign_off == "Best regards"
    assert r.forbidden == ["unfortunately"]
    assert r.formality == "formal"


def test_chinese_guide_rules():
    r = extract_rules(GUIDE_ZH)
    assert r.greeting == "尊敬的{客户姓名}："
    assert r.sign_off == "此致，客服中心"
    assert r.forbidden == ["不知道", "没办法"]
    assert "reference" in r.required
    assert r.max_words == 200


def test_recognition_among_documents():
    assert is_style_guide("customer-replies.md", GUIDE_EN)[0]
    assert is_style_guide("replies.txt", GUIDE_ZH)[0]
    # no heading about writing: recognized by its prescriptive sentences
    body = GUIDE_EN_BULLETS.split("\n", 1)[1]
    ok, why = is_style_guide("notes.md", body)
    assert ok and "prescribe" in why
    assert is_style_guide("returns.md", NOT_A_GUIDE) == (False, "")


def test_post_check_repairs_greeting_sign_off_and_forbidden():
    rules = extract_rules(GUIDE_EN)
    draft = "Your refund is on its way. Please calm down, it will arrive soon."
    found = problems(draft, rules)
    assert any("open" in p for p in found) and any("end" in p for p in found)
    assert any("calm down" in p for p in found)
    fixed = repair(draft, rules, name="Ana")
    assert fixed.startswith("Hello Ana,")
    assert fixed.endswith("Warm wishes, the Member Desk")
    assert "calm down" not in fixed
    assert problems(fixed, rules) == []


def test_post_check_chinese():
    rules = extract_rules(GUIDE_ZH)
    fixed = repair("您的退款已处理。我们没办法加急。", rules, name="王女士")
    assert fixed.startswith("尊敬的王女士：")
    assert "没办法" not in fixed
    assert problems(fixed, rules) == []


def test_copied_message_rejected():
    message = "I ordered a blue kettle two weeks ago and it still has not arrived, where is it?"
    echo = "I ordered a blue kettle two weeks ago and it still has not arrived."
    assert copies_message(echo, message)
    assert not copies_message("We have traced your parcel; it arrives on Friday.", message)
    assert "copies the customer's message" in problems(echo, StyleRules(), message)
