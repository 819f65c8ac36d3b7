from __future__ import annotations

import pytest

from shoptalk.rag.answer_type import (
    asked_for,
    holds,
    mismatch,
    uncounted,
    unnamed_period,
    unnamed_year,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How much does the express service cost?", "money"),
        ("What is the annual salary of the director?", "money"),
        ("会员卡多少钱？", "money"),
        ("When do unused vacation days expire?", "when"),
        ("How long does a refund take?", "duration"),
        ("退款多久到账？", "duration"),
        ("When is the company planning to go public?", "when"),
        ("How many parking spaces are there?", "number"),
        ("仓库有几个门？", "number"),
        ("Who is the head of sales?", None),
        ("Do you deliver on Sundays?", None),
        ("When are salaries paid?", "when"),
        # A condition asked with "when" is stated by a number ("orders over $500").
        ("When does shipping become free?", "number"),
        ("When do I qualify for the quantity discount?", "number"),
        ("When does a trench need shoring?", "number"),
        # "How much time" is a length, which a number states ("a minimum of two hours").
        ("how much time do i get paid for a callout?", "duration"),
        ("How long is the claim window, and when are salaries paid?", None),
        ("没拆封的茶，几天内能退？", None),
        ("What's the direct phone number for the harbour branch?", "phone"),
        ("What number do I call for a spill?", "phone"),
        ("客服热线是多少？", "phone"),
        ("打电话找客服拨哪个号码？", "phone"),
        ("Which email address takes refund requests?", "email"),
        # An extension of a deadline, a phone line's hours, an e-mail as a channel: not asked.
        ("Can I get an extension on my deadline?", None),
        ("What time does the phone line close?", "when"),
        ("I don't use email, can you post my documents?", None),
        ("What's the street address of the harbour office?", "address"),
        ("深圳门店的地址是什么？", "address"),
        ("Do you deliver to a residential address?", None),
        ("What's the way to update my address?", None),
        ("What's the site code for the harbour depot?", "code"),
        ("安溪铁观音的产品编号是什么？", "code"),
        # A count of a code's parts is a number; "Is there a code?" may be answered "no".
        ("How many digits come after HX in a tracking number?", "number"),
        ("Is there a promo code for new customers?", None),
        # The code the question word names, before the fee it mentions.
        ("Which transaction code do agents use to waive a late fee?", "code"),
        ("What's the late fee?", "money"),
        # "paid" before what is paid is no price; as a verb it is.
        ("How much paid parental leave do I get?", None),
        ("How much is paid out for unused leave?", "money"),
        ("How much will I be paid for overtime?", "money"),
        # "make" as earning only with a period: not "how much do we make of each part?"
        ("How much does a forklift driver make an hour?", "money"),
        ("How much scrap does the press line make?", None),
        # A credential, also beside a statement; not a rule about passwords.
        ("What is this week's password for the guest Wi-Fi?", "secret"),
        ("whats the guest wifi password? im at reception", "secret"),
        ("访客WiFi密码是多少？", "secret"),
        ("What are the password requirements?", None),
        ("How do I reset my password?", None),
        ("What is the pin spacing on the connector?", None),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str | None) -> None:
    assert asked_for(question) == kind


def test_values_of_each_kind_are_found_in_english_and_chinese() -> None:
    assert holds("money", "Returns cost $12.50.") and holds("money", "每盒售价88元")
    assert holds("money", "The match is 4.5% of salary.")
    assert not holds("money", "Founded in 1996.")
    # "Free" said of a thing is a price; "free of defects" and "toll-free" are not.
    assert holds("money", "Calibration certificates are free.")
    assert holds("money", "**Certificates:** free when ordered with the parts.")
    assert holds("money", "Re-delivery is at no extra charge.") and holds("money", "取件免费")
    assert not holds("money", "Parts are free of defects; call our toll-free line.")
    assert holds("when", "Reviews happen in April.") and holds("when", "五个工作日内到账")
    assert holds("when", "within 33 days") and not holds("when", "Ask the front desk.")
    # "When ...?" is not answered by any number, "How long ...?" may be (a length).
    assert holds("when", "Founded in 1996.") and not holds("when", "HQ is at 4820 Longspur Avenue.")
    assert holds("duration", "at least 14 characters long")
    assert holds("number", "two cleanings") and holds("number", "三间品茗室")
    assert holds("phone", "Call 1-800-555-0192.") and holds("phone", "call extension 4300")
    assert holds("phone", "The phone extension for IT support is 4300 [2].")
    assert not holds("phone", "The fee is 1,250.50 a year.")
    assert holds("phone", "热线400-820-6637") and holds("phone", "+44 20 7946 0018")
    # Opening hours are no phone number; an address is no e-mail.
    assert not holds("phone", "Open 16:00–17:00, Mon–Thu 9:00–16:00.")
    assert holds("email", "Write to claims@acme.example.") and not holds("email", "12 Dock Road")
    assert holds("address", "We are at 12 Dock Road, Leeds.") and holds("address", "翠苑路126号")
    assert holds("address", "Reno, NV 89502") and holds("address", "London SW1A 1AA")
    assert not holds("address", "The limit is 10000, seven days a week.")
    assert holds("code", "| Harbour Depot | HD-6 | 14 Quay Street |")
    assert holds("code", "产品编号是TG-03。") and holds("code", "site code 4410")
    # A password itself (a digit or a symbol, or quoted), not a rule about one.
    assert holds("secret", "The guest Wi-Fi password is Harbor2024!")
    assert holds("secret", 'Network: Guest, password: "anchorline"')
    assert holds("secret", "访客网络密码：bw888888")
    assert not holds("secret", "The guest password changes every Monday; ask at reception.")
    # Where it is found answers too.
    assert holds("secret", "The guest password is posted at reception.")
    assert holds("secret", "The guest wifi password is on the kitchen door.")
    assert not holds("secret", "Passwords must be at least 14 characters long.")
    # An address or a time of day is no code.
    assert not holds("code", "The depot is at 1428 Osprey Street.")
    assert not holds("code", "Open 8am to 5pm.")


def test_mismatch_only_when_a_kind_is_asked_and_missing() -> None:
    assert mismatch("How much is the membership fee?", ["Members get free coffee."])
    assert not mismatch("How much is the membership fee?", ["The fee is £20 a year."])
    assert not mismatch("Who runs the warehouse?", ["The warehouse opened in 2001."])
    assert not mismatch("How much is the fee?", [])  # no passages: another decision
    assert mismatch("What's the phone number of the Leeds branch?", ["Leeds opens at 9:00."])


STANDING = ["The membership fee is reviewed on the first Monday of each month: now £20."]


@pytest.mark.parametrize(
    ("question", "texts", "period"),
    [
        ("What will the membership fee be next month?", STANDING, "next month"),
        (
            "What was our on-time rate last quarter?",
            ["We commit to 97% per month."],
            "last quarter",
        ),
        ("How much did we earn last year?", ["Revenue grows every year."], "last year"),
        ("What are next year's rates?", ["Rates are set yearly."], "next year's"),
        ("公司去年的营业额是多少？", ["公司每年公布营业额。"], "去年"),
        ("下个月的会费是多少？", ["会费每月调整一次。"], "下个月"),
        # Of two clauses, the one that asks: its period still counts.
        ("What was the rate last quarter - was it on target?", ["97% a month."], "last quarter"),
        # A short opening phrase is no situation: its period is asked about.
        ("Last year, how many patients did you see?", ["We see patients daily."], "Last year"),
    ],
)
def test_a_past_or_future_period_no_passage_names_is_unanswerable(question, texts, period):
    assert unnamed_period(question, texts) == period


@pytest.mark.parametrize(
    ("question", "texts"),
    [
        # The passages name the period: the figure may be theirs.
        ("What was the fee last year?", ["In 2025 the fee was £18."]),
        ("What will the fee be next month?", ["From next month the fee is £22."]),
        ("How much did we earn last quarter?", ["Q3 revenue was $4M."]),
        ("去年的营业额是多少？", ["2025年营业额为三亿元。"]),
        # The period is where a rule leads, or context of another sentence.
        ("Can I carry unused days into next year?", ["Up to 5 days carry over."]),
        ("I start next week. What do I need to wear?", ["Wear safety boots."]),
        ("sent my forms last week - how long till you decide?", ["We decide in 30 days."]),
        ("我们下个月搬家——怎么更新地址？", ["您可以在app中更新地址。"]),
        # A situation told before a comma, then the question.
        ("my son turns 17 next month, can he still see his doctor?", ["Until 18."]),
        ("flying to leeds next week, whats the taxi limit?", ["Taxis up to £40 a trip."]),
        # A standing period, not one counted from now.
        ("How many days off do I get per year?", ["You get 20 days a year."]),
        ("What was the fee last year?", []),  # no passages: another decision
    ],
)
def test_named_or_standing_periods_are_left_to_the_other_checks(question, texts):
    assert unnamed_period(question, texts) is None


@pytest.mark.parametrize(
    ("question", "texts", "year"),
    [
        ("How many apprentices joined the 2023 cohort?", ["Cohorts start each June."], "2023"),
        ("What was revenue in 2019?", ["Revenue grew in 2021."], "2019"),
        ("2024年的营业额是多少？", ["营业额每年公布。"], "2024"),
        # Named in the passages; a situation's year; a year inside a code or a version.
        ("What was revenue in 2021?", ["Revenue grew in 2021."], None),
        ("I started in 2024 at the plant, how many days do I get?", ["20 days."], None),
        ("Are you ISO 9001:2015 certified?", ["We are ISO certified."], None),
        ("Is part 2023-08 in stock?", ["Part numbers are listed."], None),
    ],
)
def test_a_year_no_passage_names_is_unanswerable(question, texts, year):
    assert unnamed_year(question, texts) == year


@pytest.mark.parametrize(
    ("question", "texts", "thing"),
    [
        # Numbers are there, but none counts the thing asked about.
        (
            "How many parking spaces are there at the distribution center?",
            ["The distribution center is open 6 a.m. to 10 p.m., 7 days a week."],
            "spaces",
        ),
        # A number of the question's own ("5-axis") counts nothing.
        (
            "How many 5-axis machining centers are installed at the plant?",
            ["Address: 880 Mill Road. The plant makes parts on 5-axis machining centers."],
            "centers",
        ),
    ],
)
def test_a_count_no_passage_states_is_unanswerable(question, texts, thing):
    assert uncounted(question, texts) == thing


@pytest.mark.parametrize(
    ("question", "texts"),
    [
        ("How many trailers does the company run?", ["The company runs 212 dry van trailers."]),
        ("How many holidays are there each year?", ["There are ten paid holidays a year."]),
        # A FAQ answer after its question; a table names the thing in its header row.
        (
            "How many electric car chargers are there at HQ?",
            ["Are there EV chargers at HQ? Yes, there are 14 charging stalls in Lot A."],
        ),
        ("How many docks does Reno have?", ["| Site | Docks |\n|---|---|\n| Reno | 12 |"]),
        # Nothing countable read: an irregular plural, no plural at all, no "how many".
        ("How many people can I bring?", ["Up to 4 guests."]),
        ("How many is too many?", ["Order limits apply."]),
        ("What do trailers cost?", ["Trailers are leased."]),
    ],
)
def test_a_stated_count_or_no_counted_thing_is_left_to_the_other_checks(question, texts):
    assert uncounted(question, texts) is None
