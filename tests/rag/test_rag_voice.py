"""The retrieval path keeps the assistant's voice: identity, greetings and drafts."""

from __future__ import annotations

from shoptalk.data.style import StyleRules, extract_rules, problems
from shoptalk.modeling.embed import load_embedder
from shoptalk.rag.abstain import DEFAULT_RULE, Abstention
from shoptalk.rag.answer import PASSAGE_INSTRUCTIONS, passage_messages, passage_sources
from shoptalk.rag.select import Passage
from shoptalk.rag.voice import (
    closed_book_messages,
    follow_style,
    frame,
    route,
    signed,
    situation_for,
    verify_reply,
)
from shoptalk.records import Chunk

# The default rule on plain word shares (no corpus: every term weighs alike).
ABSTAIN = Abstention(DEFAULT_RULE, {})

FACT = "Refunds are paid within 14 days of the returned item arriving."
SYSTEM = "You are Wren, the assistant of an invented bakery. Greet with 'Dear {name},'."


def passage(text: str, source: str = "docs/policy.md#Refunds") -> Passage:
    return Passage(text=text, chunk=Chunk(id=source, text=text, source=source), score=1.0)


PASSAGES = [passage(FACT)]


def test_questions_about_the_assistant_are_routed_away_from_the_documents():
    for q in (
        "Who are you?",
        "What is your name?",
        "Hello!",
        "Please introduce yourself.",
        "你是谁？",
        "Who built you?",
        "What can you do?",
        "Am I talking to a real person or a bot?",
        "您是真人还是机器人？",
    ):
        assert route(q) == "assistant", q
    for q in (
        "How long do refunds take?",
        "Can you tell me the refund window?",
        "退款需要多少天？",
        "Who approves a refund over the limit?",
        "Who should I be talking to about a refund?",
    ):
        assert route(q) == "question", q
    for q in (
        "Draft a reply to this customer: 'where is my refund?'",
        "Please write a response to the complaint below.",
        "请起草一封回复邮件给这位客户",
    ):
        assert route(q) == "draft", q


def test_a_question_about_the_assistant_reads_the_system_prompt_not_passages():
    messages = closed_book_messages("Who are you?", SYSTEM)
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[-1] == {"role": "user", "content": "Who are you?"}


def test_the_system_prompt_reaches_the_rag_prompt_and_a_draft_gets_drafting_rules():
    asked = passage_messages("How long do refunds take?", PASSAGES, SYSTEM)
    assert asked[0]["content"].startswith(SYSTEM)
    draft = passage_messages("Draft a reply to a customer asking about refunds.", PASSAGES, SYSTEM)
    assert draft[0]["content"].startswith(SYSTEM)
    assert "sign off" in draft[0]["content"]
    assert PASSAGE_INSTRUCTIONS.split(".")[0] not in draft[0]["content"]


def test_a_repaired_draft_keeps_its_greeting_and_sign_off():
    request = "Draft a reply to a customer asking how long refunds take."
    draft = (
        "Dear Ms Patel,\n\nYour refund will be paid within 30 days [1].\n\n"
        "Kind regards,\nThe support team"
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.status == "repaired"
    assert checked.message.startswith("Dear Ms Patel,")
    assert checked.message.endswith("Kind regards,\nThe support team")
    assert FACT in checked.message and "30 days" not in checked.message
    assert frame(draft) == ("Dear Ms Patel,", "Kind regards,\nThe support team")
    # A draft cut off after "[Your Name]\n[": the "[" is no sign-off to keep.
    assert frame("Dear Ms Patel,\n\nYour refund is paid.\n\n[") == ("Dear Ms Patel,", "")


def test_a_drafts_frame_and_the_customers_own_case_number_are_not_claims():
    # "Ms Patel", "The Acme Care team" and case 88123 are in no passage: the greeting and
    # sign-off state no fact, and the case number is the customer's own.
    request = "Draft a reply to Ms Patel (case 88123), who asks how long refunds take."
    draft = (
        "Dear Ms Patel,\n\nAbout case 88123: your refund is paid within 14 days [1].\n\n"
        "Kind regards,\nThe Acme Care team"
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.status == "verified" and checked.message == draft
    assert checked.unsupported == [] and checked.generated == draft
    # A number neither the passages nor the customer gave is still a claim.
    wrong = draft.replace("88123", "77777")
    checked = verify_reply(request, wrong, PASSAGES, ABSTAIN)
    assert checked.status == "repaired" and checked.unsupported == ["77777"]
    assert "77777" not in checked.message and checked.message.startswith("Dear Ms Patel,")
    # A sign-off stating a value is no frame: it is verified as the body is.
    called = draft.replace("Kind regards,", "Call us on 555-0100,")
    checked = verify_reply(request, called, PASSAGES, ABSTAIN)
    assert checked.status == "repaired" and "555-0100" not in checked.message
    # Outside a draft, the question's values are not the answer's support.
    question = "How long do refunds take for case 88123?"
    answer = "For case 88123, refunds take 14 days [1]."
    assert verify_reply(question, answer, PASSAGES, ABSTAIN).unsupported == ["88123"]


def test_a_draft_may_write_the_customers_numbers_an_answer_only_the_passages():
    # What generation may copy numbers from (modeling.copy_numbers) is what verification reads.
    draft = "Draft a reply to Ms Patel (case 88123), who asks how long refunds take."
    assert passage_sources(PASSAGES, draft) == [f"\n{FACT}", draft]
    assert passage_sources(PASSAGES, "How long do refunds take?") == [f"\n{FACT}"]


def test_a_document_answer_is_repaired_without_a_frame():
    checked = verify_reply("How long do refunds take?", "Within 30 days [1].", PASSAGES, ABSTAIN)
    assert checked.message == f'"{FACT}" [1]'


def test_a_draft_that_echoes_the_customer_is_not_shown_as_the_reply():
    message = "I returned the blender two weeks ago and still have no refund, where is my money"
    request = f"Draft a reply to this customer: '{message}'"
    checked = verify_reply(request, f"Hi,\n\n{message}.\n\nThanks", PASSAGES, ABSTAIN)
    assert message not in checked.message
    assert checked.status in ("repaired", "not_found")


def test_a_draft_that_tells_the_advisers_account_is_no_echo_and_needs_no_passage():
    request = (
        "Mr. Ito's parcel 4410 was due on 3 June and will now arrive on 6 June because the "
        "van broke down. Write him an update."
    )
    draft = "Dear Mr. Ito,\n\nYour parcel 4410 will now arrive on 6 June.\n\nKind regards,\nAnna"
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.status == "verified" and "will now arrive on 6 June" in checked.message
    # A value neither the request nor a passage holds is still no fact.
    wrong = draft.replace("6 June", "9 June")
    assert verify_reply(request, wrong, PASSAGES, ABSTAIN).status != "verified"


def test_a_drafts_sentences_about_the_customer_in_the_third_person_are_not_shown():
    request = "Mr. Ito's parcel 4410 will now arrive on 6 June. Write him an update."
    draft = (
        "Dear Mr. Ito,\n\nYour parcel 4410 will now arrive on 6 June. The customer asked for "
        "a refund and we agreed. He is happy.\n\nKind regards,\nAnna"
    )
    shown = verify_reply(request, draft, PASSAGES, ABSTAIN).message
    assert (
        shown
        == "Dear Mr. Ito,\n\nYour parcel 4410 will now arrive on 6 June.\n\nKind regards,\nAnna"
    )
    # Nothing but such sentences: the request's account is the body.
    only = "Dear Mr. Ito,\n\nThe customer wants parcel 4410.\n\nKind regards,\nAnna"
    assert (
        "Your parcel 4410 will now arrive on 6 June."
        in verify_reply(request, only, PASSAGES, ABSTAIN).message
    )


# --- the style post-check -----------------------------------------------------------------

GUIDE_RULES = {
    "greeting": "Hello {first name},",
    "sign_off": "Warm wishes, the Member Desk",
    "forbidden": ["no worries"],
}


def test_a_draft_missing_the_frame_gets_the_guides_greeting_and_sign_off():
    request = "Draft a reply to a customer asking how long refunds take."
    fixed = follow_style(
        request, "No worries, refunds take 14 days [1]. We are on it.", GUIDE_RULES
    )
    assert fixed.startswith("Hello")
    assert fixed.endswith("Warm wishes, the Member Desk")
    assert "no worries" not in fixed.lower() and "We are on it." in fixed
    assert problems(fixed, StyleRules.model_validate(GUIDE_RULES)) == []


def test_a_repaired_draft_then_styled_keeps_facts_and_frame():
    request = "Draft a reply to a customer asking how long refunds take."
    draft = "Hello Sam,\n\nYour refund is paid within 30 days [1].\n\nWarm wishes, the Member Desk"
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    shown = follow_style(request, checked.message, GUIDE_RULES)
    assert shown.startswith("Hello Sam,") and shown.endswith("Warm wishes, the Member Desk")
    assert FACT in shown and "30 days" not in shown


def test_the_post_check_leaves_questions_and_projects_without_rules_alone():
    answer = "No worries, refunds take 14 days [1]."
    assert follow_style("How long do refunds take?", answer, GUIDE_RULES) == answer
    assert follow_style("Draft a reply about refunds.", answer, {}) == answer
    assert follow_style("Draft a reply about refunds.", answer, None) == answer


def test_a_styled_draft_greets_the_customer_by_name_and_quotes_their_case_number():
    rules = StyleRules(
        greeting="Dear {first name},",
        greeting_fallback="Dear Member,",
        sign_off="Warm regards,\nThe Care Team",
        required=["reference"],
        reference_form="Your case reference is {reference}.",
    ).model_dump()
    request = 'Draft a reply to this member: "My refund is late. Maria Lopez, case RC-2024-1187"'
    shown = follow_style(request, "Refunds are paid within 14 days [1].", rules)
    assert shown == (
        "Dear Maria,\n\nYour case reference is RC-2024-1187. Refunds are paid within 14 days "
        "[1].\n\nWarm regards,\nThe Care Team"
    )
    unsigned = 'Draft a reply to this member: "My refund is late."'
    assert follow_style(unsigned, "Refunds take 14 days [1].", rules).startswith("Dear Member,")
    # "Not in the documents" is for the person drafting: no frame makes it a reply.
    not_found = "I could not find this in the documents. (Searched: docs/policy.md.)"
    assert follow_style(request, not_found, rules) == not_found


SITUATION_GUIDE = """Always start with "Hi {first name}," and sign off with "Best wishes,".

### Loss in the family

When a customer lets us know that someone in their family has died:

- Open with "We're very sorry for your loss." before anything else.
- Give the Care line: 0800 555 0177 (weekdays 9am to 6pm).

### Refused refunds

If we have to refuse a refund:

- Tell the customer they can ask for a second review.
"""


def test_a_draft_about_a_customers_situation_follows_its_rules():
    """By meaning, with the real embedding model: "passed away" is the guide's "has died"."""
    rules = extract_rules(SITUATION_GUIDE)
    embedder = load_embedder("default")
    sad = 'Draft a reply to this customer: "My mother passed away on Sunday. What happens to her account? - Jo Park"'
    shown = follow_style(sad, "Accounts can be closed online [1].", rules.model_dump(), embedder)
    assert shown.startswith("Hi Jo,\n\nWe're very sorry for your loss. Accounts can be closed")
    assert "0800 555 0177" in shown
    # Another message gets the general rules only; our own decisions are not read from a
    # customer's words ("you refused my refund" is not "if we have to refuse a refund").
    for message in ("Where is my parcel? It was due on Monday.", "Why did you refuse my refund?"):
        plain = follow_style(
            f'Draft a reply to this customer: "{message}"',
            "Parcels arrive in 3 days [1].",
            rules.model_dump(),
            embedder,
        )
        assert "sorry for your loss" not in plain and "second review" not in plain
        assert situation_for(f'Draft a reply: "{message}"', rules, embedder) is None
    # The message quoted in single quotes after a colon, apostrophes inside, is read alone.
    single = "Draft a reply to a customer who says: 'My mother passed away on Sunday, what's next?'"
    assert situation_for(single, rules, embedder) == situation_for(sad, rules, embedder)
    # Without an embedder (or without situations) no situation is told.
    assert situation_for(sad, rules, None) is None
    assert "sorry for your loss" not in follow_style(
        sad, "Accounts close online [1].", rules.model_dump()
    )


def test_a_situation_of_our_doing_is_read_from_the_advisers_instruction():
    """With the real embedding model: "explaining that we can't refund" is the guide's "If we
    have to refuse a refund"; the same words without the negation, or in the customer's
    mouth, are not."""
    rules = extract_rules(SITUATION_GUIDE)
    embedder = load_embedder("default")
    refused = (
        "Draft a reply to this customer explaining that we can't refund order 4471 because "
        "the item was used"
    )
    shown = follow_style(refused, "Refunds need unused items [1].", rules.model_dump(), embedder)
    assert "You can ask for a second review." in shown
    paid = "Draft a reply to this customer explaining that we have refunded order 4471 in full"
    assert situation_for(paid, rules, embedder) is None
    quoted = 'Draft a reply to this customer: "You refused my refund for order 4471!"'
    assert situation_for(quoted, rules, embedder) is None


def test_the_customers_words_and_the_advisers_account_each_tell_a_situation():
    """With the real embedding model: the customer's grief is in their words, the refused
    refund in the adviser's account around them; the reply follows both."""
    rules = extract_rules(SITUATION_GUIDE)
    embedder = load_embedder("default")
    request = (
        "Jo Park wrote: 'My mother passed away on Sunday, please close her account.' "
        "We can't refund her last order 4471 because the item was used. Draft a reply."
    )
    both = situation_for(request, rules, embedder)
    assert both is not None and both.opening == "We're very sorry for your loss."
    assert set(both.lines) == {
        "You can ask for a second review.",
        "Care line: 0800 555 0177 (weekdays 9am to 6pm).",
    }


def test_a_repaired_draft_drops_the_models_own_closing_greeting_and_placeholders():
    request = "Draft a reply to a customer asking how long refunds take."
    draft = (
        "Dear [Customer Name],\n\nRefunds are paid within 14 days [1].\n\nBest regards,\n"
        "[Your Name]\n[Your Company's Address]"
    )
    fixed = follow_style(request, draft, GUIDE_RULES)
    assert fixed == (
        "Hello,\n\nRefunds are paid within 14 days [1].\n\nWarm wishes, the Member Desk"
    )
    # Cut off after "[Your Title]\n[": the lone "[" goes too.
    cut = draft.replace("[Your Company's Address]", "[Your Title]\n[")
    assert follow_style(request, cut, GUIDE_RULES) == fixed


def test_a_drafts_sentence_with_an_invented_value_is_dropped_not_the_draft():
    request = (
        "Mr. Ito's parcel 4410 was due on 3 June and will now arrive on 6 June because the "
        "van broke down. Write him an update."
    )
    draft = (
        "Dear Mr. Ito,\n\nYour parcel 4410 will now arrive on 6 June. As a thank you, we "
        "refund $15 of the delivery fee.\n\nKind regards,\nAnna"
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.status == "repaired" and checked.unsupported == ["15"]
    assert checked.message == (
        "Dear Mr. Ito,\n\nYour parcel 4410 will now arrive on 6 June.\n\nKind regards,\nAnna"
    )
    # Nothing left that tells the request or a passage: not the best passage quoted (a
    # refund rule is no news about a parcel) but the request's account, told to him.
    invented = draft.replace("Your parcel 4410 will now arrive on 6 June. ", "")
    shown = verify_reply(request, invented, PASSAGES, ABSTAIN)
    assert shown.status == "repaired" and FACT not in shown.message and shown.quote is None
    assert shown.message == (
        "Dear Mr. Ito,\n\nYour parcel 4410 was due on 3 June and will now arrive on 6 June "
        "because the van broke down.\n\nKind regards,\nAnna"
    )


def test_a_draft_that_lost_the_requests_value_gets_the_told_sentence():
    request = (
        "Mrs. Becker asks about the credit for her return. Our records show a credit of "
        "$1284.5 was issued on 07/03/2024. Draft the reply."
    )
    draft = (
        "Dear Mrs. Becker,\n\nRefunds are paid within 14 days of the returned item arriving "
        "[1].\n\nKind regards,\nAnna"
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.message == (
        "Dear Mrs. Becker,\n\nOur records show a credit of $1284.5 was issued on 07/03/2024. "
        "Refunds are paid within 14 days of the returned item arriving [1].\n\nKind regards,"
        "\nAnna"
    )
    # Told in other forms ("$1,284.50", "July 3, 2024"): nothing is added.
    told = draft.replace("Refunds", "A credit of $1,284.50 was issued on July 3, 2024. Refunds")
    assert verify_reply(request, told, PASSAGES, ABSTAIN).message == told


def test_a_drafts_placeholders_are_no_values_to_verify():
    request = "Draft a reply to a customer asking how long refunds take."
    draft = (
        "Dear [Customer Name],\n\nRefunds are paid within 14 days [1]. I am [Your Name], "
        "[Your Position].\n\nBest regards,\n[Your Name]"
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.status == "verified" and checked.unsupported == []


def test_a_draft_is_signed_as_the_adviser_asks_and_greets_the_customer_not_the_adviser():
    slot = "Dear Ms. Ng,\n\nDone.\n\nKind regards,\n[Your name]\nThe Desk"
    assert signed(slot, ["Jo Pike", "ext. 31"]) == (
        "Dear Ms. Ng,\n\nDone.\n\nKind regards,\nJo Pike\next. 31\nThe Desk"
    )
    assert signed("Dear Ms. Ng,\n\nDone.\n\nSincerely,", ["Jo Pike"]).endswith(
        "Sincerely,\nJo Pike"
    )
    request = (
        "Ms. Dana Ng emailed: 'Can I pay later? Thanks, Dana'. Write her back. "
        "I'm Tasha Greene, ext 3105."
    )
    rules = {"greeting": "Dear [Title] [Last name],", "sign_off": "Sincerely,"}
    shown = follow_style(request, "Hi,\n\nYes, a plan is possible.", rules)
    assert shown == "Dear Ms. Ng,\n\nYes, a plan is possible.\n\nSincerely,\nTasha Greene\next 3105"


MASKING_GUIDE = (
    "# Writing to customers\n\n"
    'Open letters with "Dear [Title] [Last name],". Close every letter with "Sincerely,".\n\n'
    "In emails and text messages, never write the full account number. Show only the last "
    'four digits: "your account ending in 1307."\n'
)


def test_a_draft_names_the_account_masked_unless_the_request_is_for_a_printed_letter():
    rules = extract_rules(MASKING_GUIDE).model_dump()
    draft = "Dear Mr. Haddad,\n\nWe booked a meter test on June 10, 2025.\n\nSincerely,"
    request = "Mr. Haddad (acct 210-55817-03) emailed about his bill. Reply to him."
    shown = follow_style(request, draft, rules)
    assert "This is about your account ending in 1703. We booked a meter test" in shown
    assert "55817" not in shown and shown.startswith("Dear Mr. Haddad,\n\n")
    # A draft that writes the full number gets the masked one, and no second mention.
    full = draft.replace("We booked", "Your account 210-55817-03 is fine; we booked")
    assert follow_style(request, full, rules).count("ending in 1703") == 1
    letter = "Printed letter for Mr. Haddad, account 210-55817-03. Reply to him."
    assert "ending in 1703" not in follow_style(letter, draft, rules)


def test_a_customer_signing_with_a_first_name_only_is_greeted_by_it_where_the_guide_says_so():
    guide = (
        "# Writing to customers\n\n## Greetings\n\n"
        '- **Letters:** "Dear [Title] [Last name],".\n'
        '- **Emails:** If the customer signs with a first name only, you may write "Hello '
        '[First name],". Otherwise use the letter format.\n\n'
        'Close every message with "Thank you,".\n'
    )
    rules = extract_rules(guide)
    assert (rules.greeting, rules.first_name_greeting) == (
        "Dear [Title] [Last name],",
        "Hello [First name],",
    )
    draft = "We can set up a payment plan.\n\nThank you,"
    emailed = "Ms. Dana Morales emailed: 'Can I pay later? Thanks, Dana'. Write her back."
    assert follow_style(emailed, draft, rules.model_dump()).startswith("Hello Dana,\n\n")
    said = "Kevin from Bayline emailed, just signed 'Kevin': is there a fee? Answer him."
    assert follow_style(said, draft, rules.model_dump()).startswith("Hello Kevin,\n\n")
    # A full name signed, or a printed letter: the letter's greeting.
    full = "Ms. Dana Morales emailed: 'Can I pay later? Thanks, Dana Morales'. Write her back."
    assert follow_style(full, draft, rules.model_dump()).startswith("Dear Ms. Morales,")
    letter = (
        "Printed letter to Ms. Dana Morales, who wrote: 'Can I pay later? - Dana'. Write her back."
    )
    assert follow_style(letter, draft, rules.model_dump()).startswith("Dear Ms. Morales,")


def test_a_draft_that_copies_its_prompt_keeps_only_the_passages_whole_sentences():
    request = "Write back to Mr. Cole about the refund he asked for."
    draft = (
        f"[1] (docs/policy.md#Refunds) - {FACT}\n[2] (docs/policy.md#Contact) - **Phone:** line "
        f"at 555-0100\n\nQuestion: {request}\nDear Mr. Cole, thanks."
    )
    checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
    assert checked.message == FACT and checked.generated == draft
    # A last sentence the token limit cut off is not shown.
    cut = f"Dear Mr. Cole,\n\n{FACT} We hope this helps and we would like to"
    assert verify_reply(request, cut, PASSAGES, ABSTAIN).message == f"Dear Mr. Cole,\n\n{FACT}"


def test_a_draft_that_says_nothing_to_the_customer_is_the_passage_quoted():
    request = "Write back to Mr. Cole about the refund he asked for."
    for draft in ("Mr. Cole:\n\nCole:\n\nCole:", "The customer asked for a refund. He wants it."):
        checked = verify_reply(request, draft, PASSAGES, ABSTAIN)
        assert checked.status == "repaired" and FACT in checked.message
