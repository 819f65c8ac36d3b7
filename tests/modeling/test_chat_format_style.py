"""The one system prompt: the config's, then the style rules, in the prompt's language."""

from shoptalk.modeling.chat_format import styled_system_prompt, with_system
from shoptalk.records import Message

RULES = {
    "greeting": "Dear {name},",
    "sign_off": "Kind regards",
    "forbidden": ["unfortunately"],
    "required": ["reference"],
    "formality": "formal",
    "max_words": 120,
}


def test_no_rules_leave_the_prompt_unchanged():
    assert styled_system_prompt("You help.", {}) == "You help."
    empty = {"greeting": "", "sign_off": "", "forbidden": [], "required": [], "max_words": None}
    assert styled_system_prompt("You help.", empty) == "You help."


def test_every_rule_is_an_instruction_after_the_config_prompt():
    prompt = styled_system_prompt("You help.", RULES)
    lines = prompt.splitlines()
    assert lines[0] == "You help."
    for text in ('"Dear {name},"', '"Kind regards"', '"unfortunately"', "reference", "120"):
        assert any(text in line for line in lines[1:]), text


def test_a_chinese_prompt_gets_chinese_instructions():
    prompt = styled_system_prompt("你是本公司的客服助手。", {"sign_off": "祝好", "max_words": 200})
    assert "“祝好”" in prompt and "200字" in prompt


def test_the_styled_prompt_is_what_the_model_reads_first():
    prompt = styled_system_prompt("You help.", RULES)
    rendered = with_system([Message(role="user", content="Hi")], prompt)
    assert rendered[0] == {"role": "system", "content": prompt}
