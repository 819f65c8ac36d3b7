from shoptalk.rag.account import as_written_in_drafts, missing, signature, told


def test_the_account_is_the_requests_sentences_with_values_told_to_the_customer():
    request = (
        "Draft a reply to Mr. Dietrich Hahn. His order 48213 will now ship on 06/14/2024 "
        "because a lathe needed repair. Ms. Priya Raman's order 51077 is delayed by 6 days. "
        "Dr. Elena Petrova (acct 210-66340-02) wants to expedite order 52240. "
        "She has 3 boxes and he is owed $40. "
        "I emailed him the label on 05/02/2024 and told her the fee is $25. Keep it short. "
        "Reply confirming the fee of $400."
    )
    assert told(request) == [
        "Your order 48213 will now ship on 06/14/2024 because a lathe needed repair.",
        "Your order 51077 is delayed by 6 days.",
        "You want to expedite order 52240.",
        "You have 3 boxes and you are owed $40.",
        "I emailed you the label on 05/02/2024 and told you the fee is $25.",
    ]


def test_the_customers_own_words_and_what_introduces_them_are_no_account():
    request = (
        "Mr. Kevin Doyle wrote: 'need the label ASAP!! it's for RMA 2024-00912'. "
        "I emailed him the prepaid label at 9:40. Draft a quick confirmation."
    )
    assert told(request) == ["I emailed you the prepaid label at 9:40."]
    reported = "Ms. Laura Chen says order 49920 arrived with 2 bent fittings. Reply to her."
    assert told(reported) == ["You told us order 49920 arrived with 2 bent fittings."]
    asked = "Mrs. Becker asks about the credit for RMA 2024-01502. Draft the reply."
    assert told(asked) == ["You asked about the credit for RMA 2024-01502."]
    quoted = 'Reply to this customer: "I was billed $30 twice on 5/4/2024"'
    assert told(quoted, "I was billed $30 twice on 5/4/2024") == []


def test_a_chinese_request_is_told_to_the_customer():
    request = "请给王先生写一封回复。王先生的订单48213将于2024年6月14日发货，他的退款120元已到账。"
    assert told(request) == ["您的订单48213将于2024年6月14日发货，您的退款120元已到账。"]
    assert told("其他客户的订单不受影响，共3单。") == ["其他客户的订单不受影响，共3单。"]


def test_a_sentence_is_missing_when_most_of_its_numbers_are_not_in_the_draft():
    sentences = [
        "A credit of $1284.5 was issued on 07/03/2024.",
        "The fee is $400.",
        "Your parcel 4410 was due on 3 June and will arrive on 6 June.",
    ]
    draft = "A credit of $1,284.50 USD was issued on July 3, 2024. Parcel 4410 arrives 6 June."
    # Other forms of the same values count; one number of three left out does not.
    assert missing(sentences, draft) == ["The fee is $400."]
    assert missing(sentences, "") == sentences


def test_a_requests_values_are_given_in_the_forms_a_draft_writes_them():
    request = "Order 48213: a credit of $1284.5 was issued on 07/03/2024."
    given = as_written_in_drafts(request, "Your order SO-48213 ... SO-77777")
    for form in ("July 3, 2024", "3 July 2024", "$1,284.50 USD", "SO-48213"):
        assert form in given
    assert "SO-77777" not in given  # a number the request never gave stays a claim


def test_who_signs_is_read_from_the_request_and_is_no_news_for_the_customer():
    assert signature(
        "Fee waived on 5/2/2025. Sign it Jordan Pike, Billing Specialist, ext. 3127"
    ) == [
        "Jordan Pike",
        "Billing Specialist",
        "ext. 3127",
    ]
    assert signature("Write her back. I'm Tasha Greene, Customer Service Rep, ext 3105.")[0] == (
        "Tasha Greene"
    )
    request = "Repair done on 08/05/2025. Owen Fairley, Customer Service Supervisor, ext. 3100."
    assert signature(request) == ["Owen Fairley", "Customer Service Supervisor", "ext. 3100"]
    assert told(request) == ["Repair done on 08/05/2025."]
    assert signature("I emailed him the label on 05/02/2024.") == []


def test_a_card_number_and_the_advisers_view_of_the_customer_are_not_said_back():
    request = (
        "Mr. Vo sent his card number 4716 2209 8853 1174 asking about his $84.5 payment. "
        "It posted 03/14/2025. Ms. Boateng is furious: she says the crew came on 10/01/2025."
    )
    assert told(request) == [
        "It posted 03/14/2025.",
        "You told us the crew came on 10/01/2025.",
    ]


def test_what_an_instruction_asks_to_say_is_told_a_topic_is_not():
    request = (
        "Ms. Harriet Boateng's complaint went to Tom Reyes. Need a quick acknowledgment email to "
        "her (she signed 'Harriet Boateng') saying Tom will send her a written response by "
        "10/10/25. From me, Kelly Nguyen, ext. 3122."
    )
    assert told(request) == ["Tom will send you a written response by 10/10/25."]
    assert told("Write Mr. Lee a reply and let him know that the part ships Monday.") == [
        "The part ships Monday."
    ]
    # What to write about, not what to say: a question word, or no clause.
    assert told("Reply to Mr. Vo and tell him how he can pay from now on.") == []
    assert told("Write to Ms. Fox, confirming the fee and asking her to approve it.") == []


def test_sign_it_from_me_names_the_signer():
    request = "Write back to Kenji. Sign it from me: Priya Nandakumar, Care Specialist, ext. 4417."
    assert signature(request) == ["Priya Nandakumar", "Care Specialist", "ext. 4417"]


def test_a_second_verb_and_a_has_contraction_are_told_to_the_customer_too():
    request = (
        "Mr. Hale rides Route 501 every weekday and wants to know the pass price, since he's "
        "been paying $2.50 a ride. Ms. Ng ordered 40 bolts and nuts on 3/2/2025 and she's "
        "happy. Reply to them."
    )
    assert told(request) == [
        "You ride Route 501 every weekday and want to know the pass price, since you've been "
        "paying $2.50 a ride.",
        "You ordered 40 bolts and nuts on 3/2/2025 and you're happy.",
    ]
