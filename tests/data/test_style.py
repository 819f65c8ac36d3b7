"""Style material: guides written in different hands are recognized and read the same way."""

from shoptalk.data.style import (
    StyleRules,
    addressee,
    copies_message,
    extract_rules,
    for_channel,
    greeting_for,
    is_style_guide,
    merge,
    problems,
    recipient,
    reference_in,
    reference_line,
    repair,
    rules_from,
    sentences,
)
from shoptalk.records import Chunk

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


# A guide laid out as a numbered structure with bold labels, a two-line sign-off, a table of
# phrases never to write, a fallback greeting, a contact line and an example reference.
GUIDE_EN_STRUCTURED = """# Writing to our clients

## Every reply

1. **Greeting.** Always "Hello" followed by the client's first name and a comma. If the
name is not known, write "Hello there,".
2. **Reference.** Always quote the ticket number in the first paragraph, for example "Your ticket is HX-4410."
3. **Contact.** Always include this line: "You can reach us any weekday at 0800 555 0199."
4. **Sign-off.** End with two lines: "All the best," and then "The Harbor Desk".

## Words we avoid

| Never write | Write instead |
|---|---|
| "Unfortunately" | What we can do |
| "As per policy" or "per policy" | The reason in plain words |
| Hi | Hello |
"""

GUIDE_ZH_STRUCTURED = """# 客户回复写作规范

1. **称呼。** 统一使用“尊敬的”加客户姓名，例如“尊敬的王女士：”。不知道姓名时写“尊敬的客户：”。
2. **编号。** 回复第一段务必注明工单号，例如“您的工单号是GD-2024-0012。”
3. **联系方式。** 每封回复必须包含这句话：“如有疑问，请致电400-100-2000。”
4. **落款。** 结尾落款为两行：“祝好，”和“客户服务中心”。

| 禁用语 | 替代说法 |
|---|---|
| “没办法” | 说明我们能做什么 |
"""


def test_a_structured_guide_gives_its_frame_lines_and_table():
    r = extract_rules(GUIDE_EN_STRUCTURED)
    assert r.greeting == "Hello {first name}," and r.greeting_fallback == "Hello there,"
    assert r.sign_off == "All the best,\nThe Harbor Desk"
    assert r.forbidden == ["Unfortunately", "As per policy", "per policy", "Hi"]
    assert r.lines == ["You can reach us any weekday at 0800 555 0199."]
    assert r.reference_form == "Your ticket is {reference}." and "reference" in r.required
    zh = extract_rules(GUIDE_ZH_STRUCTURED)
    assert zh.greeting == "尊敬的{姓名}：" and zh.greeting_fallback == "尊敬的客户："
    assert zh.sign_off == "祝好，\n客户服务中心" and zh.forbidden == ["没办法"]
    assert zh.lines == ["如有疑问，请致电400-100-2000。"]
    assert zh.reference_form == "您的工单号是{reference}。"


# A guide whose contact line is a block quote, whose fallback greeting follows "If we don't
# know", and whose table notes when a phrase is forbidden and lists alternatives.
GUIDE_EN_BLOCKS = """## Greeting

**Greeting:** always start with "Hi" and the first name, e.g. "Hi Ana,". If we don't know
the first name, write "Hi," on its own. Never use "Dear Sir".

## Contact line

Every reply must include this line, word for word, before the sign-off:

> Questions? Call our help desk on 0800 555 0101, weekdays 9am to 5pm.

For example, a reply might end:

> We will write again within five working days of today.

| Never write | Write instead |
|---|---|
| Member (when writing to the member) | you |
| Your request was refused / declined | We can't do this |
"""


def test_a_block_quoted_line_a_negated_condition_and_table_notes():
    r = extract_rules(GUIDE_EN_BLOCKS)
    assert r.greeting == "Hi {first name}," and r.greeting_fallback == "Hi,"
    assert "Hi," not in r.forbidden and "Dear Sir" in r.forbidden
    # The rule's block is a line every reply carries; the example's block is not.
    assert r.lines == ["Questions? Call our help desk on 0800 555 0101, weekdays 9am to 5pm."]
    assert r.forbidden[:3] == [
        "Member",
        "Your request was refused",
        "Your request was declined",
    ]


def test_a_sentence_length_is_no_reply_length_and_a_phrase_is_forbidden_once():
    r = extract_rules(
        'Aim for sentences of 20 words or fewer. Never write "Unfortunately". '
        'Avoid "unfortunately" and "Please note".'
    )
    assert r.max_words is None
    assert r.forbidden == ["Unfortunately", "Please note"]
    assert extract_rules("Keep every reply under 120 words.").max_words == 120


def test_a_reference_form_quoted_mid_sentence_opens_a_sentence():
    rules = StyleRules(reference_form="your claim reference {reference}")
    assert reference_line(rules, "AB-1") == "Your claim reference AB-1."


def test_alternatives_are_one_sign_off_not_two_lines():
    r = extract_rules('Sign off with "Best regards" or "Kind regards".')
    assert r.sign_off == "Best regards"


def test_a_repaired_draft_greets_by_name_quotes_the_case_and_ends_once():
    r = extract_rules(GUIDE_EN_STRUCTURED)
    draft = (
        "Hi Maria,\nUnfortunately, the card fee is $5 [1]. This is per policy.\n"
        "All the best,\nHarbor"
    )
    assert problems(draft, r, name="Maria Lopez", reference="HX-9000")
    fixed = repair(draft, r, name="Maria Lopez", reference="HX-9000")
    assert fixed == (
        "Hello Maria,\n\nYour ticket is HX-9000. The card fee is $5 [1]. "
        "You can reach us any weekday at 0800 555 0199.\n\nAll the best,\nThe Harbor Desk"
    )
    assert problems(fixed, r, name="Maria Lopez", reference="HX-9000") == []
    assert repair("Your card is on its way.", r).startswith("Hello there,\n\n")
    zh = extract_rules(GUIDE_ZH_STRUCTURED)
    fixed_zh = repair("王女士您好：\n没办法，退款需要3个工作日[1]。", zh, "王芳", "GD-2025-0031")
    assert fixed_zh == (
        "尊敬的王芳：\n\n您的工单号是GD-2025-0031。退款需要3个工作日[1]。"
        "如有疑问，请致电400-100-2000。\n\n祝好，\n客户服务中心"
    )


def test_a_forbidden_word_is_matched_as_a_word():
    r = StyleRules(forbidden=["Hi"])
    assert problems("This is which.", r) == []
    assert problems("Hi there.", r) == ["uses forbidden 'Hi'"]


def test_the_customers_name_and_case_number_come_from_their_message():
    assert addressee("Hello, this is Maria Lopez. I was charged twice.") == "Maria Lopez"
    assert addressee("hi its James Whitaker, my card was stolen") == "James Whitaker"
    assert (
        addressee("The teller was rude. - Aisha Rahman, reference RCU-2025-0233") == "Aisha Rahman"
    )
    assert addressee("Can you e-mail my balance? Thanks, Mark Feldman") == "Mark Feldman"
    assert addressee("The ATM kept my card. - a frustrated member") == ""
    assert addressee("我是李明，上周挂号多收了20元。") == "李明"
    assert addressee("挂号费多收了，请退还。——张伟") == "张伟"
    assert reference_in("My case number is RCU-2024-1187. Can you refund it?") == "RCU-2024-1187"
    assert reference_in("投诉编号KN-2025-0031，请处理。") == "KN-2025-0031"
    assert reference_in("我的工单号 20240518 还没处理") == "20240518"
    assert reference_in("Call me at 1-800-555-0100.") == ""


def test_every_rule_read_from_a_guide_reaches_the_projects_rules():
    # rules_from merges each guide's rules: a rule merge() does not carry was read and lost
    # (the required line, the fallback greeting and the reference form were, in builds).
    chunk = Chunk(id="g", text=GUIDE_EN_STRUCTURED, source="docs/guide.md", headings=["Writing"])
    built, used = rules_from([], [chunk])
    read = extract_rules(GUIDE_EN_STRUCTURED)
    assert used == {"docs/guide.md": "heading about writing: 'Writing'"}
    assert built.model_dump(exclude={"sources", "files"}) == read.model_dump(
        exclude={"sources", "files"}
    )
    assert built.files == ["docs/guide.md"]  # whose passages a draft does not read


def test_a_rule_that_opens_a_chunk_keeps_its_label():
    # Chunks of one guide: the second opens with its label; joined onto the first chunk's
    # last line it lost it, and the fallback greeting ("If we don't know the name") with it.
    first = Chunk(id="a", text='# Writing guide\n\nSay "claim", not "case".', source="g.md")
    second = Chunk(
        id="b",
        text='**Greeting:** start with "Hi" and the first name. If we don\'t know the name, '
        'write "Hi there," instead.',
        source="g.md",
    )
    built, _ = rules_from([], [first, second])
    assert built.greeting == "Hi {first name}," and built.greeting_fallback == "Hi there,"


# A guide with a section per situation: rules that hold for one kind of reply only.
GUIDE_SITUATIONS = """# Writing to our customers

Always start with "Hi {first name}," and end with "Best wishes,".

## When things are hard

### Serious illness

When a customer tells us they have been diagnosed with a serious illness:

- Start with "I'm sorry to hear about your diagnosis." before anything else.
- Give the **Care Team** line: 0800 555 0177 (weekdays 9am to 6pm).
- Remind them that their payments can be paused for 90 days.
- Never write "unfortunately"; do not mention late fees, upgrades or any new offer.

### Refused refunds

If we cannot refund an order:

- Tell the customer they can ask for a second review.

## Sign-off

Sign every reply with the team's name.
"""

GUIDE_SITUATIONS_ZH = """# 客服话术规范

回复以“您好，{姓名}：”开头。

### 丧亲

如果客户告知家人去世时：

- 以“请节哀，我们深表慰问。”开头。
- 提供关怀热线：400-800-1234（工作日9:00-18:00）。
- 告知客户他们的保障继续有效。
"""


def test_a_situations_rules_hold_for_it_alone():
    r = extract_rules(GUIDE_SITUATIONS)
    illness, refunds = r.situations
    assert illness.when == (
        "Serious illness. When a customer tells us they have been diagnosed with a serious illness"
    )
    assert illness.opening == "I'm sorry to hear about your diagnosis."
    assert illness.lines == [
        "Care Team line: 0800 555 0177 (weekdays 9am to 6pm).",
        "Your payments can be paused for 90 days.",
    ]
    assert illness.forbidden == ["unfortunately", "late fees", "upgrades", "new offer"]
    assert refunds.when == "Refused refunds. If we cannot refund an order"
    assert refunds.lines == ["You can ask for a second review."]
    # Not rules for every reply: the general greeting stays, their lines are theirs; a
    # quoted phrase they forbid is wording, forbidden everywhere, a topic ("late fees") not.
    assert r.greeting == "Hi {first name}," and r.lines == [] and r.forbidden == ["unfortunately"]
    zh = extract_rules(GUIDE_SITUATIONS_ZH).situations[0]
    assert zh.when == "丧亲. 如果客户告知家人去世时"
    assert zh.opening == "请节哀，我们深表慰问。"
    assert zh.lines == ["关怀热线：400-800-1234（工作日9:00-18:00）。", "您的保障继续有效。"]


def test_a_section_for_every_reply_is_no_situation():
    r = extract_rules(
        '## Greeting\n\nWhen writing to customers:\n\n- Always start with "Dear {name},".\n'
    )
    assert r.situations == [] and r.greeting == "Dear {name},"
    zh = extract_rules("## 称呼\n\n当给客户回复时：\n\n- 回复以“尊敬的客户：”开头。\n")
    assert zh.situations == [] and zh.greeting == "尊敬的客户："


def test_do_not_mention_lists_what_not_to_mention():
    r = extract_rules(
        "### Bereavement\n\nWhen a customer tells us someone has died:\n\n"
        "- Do not mention renewals, add-ons or any sales offer.\n"
    )
    assert r.situations[0].forbidden == ["renewals", "add-ons", "sales offer"]


def test_a_draft_in_a_situation_opens_with_its_sentence_and_carries_its_lines():
    rules = extract_rules(GUIDE_SITUATIONS)
    situation = rules.situations[0]
    draft = "Unfortunately, late fees apply. Your plan renews in May [1]."
    fixed = repair(draft, rules, "Ana Silva", "", situation)
    assert fixed.startswith("Hi Ana,\n\nI'm sorry to hear about your diagnosis. Your plan")
    assert fixed.endswith("(weekdays 9am to 6pm). Your payments can be paused for 90 days.")
    assert "late fees" not in fixed and "0800 555 0177" in fixed
    assert problems(fixed, rules, "", "Ana Silva", "", situation) == []
    # Merged with another guide, the situations are kept.
    assert merge(StyleRules(), rules).situations == rules.situations


def test_a_line_added_under_a_condition_is_a_situation_not_every_replys():
    guide = (
        "## Contact line\n\nEvery reply must end with our number.\n\n"
        'For anything to do with an open claim, add: "For urgent claim help, call our Claims '
        'Line on 0800 555 0142."\n\nNever write "Dear Customer".\n'
    )
    rules = extract_rules(guide)
    assert [(s.when, s.lines) for s in rules.situations] == [
        (
            "anything to do with an open claim",
            ["For urgent claim help, call our Claims Line on 0800 555 0142."],
        )
    ]
    assert not any("Claims Line" in line for line in rules.lines)
    assert "Dear Customer" in rules.forbidden
    zh = extract_rules(
        "## 规则\n\n- 涉及理赔的回复，加上：“如需紧急理赔帮助，请拨打 400-820-1234。”\n"
    )
    assert [(s.when, s.lines) for s in zh.situations] == [
        ("理赔", ["如需紧急理赔帮助，请拨打 400-820-1234。"])
    ]


# A guide that states its forms on the line below the rule (block quotes, a list of quoted
# phrases) and its situations as bold-labelled paragraphs under one heading.
GUIDE_LAYOUTS = """## Sign-off

End every reply with this exact line, on its own:

> Warm wishes, the Fernhill Members Team

## Reference

Quote the case reference on the first line after the greeting, in this exact format:

> Your reference: FM-2025-00017

## Phrases never to use

The following phrases must never appear in a reply:

- "as per our terms"
- "no worries"

## Situations

**A payment has failed.** Thank them for telling us, and always include this line:

> We have paused any late fees while we sort this out with you.

Do not say "your card was declined".

**The member is unhappy with a delay.** Apologise first. Use this line:

> We are sorry for the wait, and thank you for bearing with us.

**Tone.** Keep it warm.
"""


def test_forms_below_their_rule_and_bold_labelled_situations():
    r = extract_rules(GUIDE_LAYOUTS)
    assert r.sign_off == "Warm wishes, the Fernhill Members Team"
    assert r.reference_form == "Your reference: {reference}"
    assert [
        f for f in r.forbidden if f in {"as per our terms", "no worries", "your card was declined"}
    ] == ["as per our terms", "no worries", "your card was declined"]
    # A situation's line is its own, not every reply's; a topic label ("Tone.") is no situation.
    assert r.lines == []
    assert [(s.when, s.lines) for s in r.situations] == [
        ("A payment has failed", ["We have paused any late fees while we sort this out with you."]),
        (
            "The member is unhappy with a delay",
            ["We are sorry for the wait, and thank you for bearing with us."],
        ),
    ]


def test_a_quote_is_one_sentence_and_before_the_sign_off_is_no_sign_off():
    assert sentences('Include: "Questions? Call us." Then stop.') == [
        'Include: "Questions? Call us."',
        "Then stop.",
    ]
    r = extract_rules(
        'Every reply must include, before the sign-off: "Questions? Call 0800 555 0101."'
    )
    assert r.sign_off == "" and r.lines == ["Questions? Call 0800 555 0101."]


def test_a_greeting_for_a_customer_whose_name_is_not_known():
    said = 'Always open with "Dear" followed by the member\'s first name and a comma.'
    r = extract_rules(said)
    assert (r.greeting, r.greeting_fallback) == ("Dear {first name},", "Dear Member,")
    assert greeting_for(r, "") == "Dear Member," and greeting_for(r, "Ana Ruiz") == "Dear Ana,"
    # The guide's own fallback wins; a greeting without a name needs none.
    own = extract_rules(said + ' If we do not know the name, open with "Hello,".')
    assert own.greeting_fallback == "Hello,"
    assert extract_rules('Always open with "Good morning".').greeting_fallback == ""


GUIDE_SECTIONS = """# Member Letters Standard

## 1. Salutation

- The first line is always "Dear", followed by the title and surname and a comma.
- Use "Mr." or "Ms.". If the member signs with "Prof.", use "Prof.".
- If the name is unknown, write exactly "Dear Fernhill member,".

## 2. Closing

- The last sentence before the sign-off must be exactly: "Call us on 0800 555 0134 with any questions."
- The sign-off is "Yours sincerely," then "The Fernhill Members Team" on the line below.

## 3. Codes

1. **Tracking Numbers:** always write them in full, for example TRK-2025-0093.

## 4. Handling specific situations

### 4.1 Lost parcel

1. Include the sentence "We have opened a search with the courier." exactly once.
2. Never write "misplaced".

### 4.2 Refund refused

- Include exactly this sentence: "You can ask for this decision to be reviewed within 30 days."

## 5. Email subject

Start the subject line with the reference in brackets, for example "[TRK-2025-0093] Your parcel".
"""


def test_a_guides_headings_say_what_its_rules_are_about():
    r = extract_rules(GUIDE_SECTIONS)
    # Under "Salutation" a sentence without the word is about the greeting; a member who
    # signs with a title is no sign-off; a subject line is no greeting.
    assert (r.greeting, r.greeting_fallback) == (
        "Dear {title} {last name},",
        "Dear Fernhill member,",
    )
    assert r.sign_off == "Yours sincerely,\nThe Fernhill Members Team"
    assert r.lines == ["Call us on 0800 555 0134 with any questions."]
    # Sub-headings under a heading about situations are situations; a label in title case
    # ("Tracking Numbers:") names a thing, not a situation.
    assert [(s.when, s.lines) for s in r.situations] == [
        ("Lost parcel", ["We have opened a search with the courier."]),
        ("Refund refused", ["You can ask for this decision to be reviewed within 30 days."]),
    ]
    assert "misplaced" in r.forbidden


def test_under_a_greeting_heading_only_a_salutation_is_the_greeting():
    r = extract_rules(
        '## Addressing customers\n\nRefer to them as "members", never "clients".\n\n'
        'Open with "Hello" and their first name.'
    )
    assert r.greeting == "Hello {first name}," and "clients" in r.forbidden


def test_a_drafting_request_names_who_the_reply_is_to():
    r = extract_rules(GUIDE_SECTIONS)
    name = addressee("Write to Ms. Ada Okafor about her lost parcel 5521.")
    assert name == "Ms. Ada Okafor" and greeting_for(r, name) == "Dear Ms. Okafor,"
    assert addressee("Prof. Lena Ward's refund was refused. Draft the reply.") == "Prof. Lena Ward"
    assert greeting_for(r, "Ada Okafor") == "Dear Ada Okafor,"  # no title given: the full name
    # A title the guide forbids gives way to the neutral one.
    banned = r.model_copy(update={"forbidden": [*r.forbidden, "Mrs."]})
    assert greeting_for(banned, "Mrs. Ada Okafor") == "Dear Ms. Okafor,"


def test_a_guide_read_from_its_chunks_keeps_headings_without_text_of_their_own():
    chunks = [
        Chunk(id=f"g{i}", text=text, source="docs/letters.md", headings=headings)
        for i, (headings, text) in enumerate(
            [
                (["Letters", "Closing"], 'End with "Yours sincerely,".'),
                (["Letters", "Situations", "Lost parcel"], 'Include "We have opened a search."'),
                (
                    ["Letters", "Situations", "Refund refused"],
                    'Include "You may ask for a review."',
                ),
            ]
        )
    ]
    rules, _ = rules_from(chunks, [])
    assert [s.when for s in rules.situations] == ["Lost parcel", "Refund refused"]
    assert rules.lines == []


GUIDE_FORMS = """# Letters to customers

## Greeting

- Always open with "Dear", followed by the title and last name.

## Sign-off

- The sign-off is "Best wishes," on its own line, then your full name, then "Orchard Care" below.

## Numbers

1. **Work orders:** always write "WO-" and the six-digit number, for example WO-120044.
2. **Dates:** day, month name and year, for example "3 March 2025". Never write 03/03/2025.
"""


def test_a_guides_value_forms_and_signer_line_shape_the_repaired_draft():
    rules = extract_rules(GUIDE_FORMS)
    assert [(f.kind, f.example) for f in rules.formats] == [
        ("code", "WO-120044"),
        ("date", "3 March 2025"),
    ]
    draft = (
        "Your work order 120044 is booked for 14/04/2025. We will call you. We will call you. "
        "We will call you. We will ca"
    )
    assert problems(draft, rules, name="Mr. Ian Ward")
    fixed = repair(draft, rules, name="Mr. Ian Ward")
    # The values as the guide writes them, the loop said once, the sender left to sign.
    assert fixed == (
        "Dear Mr. Ward,\n\nYour work order WO-120044 is booked for 14 April 2025. We will call "
        "you.\n\nBest wishes,\n[Your name]\nOrchard Care"
    )
    assert not problems(fixed, rules, name="Mr. Ian Ward")
    assert repair(fixed, rules, name="Mr. Ian Ward") == fixed
    # A code of a form the guide gives is the reference a reply quotes, as the guide writes it.
    reference = reference_in(
        "Mr. Ward's work order 120044 is late. Write him an update.", rules.formats
    )
    assert reference == "WO-120044"
    assert problems("We are sorry for the wait.", rules, name="Mr. Ian Ward", reference=reference)
    quoted = repair("We are sorry for the wait.", rules, name="Mr. Ian Ward", reference=reference)
    assert "Your reference number is WO-120044." in quoted


GUIDE_TABLE = """# Writing to customers

Open letters with "Dear [Title] [Last name],".
Close every letter with "Sincerely,".
For deadlines, include the day of the week: "by Friday, March 14, 2025."

| Do not write | Write instead |
|---|---|
| "Delinquent" | "Past due" |
| "Shutoff" or "cut off" | "Service disconnection" |
| "Per our policy" | "Our rules require…" or explain the reason |
| "ASAP" | A specific date, such as "by Friday, March 14, 2025" |
"""


def test_a_forbidden_phrase_the_guide_gives_words_for_is_replaced_not_dropped():
    rules = extract_rules(GUIDE_TABLE)
    # Words to write, not a description of what to do nor a phrase to complete.
    assert rules.instead == {
        "Delinquent": "Past due",
        "Shutoff": "Service disconnection",
        "cut off": "Service disconnection",
    }
    draft = (
        "Hi,\n\nDelinquent accounts face shutoff on 5/2/2025. We offer no plan per our policy."
        "\n\nBest regards,"
    )
    fixed = repair(draft, rules, "Mr. Tomasz Nowak")
    assert fixed == (
        "Dear Mr. Nowak,\n\nPast due accounts face service disconnection on May 2, 2025.\n\n"
        "Sincerely,"
    )
    assert "Per our policy" in rules.forbidden and not problems(fixed, rules, "", "Mr. Nowak")


def test_a_greetings_slots_in_square_brackets_take_the_name_and_a_dated_quote_is_no_line():
    rules = extract_rules(GUIDE_TABLE)
    assert greeting_for(rules, "Ms. Dana Whitfield") == "Dear Ms. Whitfield,"
    # "by Friday, March 14, 2025." shows how a deadline is written: no reply carries it.
    assert rules.lines == []


def test_a_table_cut_in_two_by_chunking_is_read_as_one():
    head = '| Never write | Write instead |\n|---|---|\n| "Cheap" | "Cost-effective" |\n'
    tail = '| "Cheap" | "Cost-effective" |\n| "Denied" / "rejected" | "Not approved" |\n'
    other = '| Term | Meaning |\n|---|---|\n| "RMA" | "Return authorization" |\n'
    rules = merge(
        StyleRules(), extract_rules(f"# Tone\n\n{head}\n{tail}\nTerms we use:\n\n{other}")
    )
    assert rules.instead == {
        "Cheap": "Cost-effective",
        "Denied": "Not approved",
        "rejected": "Not approved",
    }


def test_a_drafts_copied_source_paths_are_no_words_of_a_reply():
    rules = extract_rules(GUIDE_TABLE)
    draft = (
        "Hi,\n\n(docs/billing.md#10. Reconnection) The fee is $125.00 (faq.csv:3).\n\nBest regards,"
    )
    fixed = repair(draft, rules)
    assert "The fee is $125.00" in fixed and ".md" not in fixed and "faq.csv" not in fixed


def test_a_signature_rule_adds_the_signers_line_and_the_quoted_ones_to_the_sign_off():
    guide = (
        '## Sign-offs\n\n- Letters close with **"Sincerely,"**.\n- Every message must be signed '
        'with your **full name, job title, "Tidewater Water," and a phone number**.\n'
    )
    rules = extract_rules(guide)
    assert rules.sign_off == "Sincerely,\n{your name}\nTidewater Water"


def test_a_closing_per_channel_is_the_one_of_the_channel_the_request_names():
    guide = (
        '## Sign-offs\n\n- **Letters:** close with **"Sincerely,"**.\n'
        '- **Emails:** close with **"Thank you,"**.\n'
        '- Sign with your full name and "Tidewater Water".\n'
    )
    rules = extract_rules(guide)
    assert rules.channel_closings == {"letter": "Sincerely,", "email": "Thank you,"}
    assert merge(StyleRules(), rules).channel_closings == rules.channel_closings
    emailed = for_channel(rules, "Ms. Ng emailed us about her bill. Write her back.")
    assert emailed.sign_off == "Thank you,\n{your name}\nTidewater Water"
    assert for_channel(rules, "Reply to Mr. Vo about his bill.").sign_off == rules.sign_off
    both = "Printed letter for Ms. Ng, who emailed us twice."
    assert for_channel(rules, both).sign_off == rules.sign_off


def test_the_guides_closing_inside_a_sentence_does_not_cut_the_draft():
    rules = StyleRules(greeting="Dear {name},", sign_off="Thank you,")
    draft = (
        "Dear Ann,\n\nThe repair is done. I would like to thank you for your patience while "
        "we worked.\n\nThank you,\nBo"
    )
    fixed = repair(draft, rules, "Ann Lee")
    assert "I would like to thank you for your patience while we worked." in fixed
    assert fixed.endswith("Thank you,") and fixed.count("Thank you") == 1


def test_forms_in_markdown_code_quotes_are_read_like_quoted_ones():
    rules = extract_rules(
        "# Writing to riders\n\n## Greeting\n\nOpen every email with `Hello [First name],`.\n\n"
        "## Closing\n\nClose every email with `With thanks,`.\n"
    )
    assert (rules.greeting, rules.sign_off) == ("Hello [First name],", "With thanks,")


GUIDE_CHANNEL_TABLES = """# Writing to riders

## Openings

| Situation | Email | Printed letter |
|---|---|---|
| Rider gave a first and last name | `Hello Marcus,` (first name) | `Dear Marcus Hale,` |
| Rider signed with a first name only | `Hello Dana,` | `Dear Dana,` |
| No name, or only a username | `Dear Rider,` | `Dear Rider,` |

## Closings

| Channel | Closing line | Then |
|---|---|---|
| Email | `With thanks,` | Full signature block |
| Printed letter | `Sincerely,` | Full signature block |
"""


def test_greetings_and_closings_are_read_from_tables_per_channel():
    rules = extract_rules(GUIDE_CHANNEL_TABLES)
    assert (rules.greeting, rules.first_name_greeting, rules.greeting_fallback) == (
        "Hello [First name],",
        "Hello [First name],",
        "Dear Rider,",
    )
    assert rules.channel_greetings == {"email": "Hello [First name],", "letter": "Dear [Name],"}
    assert (rules.sign_off, rules.channel_closings) == (
        "With thanks,",
        {"email": "With thanks,", "letter": "Sincerely,"},
    )
    # The first channel is the default; a printed letter gets its own greeting and closing.
    assert greeting_for(rules, "Marcus Hale") == "Hello Marcus,"
    letter = for_channel(rules, "Printed letter to Marcus Hale about his refund.")
    assert (greeting_for(letter, "Marcus Hale"), letter.sign_off) == (
        "Dear Marcus Hale,",
        "Sincerely,",
    )


def test_the_recipient_an_instruction_names_without_a_title():
    assert recipient("Reply to an email from Marcus Hale. He asks about passes.") == "Marcus Hale"
    assert recipient("Reply to Harold Jensen's email.") == "Harold Jensen"
    assert recipient("Email Olivia Brandt back: her wallet turned up.") == "Olivia Brandt"
    assert recipient("Draft a letter to be mailed to Robert Castellano, 18 Birch Lane.") == (
        "Robert Castellano"
    )
    # A company, the adviser's own name, a place: no recipient.
    assert recipient("Kevin from Bayline Plumbing emailed. Answer him.") == ""
    assert recipient("Sign it from me: Priya Nandakumar, ext. 4417.") == ""
    assert recipient("Write him about the move to Port Alder Central Station.") == ""


def test_a_numbered_list_of_what_a_signature_holds_gives_its_lines():
    guide = (
        "# Writing to riders\n\n## Closings\n\nClose every email with `With thanks,`.\n\n"
        "**Every email signature must contain, in this order:**\n\n1. Your full name\n"
        "2. Your job title (for example, Customer Care Specialist)\n"
        '3. `Sable River Transit` — written out in full; "SRT" alone is not enough\n'
        "4. The care number with your extension, written `(555) 318-2200, ext. 4417`\n"
    )
    # The signer's own lines come from whoever signs; an extension shown is an example.
    assert extract_rules(guide).sign_off == "With thanks,\n{your name}\nSable River Transit"
