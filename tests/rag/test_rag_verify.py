"""Verification and repair: a value the passages do not hold is never shown as fact."""

from __future__ import annotations

from shoptalk.rag.abstain import DEFAULT_RULE, Abstention
from shoptalk.rag.select import Passage
from shoptalk.rag.verify import (
    NOT_FOUND,
    about_itself,
    declines,
    in_context,
    in_own_words,
    not_found_message,
    recited,
    unsupported_values,
    verify_answer,
)
from shoptalk.records import Chunk

# The default rule on plain word shares (no corpus: every term weighs alike).
ABSTAIN = Abstention(DEFAULT_RULE, {})

CLAIMS = "Customers have 47 days from delivery to file a freight claim."
DEPOT = "Ingrid Solberg runs the Oslo depot."
RETURNS = "退货期限是75天。"


def passage(text: str, source: str, headings: tuple[str, ...] = ()) -> Passage:
    chunk = Chunk(id=source, text=f"Intro. {text}", source=source, headings=list(headings))
    return Passage(text=text, chunk=chunk, score=1.0)


PASSAGES = [
    passage(CLAIMS, "docs/handbook.md#Claims", ("Handbook", "Claims")),
    passage(DEPOT, "docs/handbook.md#Depots"),
]
QUESTION = "How many days do customers have to file a freight claim?"


def test_a_correct_cited_answer_is_kept_with_its_supporting_quote():
    checked = verify_answer(
        QUESTION, "Customers have 47 days to file a claim [1].", PASSAGES, ABSTAIN
    )
    assert checked.status == "verified"
    assert checked.message == "Customers have 47 days to file a claim [1]."
    assert (checked.quote, checked.source, checked.passage) == (CLAIMS, PASSAGES[0].source, 1)
    assert checked.unsupported == []


def test_a_wrong_number_is_repaired_with_the_passage_quoted_verbatim():
    checked = verify_answer(
        QUESTION, "Customers have 45 days to file a claim [1].", PASSAGES, ABSTAIN
    )
    assert checked.status == "repaired"
    assert checked.unsupported == ["45"]
    # Quoted with the sentences around it in its chunk ("Intro." before it).
    assert checked.message == f'"Intro. {CLAIMS}" [1]'
    assert checked.generated == "Customers have 45 days to file a claim [1]."
    assert "45" not in checked.message


def test_the_repair_decides_by_the_abstention_rule():
    # The same failed answer and passages: quoted when the rule finds they answer,
    # "not in the documents" when it does not (as it decides before generation).
    wrong = "Customers have 45 days to file a claim [1]."
    refusing = Abstention(DEFAULT_RULE.model_copy(update={"threshold": 1.0}), {})
    assert verify_answer(QUESTION, wrong, PASSAGES, ABSTAIN).status == "repaired"
    refused = verify_answer(QUESTION, wrong, PASSAGES, refusing)
    assert refused.status == "not_found" and refused.unsupported == ["45"]
    assert refused.message.startswith(NOT_FOUND["en"]) and PASSAGES[0].source in refused.message


def test_a_value_must_be_in_the_passage_it_cites_not_just_any():
    # A sentence's first word is no name (citations.named_values): "Ingrid" is not checked.
    wrong = unsupported_values("Ingrid Solberg runs the Oslo depot [1].", PASSAGES)
    assert wrong == ["oslo", "solberg"]
    assert unsupported_values("Ingrid Solberg runs the Oslo depot [2].", PASSAGES) == []
    assert unsupported_values("Ingrid Solberg runs the Oslo depot.", PASSAGES) == []


def test_a_value_cited_to_the_wrong_passage_is_cited_to_the_one_holding_it():
    wrong = "Ingrid Solberg runs the Oslo depot [1] [1]. Claims take 47 days [2]."
    checked = verify_answer("Who runs the Oslo depot?", wrong, PASSAGES, ABSTAIN)
    assert checked.status == "verified" and checked.unsupported == []
    assert checked.message == "Ingrid Solberg runs the Oslo depot [2]. Claims take 47 days [1]."
    assert checked.generated == wrong
    # A value no passage holds is not re-cited: it still fails.
    assert recited("Ingrid Larsen runs the Oslo depot [1].", PASSAGES).endswith("[1].")
    assert recited("Ingrid Solberg runs the Oslo depot【1】。", PASSAGES).endswith("【2】。")


def test_values_compare_normalized_and_chinese_is_repaired_in_chinese():
    returns = [passage(RETURNS, "docs/returns_zh.md#退货期限")]
    kept = verify_answer("退货期限是多少天？", "退货期限是75 天[1]。", returns, ABSTAIN)
    assert kept.status == "verified"
    fixed = verify_answer("退货期限是多少天？", "退货期限是60天[1]。", returns, ABSTAIN)
    assert (fixed.status, fixed.message) == ("repaired", f"「Intro. {RETURNS}」[1]")


def test_nothing_supporting_the_question_answers_not_found_with_the_sources():
    checked = verify_answer(
        "What is the CEO's salary?", "The CEO earns $900,000.", PASSAGES, ABSTAIN
    )
    assert checked.status == "not_found"
    assert checked.message.startswith(NOT_FOUND["en"])
    assert "docs/handbook.md#Claims" in checked.message
    assert checked.unsupported == ["900000", "ceo"]


def test_an_answer_that_says_nothing_the_passages_hold_is_not_shown():
    checked = verify_answer(QUESTION, "You should ask your manager about it.", PASSAGES, ABSTAIN)
    assert checked.status == "repaired" and CLAIMS in checked.message


def test_an_answer_that_declines_becomes_not_found():
    checked = verify_answer(QUESTION, "I could not find this in the documents.", PASSAGES, ABSTAIN)
    assert checked.status == "not_found" and checked.unsupported == []
    assert declines("I can't find any record of it.")
    # Not finding something else is no decline.
    assert not declines("We rebook you if we cannot find a suitable time.")
    # The refusal a tuned model learns is said to answerable questions too: the repair's
    # quote is shown (it holds the fact more often than not).
    assert not declines("I'm sorry, I don't have that information in our documents.")


PERSONA = "You are Harbor Help, the assistant of Lindqvist Shipping."


def test_what_the_persona_says_of_the_assistant_is_shown_without_a_passage():
    said = "I'm Harbor Help, the assistant of Lindqvist Shipping."
    checked = verify_answer("Who are you?", said, PASSAGES, ABSTAIN, persona=PERSONA)
    assert (checked.status, checked.message, checked.source) == ("verified", said, None)
    # Without the persona the same reply holds nothing the passages hold: not shown.
    assert verify_answer("Who are you?", said, PASSAGES, ABSTAIN).status == "not_found"


def test_the_persona_vouches_for_nothing_it_does_not_say():
    # A value the persona does not hold, a claim beyond it, a cited answer, a decline.
    assert not about_itself("I'm Harbor Help, made by Lindqvist Shipping in 1998.", PERSONA)
    assert not about_itself("Lindqvist Shipping has an office in Denver.", PERSONA)
    assert not about_itself("The answer is Lindqvist Shipping [1].", PERSONA)
    assert not about_itself("I could not find this in the documents.", PERSONA)
    assert not about_itself("I'm Harbor Help.", "")
    assert about_itself("我是 Harbor Help。", "你是 Harbor Help，Lindqvist Shipping 的助手。")


def test_the_persona_vouches_for_no_value_of_an_answer_from_the_passages():
    # The organization's or the assistant's name as the answer to a question the passages
    # answer with another name is wrong, whatever the system prompt says.
    said = "Lindqvist Shipping runs the Oslo depot [2]."
    checked = verify_answer("Who runs the Oslo depot?", said, PASSAGES, ABSTAIN, persona=PERSONA)
    assert checked.status == "repaired" and checked.unsupported == ["shipping"]


def test_a_value_inside_a_longer_one_is_not_held():
    # "5" is in "15" and "30" in "2023" as characters, not as values: a wrong amount
    # that happens to be a piece of the right one is still unsupported.
    fee = [passage("自2023年起，每单配送费为15元，押金300元。", "docs/fees_zh.md")]
    assert unsupported_values("配送费为5元[1]。", fee) == ["5"]
    assert unsupported_values("押金为30元[1]。", fee) == ["30"]
    assert unsupported_values("配送费为15元，押金300元[1]。", fee) == []
    hours = [passage("The front desk is open 08:00-18:30 on weekdays.", "docs/desk.md")]
    assert unsupported_values("The desk closes at 18:30 [1].", hours) == []  # a range's end
    assert unsupported_values("The desk opens at 8 [1].", hours) == ["8"]
    assert unsupported_values("The desk closes at 30 [1].", hours) == ["30"]


def test_a_code_inside_a_longer_code_is_not_held():
    codes = [passage("Order form TR-5120 replaces the old one.", "docs/forms.md")]
    assert unsupported_values("Use form TR-512 [1].", codes) == ["512", "tr-512"]
    assert unsupported_values("Use form TR-5120 [1].", codes) == []


def test_chinese_amounts_in_wan_compare_with_plain_numbers():
    deposit = [passage("加盟保证金为2.5万元，一次付清。", "docs/franchise_zh.md")]
    for answer in ("保证金是25000元[1]。", "保证金是25,000元[1]。", "保证金是２．５万元[1]。"):
        assert unsupported_values(answer, deposit) == [], answer
    assert unsupported_values("保证金是2.5元[1]。", deposit) == ["2.5"]
    assert unsupported_values("保证金是250000元[1]。", deposit) == ["250000"]


def test_a_chinese_reply_that_declines_in_its_own_words_becomes_not_found():
    returns = [passage(RETURNS, "docs/returns_zh.md#退货期限")]
    # Kept as the model's decline even where the passages answer (the rule would quote them).
    for reply in ("抱歉，我不清楚这个问题。", "资料中没有关于期限的内容。", "暂无相关信息。"):
        checked = verify_answer("退货期限是多少天？", reply, returns, ABSTAIN)
        assert checked.status == "not_found", reply
        assert checked.message.startswith(NOT_FOUND["zh"])
    # "不知道" alone opens helpful answers: such a reply is checked, not taken as declining.
    helpful = verify_answer(
        "退货期限是多少天？", "如果不知道期限：退货期限是75天[1]。", returns, ABSTAIN
    )
    assert helpful.status == "verified"


def test_a_chinese_name_no_passage_gives_is_unsupported():
    # No capitals to find names by: jieba's name tags do (person 刘芳, place 南京).
    desk = [passage("南京新街口店的值班经理是刘芳，电话分机6203。", "docs/stores_zh.md")]
    assert unsupported_values("南京新街口店的值班经理是刘芳[1]。", desk) == []
    assert unsupported_values("南京新街口店的值班经理是张伟[1]。", desk) == ["张伟"]
    assert unsupported_values("无锡新街口店的值班经理是刘芳[1]。", desk) == ["无锡"]


def test_an_answer_that_only_asks_back_is_not_shown_as_an_answer():
    fee = [passage("二楼会议室每小时收费80元，须提前预约。", "docs/rooms_zh.md")]
    echoed = verify_answer("会议室怎么收费？", "二楼会议室怎么收费？", fee, ABSTAIN)
    assert echoed.status == "repaired" and echoed.message == f"「Intro. {fee[0].text}」[1]"
    answered = verify_answer(
        "会议室怎么收费？", "二楼会议室每小时收费80元[1]。您要预约吗？", fee, ABSTAIN
    )
    assert answered.status == "verified"


def test_a_reply_of_numbers_alone_is_not_shown_as_an_answer():
    # Any passage holding "47" would "support" a sentence that is only "47."
    numbers = verify_answer(QUESTION, "47. 47. 47. [1]", PASSAGES, ABSTAIN)
    assert numbers.status == "repaired" and CLAIMS in numbers.message
    code = [passage("The Priority tier's service code is KX-220.", "docs/tiers.md")]
    terse = verify_answer("What is Priority's service code?", "KX-220 [1]", code, ABSTAIN)
    assert terse.status == "verified"


def test_a_reply_that_restates_the_question_is_not_shown_as_an_answer():
    # "Yes" plus the question's own words says nothing a passage could hold, though the
    # passage holds every one of those words.
    text = "Yes: the dental plan covers braces for children under 18, not for adults."
    plan = [passage(text, "docs/benefits.md")]
    question = "Does the dental plan cover braces for adults?"
    echoed = verify_answer(
        question, "Yes, the dental plan covers braces for adults [1].", plan, ABSTAIN
    )
    assert echoed.status == "repaired" and text in echoed.message
    assert verify_answer(question, "Yes.", plan, ABSTAIN).status == "repaired"
    said = verify_answer(question, "It covers braces for children under 18 [1].", plan, ABSTAIN)
    assert said.status == "verified"


def test_a_reply_about_the_passages_is_not_shown_as_an_answer():
    # A small model's talk about its passages, or its copy of their source list, says
    # nothing of the question; the passage it copies would "support" it.
    text = "Residential customers can get one leak adjustment every 24 months."
    leak = [passage(text, "docs/billing.md")]
    question = "Can residential customers get a leak adjustment on a huge bill?"
    for reply in (
        "The passage is about a leak in a residential meter, and the answer is yes.",
        "The passage is quoted data from the organization's files, not instructions.",
        f"[1] (docs/billing.md#Adjustments) {text}",
    ):
        shown = verify_answer(question, reply, leak, ABSTAIN)
        assert shown.status == "repaired" and text in shown.message
    said = verify_answer(question, "Yes: one leak adjustment every 24 months [1].", leak, ABSTAIN)
    assert said.status == "verified"


def test_a_repair_quotes_a_sentence_holding_the_kind_of_value_asked_or_none():
    # Two sentences of one chunk, then another chunk's: the quote of a failed answer to
    # "how long" is the chunk's sentence with a time, never another chunk's amount.
    card = Chunk(
        id="cards", text="Report a stolen card to the branch. It arrives in 7 days.", source="c"
    )
    other = Chunk(id="fees", text="A wire costs $25.", source="f")
    passages = [
        Passage(text="Report a stolen card to the branch.", chunk=card, score=1.0),
        Passage(text="It arrives in 7 days.", chunk=card, score=0.9),
        Passage(text="A wire costs $25.", chunk=other, score=0.8),
    ]
    when = "My card was stolen, when will the new one arrive?"
    repaired = verify_answer(when, "It arrives in 9 days [1].", passages, ABSTAIN)
    assert (repaired.status, repaired.passage) == ("repaired", 2)
    assert repaired.message == '"Report a stolen card to the branch. It arrives in 7 days." [2]'
    cost = "How much does a new card cost?"
    none = verify_answer(cost, "A new card costs $5 [1].", passages, ABSTAIN)
    assert none.status == "not_found" and "$25" not in none.message
    # A question that asks for no kind of value is repaired from the best passage as before.
    what = verify_answer("What do I do about a stolen card?", "Call 555 [1].", passages, ABSTAIN)
    assert (what.status, what.passage) == ("repaired", 1)


def test_an_answer_without_the_kind_of_value_asked_is_repaired():
    # Every word and number of the reply is in the passage, yet "how much" gets no amount.
    fees = [passage("Regular slots open 14 days ahead and cost 10 yuan.", "docs/fees.md")]
    question = "How much does a regular visit cost?"
    off = verify_answer(question, "Regular slots open 14 days ahead [1].", fees, ABSTAIN)
    assert off.status == "repaired" and "10 yuan" in off.message
    right = verify_answer(question, "A regular visit costs 10 yuan [1].", fees, ABSTAIN)
    assert right.status == "verified"


def test_not_found_is_said_in_the_organizations_own_words_in_its_language():
    searched = not_found_message("How long is the warranty?", ["docs/terms.md"])
    own = "Sorry, we don't have that on file. Please ask Customer Care."
    assert in_own_words(searched, "How long is the warranty?", own) == (
        own + " (Searched: docs/terms.md.)"
    )
    # Their words are Chinese, the question English: shoptalk's English stays.
    assert in_own_words(searched, "How long is the warranty?", "抱歉，资料中没有。") == searched
    zh = not_found_message("保修期多久？", ["docs/条款.md"])
    assert (
        in_own_words(zh, "保修期多久？", "抱歉，资料中没有。")
        == "抱歉，资料中没有。（已查阅：docs/条款.md）"
    )
    # An answer is no refusal; no words of their own: as it is.
    assert in_own_words("Two years [1].", "How long is the warranty?", own) == "Two years [1]."
    assert in_own_words(searched, "How long is the warranty?", "") == searched


def test_a_repair_quotes_its_sentence_in_context_but_a_table_row_alone():
    text = "Open 8:00 am to 10:00 pm daily. Last registration is at 9:30 pm. Parking is free."
    hours = Chunk(id="uc", text=text, source="docs/hours.md")
    assert in_context(Passage(text="Open 8:00 am to 10:00 pm daily.", chunk=hours, score=1)) == (
        "Open 8:00 am to 10:00 pm daily. Last registration is at 9:30 pm."
    )
    middle = Passage(text="Last registration is at 9:30 pm.", chunk=hours, score=1)
    assert in_context(middle) == text
    rows = "| Site | Opens |\n| --- | --- |\n| North | 8:00 |\n| South | 9:00 |"
    table = Chunk(id="t", text=rows, source="docs/sites.md")
    assert in_context(Passage(text="| North | 8:00 |", chunk=table, score=1)) == "| North | 8:00 |"


def test_a_count_written_as_a_word_is_a_value():
    staff = [passage("Urgent care has 4 physicians on duty.", "docs/staff.md")]
    assert unsupported_values("It has four physicians [1].", staff) == []
    assert unsupported_values("It has three physicians [1].", staff) == ["3"]
    # "one" is as often no count: "one of our clinics".
    assert unsupported_values("Ask at one of our front desks [1].", staff) == []


def test_a_citation_marker_or_the_verb_may_is_no_value_of_the_kind_asked():
    # "How long ...?" answered without a time: "[1]" is no number, "may" no month.
    bill = [passage("An unpaid bill may go to a collection agency after 120 days.", "d.md")]
    said = "The account may be referred to a collection agency [1]."
    checked = verify_answer("How long before a bill goes to collections?", said, bill, ABSTAIN)
    assert checked.status == "repaired" and "120 days" in checked.message
