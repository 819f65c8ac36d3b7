"""The one system prompt: the config's, then the style rules (in the prompt's language) that only
a drafting request is asked with."""

from shoptalk.modeling.chat_format import (
    STYLE_HEADER,
    drafting,
    for_request,
    styled_system_prompt,
    with_system,
    with_system_dicts,
)
from shoptalk.records import Message

RULES = {
    "greeting": "Dear {name},",
    "sign_off": "Kind regards",
    "forbidden": ["unfortunately"],
    "required": ["reference"],
    "formality": "formal",
    "max_words": 120,
    "formats": [
        {"kind": "code", "example": "SO-48213"},
        {"kind": "date", "example": "June 14, 2024"},
    ],
}


def test_no_rules_leave_the_prompt_unchanged():
    assert styled_system_prompt("You help.", {}) == "You help."
    empty = {"greeting": "", "sign_off": "", "forbidden": [], "required": [], "max_words": None}
    assert styled_system_prompt("You help.", empty) == "You help."


def test_every_rule_is_an_instruction_after_the_config_prompt():
    prompt = styled_system_prompt("You help.", RULES)
    lines = prompt.splitlines()
    assert lines[0] == "You help."
    shown = ('"Dear {name},"', '"Kind regards"', '"unfortunately"', "reference", "120", "SO-48213")
    for text in shown:
        assert any(text in line for line in lines[1:]), text


def test_a_chinese_prompt_gets_chinese_instructions():
    prompt = styled_system_prompt("你是本公司的客服助手。", {"sign_off": "祝好", "max_words": 200})
    assert "“祝好”" in prompt and "200字" in prompt


def test_a_drafting_request_reads_the_styled_prompt_first():
    prompt = styled_system_prompt("You help.", RULES)
    asked = Message(role="user", content='Draft a reply to this customer: "Where is my parcel?"')
    assert with_system([asked], prompt)[0] == {"role": "system", "content": prompt}
    assert STYLE_HEADER[0] in prompt


def test_any_other_request_reads_the_prompt_without_its_style_rules():
    # The rules are for replies to customers: a plain question (in training as in use) is
    # asked with the config's prompt, not told to greet and sign off.
    prompt = styled_system_prompt("You help.", RULES)
    rendered = with_system([Message(role="user", content="How long is the claim window?")], prompt)
    assert rendered[0] == {"role": "system", "content": "You help."}
    chat = [{"role": "user", "content": "请问退款多久到账？"}]
    zh = styled_system_prompt("你是客服助手。", {"sign_off": "祝好"})
    assert with_system_dicts(chat, zh)[0]["content"] == "你是客服助手。"
    # The last request decides: a draft asked after a question gets the rules.
    turns = [
        *chat,
        {"role": "assistant", "content": "三天。"},
        {"role": "user", "content": "请起草回复邮件"},
    ]
    assert with_system_dicts(turns, zh)[0]["content"] == zh


def test_drafting_requests_are_told_apart_from_questions():
    assert drafting("Please draft an email replying to: 'Is my claim open?'")
    assert drafting("Reply to this customer: 'Hi'") and drafting("帮我写一封回复邮件")
    assert not drafting("How do I reply to a claim letter?") and not drafting("退款多久到账？")
    assert for_request("You help.", "Draft a reply to this customer: hi") == "You help."
    # The instruction after the case it is about.
    assert drafting("Mr. Ito's parcel is lost (ref 4410). Write him an update.")
    assert drafting("The kettle arrived broken. Reply to her with the next steps.")
    assert drafting("Ms. Ng was charged twice. Draft the answer.")
    assert drafting("Write to Dr. Lee about the refund of order 5521.")
    assert not drafting("What should the draft contract say about notice?")
    assert not drafting("Who do I write to about my pension?")
    # Other ways advisers ask for one.
    assert drafting("Mr. Haddad's meter test is booked. Send him a short reply.")
    assert drafting("Kevin asks about inspections. Answer him.")
    assert drafting("Need a quick acknowledgment email to her about the lawn.")
    assert drafting("Printed letter going to the service address for Mr. Okonkwo.")
    assert drafting("Web contact form, no name, reply goes out by email: 'How much is it?'")
    assert not drafting("Do I need a letter from my employer for the deposit?")
    assert not drafting("How do I send an email to the billing office?")
    # To a person named without a title, a rider, a message; "Can you write ...".
    assert drafting("Reply to an email from Marcus Hale. He asks about the monthly pass.")
    assert drafting("Reply to Harold Jensen's email. He needs to cancel a trip.")
    assert drafting("Write back to Kenji Watanabe. His card was stolen.")
    assert drafting("Email Olivia Brandt back: her wallet turned up.")
    assert drafting('Need an email to a rider who signed her message just "Dana".')
    assert drafting("Can you write a short reply to this comment on our page: 'how long?'")
    assert not drafting("Can I reply to an email from the billing team after hours?")
    assert not drafting("Where do I email the lost and found office?")
