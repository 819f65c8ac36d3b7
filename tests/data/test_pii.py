import json
import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from shoptalk.data.pii import (
    PRIORITY,
    PiiSettings,
    card_ok,
    cn_id_ok,
    find_pii,
    iban_ok,
    published_number,
    recurring_contacts,
    redact,
    redact_conversation,
)
from shoptalk.records import Conversation, Message

CASES = Path(__file__).with_name("pii_cases.jsonl")
CJK = re.compile(r"[\u4e00-\u9fff]")


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]


def conversation(*contents: str) -> Conversation:
    roles = ["user", "assistant"] * len(contents)
    return Conversation(
        id="c1",
        messages=[Message(role=r, content=c) for r, c in zip(roles, contents, strict=False)],
        source="chats.jsonl:1",
    )


def test_the_labelled_set_is_big_bilingual_and_has_hard_negatives():
    cases = load_cases()
    spans = [s for c in cases for s in c["spans"]]
    assert len(spans) >= 300
    assert sum(not c["spans"] for c in cases) >= 80
    assert any(CJK.search(c["text"]) for c in cases if c["spans"])
    assert any(not CJK.search(c["text"]) for c in cases if c["spans"])
    assert set(Counter(s["type"] for s in spans)) == set(PRIORITY)  # NER types: test_pii_ner.py


def test_span_precision_and_recall_on_the_labelled_set():
    true_pos = found = labelled = 0
    for case in load_cases():
        gold = {(s["start"], s["end"], s["type"]) for s in case["spans"]}
        got = {(s.start, s.end, s.type) for s in find_pii(case["text"])}
        true_pos, found, labelled = (
            true_pos + len(gold & got),
            found + len(got),
            labelled + len(gold),
        )
    assert true_pos / found >= 0.95
    assert true_pos / labelled >= 0.95


@pytest.mark.parametrize(
    "text",
    [
        "Order ORD-2024-118834 ships on 2024-05-18 at 14:30.",
        "订单号 20240518123456，发票号码 INV-2025-0042。",
        "KX-220 and SKU-44718 cost $1,299.00 (¥3,999).",
        "Update to v2.14.1 or version 1.2.3.4 today.",
        "ISBN 978-3-16-148410-0",
        "Card 4111 1111 1111 1112 failed the check.",  # Luhn fails
        "证件号 110105194912310021 有误",  # MOD 11-2 fails
        "Call extension 555-1234.",  # too short for a phone number
        "Tracking 1Z999AA10123456784, barcode 6901234567892.",
    ],
)
def test_hard_negatives_are_left_alone(text):
    assert find_pii(text) == []


def test_validators_accept_real_test_values():
    assert card_ok("4111111111111111")
    assert not card_ok("4111111111111112")
    assert cn_id_ok("11010519491231002X")
    assert not cn_id_ok("110105194912310021")
    assert iban_ok("GB82 WEST 1234 5698 7654 32")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")


def test_redaction_in_chinese_keeps_the_surrounding_characters():
    text = "请联系13812345678或发邮件到li.ming@example.cn，谢谢！"

    result = redact(text)

    assert result.text == "请联系<PHONE_1>或发邮件到<EMAIL_1>，谢谢！"
    assert result.counts == {"phone": 1, "email": 1}


def test_placeholders_are_consistent_across_the_messages_of_a_record():
    conv = conversation(
        "My e-mail is anna@example.com and my phone +86 138 1234 5678.",
        "Thanks! I will write to anna@example.com and, if needed, to support@example.org.",
        "ANNA@example.com is right; call 13812345678 too.",
    )

    redacted, counts = redact_conversation(conv, PiiSettings())

    assert [m.content for m in redacted.messages] == [
        "My e-mail is <EMAIL_1> and my phone <PHONE_1>.",
        "Thanks! I will write to <EMAIL_1> and, if needed, to <EMAIL_2>.",
        "<EMAIL_1> is right; call <PHONE_1> too.",
    ]
    assert counts == {"email": 4, "phone": 2}
    assert redacted.id == conv.id and redacted.source == conv.source


def test_counts_never_carry_the_values():
    secret = "sk-proj-" + "Ab3" * 16
    conv = conversation(f"key {secret}", "password: Summer2024!")

    redacted, counts = redact_conversation(conv, None)

    dumped = json.dumps(counts) + redacted.model_dump_json()
    assert "Ab3Ab3" not in dumped and "Summer2024" not in dumped
    assert all(isinstance(v, int) for v in counts.values())
    assert counts == {"secret": 2}


def test_each_type_can_be_switched_off():
    text = "Mail li@example.com from 10.0.0.7"

    assert redact(text, PiiSettings(email=False)).text == "Mail li@example.com from <IP_1>"
    assert redact(text, PiiSettings(ip=False)).text == "Mail <EMAIL_1> from 10.0.0.7"


def test_a_misspelt_setting_is_an_error():
    with pytest.raises(ValidationError):
        PiiSettings(emial=False)


def test_the_longest_span_wins_an_overlap():
    text = "DB at postgres://admin:S3cret99@db.example.com:5432/app, QQ 12345678@qq.com"

    spans = [(text[s.start : s.end], s.type) for s in find_pii(text)]

    assert spans == [
        ("postgres://admin:S3cret99@db.example.com:5432", "url_credentials"),
        ("12345678@qq.com", "email"),
    ]


def test_passport_numbers_need_a_keyword_nearby():
    assert [s.type for s in find_pii("护照号码：E12345678")] == ["passport"]
    assert find_pii("Your parcel E12345678 is on its way") == []


def test_secrets_by_prefix_and_by_entropy_next_to_a_keyword():
    token = "q7Zp2LmX9vR4tW8yB1nC6dF3gH5jK0sA"
    assert [s.type for s in find_pii(f"API token: {token}")] == ["secret"]
    assert find_pii(f"Reference {token}") == []  # no keyword: could be any identifier
    assert [s.type for s in find_pii("AKIAIOSFODNN7EXAMPLE")] == ["secret"]


def test_a_private_key_cut_off_before_its_end_line_is_still_redacted():
    text = "see:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7Zp2LmX9vR4\nB1nC6dF3gH5jK0sA\nthanks"

    assert redact(text).text == "see:\n<SECRET_1>\nthanks"


def test_allowed_values_are_kept_and_others_redacted():
    settings = PiiSettings(allow=["@acme.example", "1-800-555-0100"])
    text = "Write to claims@acme.example or call 1-800-555-0100; Anna is anna.berg@gmail.com."
    result = redact(text, settings)
    assert "claims@acme.example" in result.text and "1-800-555-0100" in result.text
    assert "anna.berg@gmail.com" not in result.text and result.counts == {"email": 1}


def mistyped(valid: str) -> str:
    """`valid` with a wrong check digit."""
    return valid[:17] + ("0" if valid[17] != "0" else "1")


@pytest.mark.parametrize(
    "template",
    [
        "身份证号码：{id}，姓名：李明。",
        "身份证{id}",
        "Applicant ID {id} was entered by hand.",
        "ID no. {id}",
        "Customer ID card number {id} was used.",
    ],
)
def test_a_mistyped_resident_id_is_redacted_where_the_text_says_it_is_an_id(template):
    valid = "11010519491231002X"
    assert cn_id_ok(valid) and not cn_id_ok(mistyped(valid))
    text = template.format(id=mistyped(valid))
    result = redact(text)
    assert mistyped(valid) not in result.text and result.counts["cn_id"] == 1
    # A birth date that is not one (13th month) is not an ID, whatever the context says.
    impossible = mistyped(valid)[:10] + "1331" + mistyped(valid)[14:]
    assert redact(template.format(id=impossible)).counts.get("cn_id", 0) == 0


def test_a_mistyped_resident_id_without_an_id_context_stays_as_the_labelled_set_says():
    number = mistyped("11010519491231002X")
    for text in (f"证件号 {number} 校验位错误，请重新输入。", f"Order {number} shipped."):
        assert redact(text).text == text


def test_a_mistyped_id_is_redacted_in_training_data(tmp_path):
    from shoptalk.config import DataSettings
    from shoptalk.data.dataset import prepare_conversations

    number = mistyped("11010519491231002X")
    record = Conversation(
        id="a",
        messages=[
            Message(role="user", content=f"我的身份证号是{number}，能查订单吗？"),
            Message(role="assistant", content="可以，请稍等。"),
        ],
        source="chats.jsonl:1",
    )
    counts: Counter[str] = Counter()
    (kept,), _, _ = prepare_conversations([record], DataSettings(), counts)
    assert number not in kept.messages[0].content and counts["cn_id"] == 1


def test_a_number_one_document_publishes_as_a_line_is_the_organizations():
    texts = {
        "complaints.md": "Refer it to the Ombudsman, free to use: 1-800-555-0199.",
        "it.md": "Call the IT service desk on 555-201-7789 at any time.",
        "hr.md": "客服热线：021-61234567",
        "case.md": "Jane asked us to call her at 555-201-7788.",
        "chat.md": "Reach me on my mobile line: 555-201-7790",
        "note.md": "张经理手机 13812345678",
    }
    assert recurring_contacts(texts) == ["021-61234567", "1-800-555-0199", "555-201-7789"]


def test_toll_free_numbers_are_told_from_personal_ones():
    for number in (
        "1-800-555-0199",
        "(888) 555-0100",
        "+1 877 555 0100",
        "400-820-8820",
        "+44 800 123 4567",
    ):
        assert published_number(number, 0, len(number)), number
    for number in ("555-201-7788", "+44 20 7946 0123", "13812345678", "1-810-555-0100"):
        assert not published_number(number, 0, len(number)), number
