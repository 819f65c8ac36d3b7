from __future__ import annotations

import json

import pytest

from shoptalk.artifacts import ABSTAIN_RULE
from shoptalk.rag.abstain import (
    DEFAULT_RULE,
    Abstention,
    coverage,
    fit_rule,
    load_rule,
    missing_name,
    missing_place,
    missing_qualifier,
    missing_role,
    missing_subject,
    own_words,
    save_rule,
    signals,
    term_idf,
    unpaid_role,
    words,
)
from shoptalk.rag.select import Passage
from shoptalk.records import Chunk

CORPUS = [
    "The warehouse ships parcels within two days of payment.",
    "Refunds are paid to the original card within fourteen days.",
    "The warehouse closes on public holidays.",
    "Support answers e-mail within one working day.",
]


def _passage(text: str, score: float = 0.5) -> Passage:
    return Passage(text, Chunk(id=text[:8], text=text, source="d.md"), score)


def test_rare_terms_weigh_more_than_common_ones() -> None:
    idf = term_idf(CORPUS)
    # "warehouse" is in two texts, "refunds" in one: covering the rare term counts more.
    assert coverage("warehouse refunds", "refunds", idf) > coverage(
        "warehouse refunds", "warehouse", idf
    )


def test_default_rule_refuses_absent_topic_and_answers_reworded_question() -> None:
    idf = term_idf(CORPUS)
    absent = signals("Do you sell gift vouchers?", [_passage(CORPUS[0])], idf)
    reworded = signals("How fast are refunds paid back?", [_passage(CORPUS[1])], idf)
    assert DEFAULT_RULE.refuses(absent)
    assert not DEFAULT_RULE.refuses(reworded)


def test_no_passages_is_refused() -> None:
    assert DEFAULT_RULE.refuses(signals("anything at all?", [], term_idf(CORPUS)))


def _examples() -> tuple[list[dict[str, float]], list[bool]]:
    values = [{"best_coverage": 0.5 + 0.02 * i, "all_coverage": 0.7} for i in range(10)]
    values += [{"best_coverage": 0.05 * i, "all_coverage": 0.2} for i in range(10)]
    return values, [True] * 10 + [False] * 10


def test_fit_separates_and_keeps_false_refusals_within_bound() -> None:
    values, answerable = _examples()
    rule = fit_rule(values, answerable, max_false_refusal=0.1)
    refused = [rule.refuses(v) for v in values]
    assert sum(refused[:10]) <= 1  # at most 10% of the answerable ones
    assert sum(refused[10:]) >= 9


def test_fit_is_deterministic() -> None:
    values, answerable = _examples()
    assert fit_rule(values, answerable) == fit_rule(values, answerable)


def test_fit_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="answerable and unanswerable"):
        fit_rule([{"best_coverage": 0.2, "all_coverage": 0.3}], [True])


def test_rule_round_trips(tmp_path) -> None:
    values, answerable = _examples()
    rule = fit_rule(values, answerable)
    save_rule(rule, tmp_path / ABSTAIN_RULE)
    assert load_rule(tmp_path / ABSTAIN_RULE) == rule


def test_missing_rule_falls_back_to_default(tmp_path) -> None:
    assert load_rule(tmp_path / ABSTAIN_RULE) == DEFAULT_RULE


def test_broken_rule_names_its_file(tmp_path) -> None:
    path = tmp_path / ABSTAIN_RULE
    path.write_text(json.dumps({"weights": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match=ABSTAIN_RULE):
        load_rule(path)


def test_words_stem_english_and_drop_question_shape() -> None:
    # "laptops" covers "laptop", a possessive its noun; "how much did" says nothing of the topic.
    assert words("How much did the CEO's laptops cost?") == words("ceo laptop cost")


def test_a_stopword_with_an_apostrophe_s_is_still_a_stopword() -> None:
    # "it's" is "it" + 's: neither it nor "what's" says what the question is about.
    assert words("What's the fee if it's late?") == words("fee late")


def test_a_chinese_word_is_covered_wherever_the_passage_holds_it() -> None:
    idf = term_idf(["退款在五个工作日内到账。", "门店营业到晚上十点。"])
    # However jieba cuts the passage, the question's words are in it.
    assert coverage("退款多久到账？", "退款在五个工作日内到账。", idf) == 1.0
    assert coverage("北京有门店吗？", "门店营业到晚上十点。", idf) < 0.5


def test_codes_and_numbers_are_kept_as_written() -> None:
    assert {"kx-340", "4.5%"} <= set(words("Is KX-340 billed at 4.5%?"))


def test_question_asking_for_an_amount_is_refused_without_one() -> None:
    passages = [_passage("The company was founded in Reno.")]
    abstention = Abstention(DEFAULT_RULE, term_idf([*CORPUS, passages[0].text]))
    # Every content word is covered, but no amount is there to answer with.
    assert abstention.refuses("How much did the company pay when it was founded in Reno?", passages)
    priced = [_passage("The company was founded in Reno for $40,000.")]
    assert not abstention.refuses("How much did it cost to found the company in Reno?", priced)


def test_a_question_about_a_period_no_passage_names_is_refused() -> None:
    passages = [_passage("The warehouse ships parcels within two days of payment each month.")]
    abstention = Abstention(DEFAULT_RULE, term_idf([*CORPUS, passages[0].text]))
    assert not abstention.refuses("How fast does the warehouse ship parcels?", passages)
    assert abstention.refuses("How fast did the warehouse ship parcels last month?", passages)


def test_a_year_or_a_count_the_whole_chunks_do_not_hold_is_refused() -> None:
    text = "Pay is reviewed in 2024. The programme lasts 4 years. Apprentices start each June."
    chunk = Chunk(id="a", text=text, source="d.md")
    selected = "The programme lasts 4 years. Apprentices start each June."
    passages = [Passage(selected, chunk, 0.5)]  # a number, but no count of apprentices
    abstention = Abstention(DEFAULT_RULE, term_idf([*CORPUS, text]))
    assert not abstention.refuses("When do apprentices start?", passages)
    assert abstention.refuses("When did the 2023 apprentices start?", passages)
    assert not abstention.refuses("When did the 2024 apprentices start?", passages)  # its chunk
    assert abstention.refuses("How many apprentices start each June?", passages)


def test_rule_of_an_older_version_falls_back_to_default(tmp_path) -> None:
    path = tmp_path / ABSTAIN_RULE
    old = {
        "weights": [1.0, 2.0, 3.0],
        "bias": 0.0,
        "threshold": 0.5,
        "signals": ["best_score", "best_coverage", "all_coverage"],
    }
    path.write_text(json.dumps(old), encoding="utf-8")
    assert load_rule(path) == DEFAULT_RULE


def test_a_name_the_passages_do_not_hold_is_refused() -> None:
    table = [_passage("| Harbor Express | HX-1 | next day |", 0.8)]
    assert missing_name("What does the Harbor Ocean service cost?", table) == "Harbor Ocean"
    assert missing_name("What is the code of Harbor Express?", table) is None
    # A capitalized first word is not part of a name; one capitalized word is no name.
    assert missing_name("Does Harbor Express run daily?", table) is None
    assert missing_name("What is the per diem in Seattle?", table) is None
    # The organization's own name is no name the passages must hold.
    own = own_words("Harbor Ocean Partners")
    assert missing_name("Is a Harbor Ocean clinic open late?", table, own) is None
    assert missing_name("What does the Harbor Ocean Air service cost?", table, own) == (
        "Harbor Ocean Air"
    )
    # A name given beside another: the passages may use the other ("Call 811").
    call = [_passage("Call 811 at least three business days before any digging.", 0.8)]
    assert missing_name("How many days notice do we give Miss Utility / 811?", call) is None
    assert missing_name("Do we give Miss Utility notice?", call) == "Miss Utility"


def test_a_name_is_looked_for_in_the_passages_whole_chunks() -> None:
    hours = _passage("Clinics open 8:00-18:00 on weekdays.", 0.8)
    hours.chunk.text += " Clinics are closed on Christmas Day."
    assert missing_name("Is anywhere open on Christmas Day?", [hours]) is None


def test_a_site_at_a_place_the_passages_do_not_name_is_refused() -> None:
    hq = [_passage("Harbor Freight's head office is at 12 Dock Road, Leeds LS1 4AB.", 0.8)]
    assert missing_place("Do you have an office in Bristol?", hq) == "Bristol"
    assert missing_place("What's the address of the Harbor depot in York?", hq) == "York"
    assert missing_place("Where do visitors park at the Leeds office?", hq) is None
    assert missing_place("What are the hours of the Bristol payment office?", hq) == "Bristol"
    # A place without a site is a rule's place ("a trip to Seattle"); "Our office" no place.
    assert missing_place("What is the per diem for a trip to Seattle?", hq) is None
    assert missing_place("Is our Main office open on Sundays?", hq) is None
    own = own_words("Harbor Freight")
    assert (
        missing_place("I work at one of the Harbor Freight offices. Can I park?", hq, own) is None
    )
    shops = [_passage("杭州西湖旗舰店位于翠苑路126号。", 0.8)]
    assert missing_place("茶香在北京有门店吗？", shops) == "北京"
    assert missing_place("杭州门店几点开门？", shops) is None
    assert missing_place("上海出差的餐补是多少？", shops) is None
    # Another party's site, or a place of the user's situation, is not one of ours.
    assert missing_place("I'm at a client office in Bristol. Can I expense lunch?", hq) is None
    assert (
        missing_place("visiting our supplier's plant in Derby, what's the mileage rate?", hq)
        is None
    )


def test_a_role_the_passages_do_not_name_is_refused() -> None:
    ceo = [_passage("Dana Reyes is our Chief Executive Officer and one of the founders.", 0.8)]
    assert missing_role("Who is Harbor's chief financial officer?", ceo) == (
        "chief financial officer"
    )
    assert missing_role("Who's the current CEO?", ceo) is None  # initials of the words
    assert missing_role("who runs Harbor?", ceo) is None  # no role asked
    cfo = [_passage("The CFO, Ann Lee, signs off budgets above $50,000.", 0.8)]
    assert missing_role("Who is the chief financial officer?", cfo) is None
    ehs = [_passage("Marcus Bell, Director of Environment, Health and Safety (EHS).", 0.8)]
    assert missing_role("Who is our director of EHS?", ehs) is None
    assert missing_role("Who is our director of IT?", ehs) == "director of IT"
    # A table row selected alone: its role is named in the chunk's header row.
    table = "| Site | Code | Site lead |\n|---|---|---|\n| Leeds depot | LD-1 | Tom Hale |"
    row = Passage(
        "| Leeds depot | LD-1 | Tom Hale |", Chunk(id="t", text=table, source="s.md"), 0.8
    )
    assert missing_role("Who is the site lead in Leeds?", [row]) is None
    # The role named, but nobody holding it: an owner's e-mail, another role's holder.
    owner = [
        _passage("Owner: EHS Manager, ehs@harbor.example, ext. 5510", 0.8),
        _passage("Owner: IT Manager, Harbor Point Plant", 0.7),
    ]
    assert missing_role("What is the name of the EHS Manager?", owner) == "EHS Manager"
    named = [_passage("Owner: EHS Manager, Dana Cole, ext. 5510", 0.8)]
    assert missing_role("What is the name of the EHS Manager?", named) is None
    shops = [_passage("成都宽巷店店长：李明。总部首席执行官：王芳。", 0.8)]
    assert missing_role("成都宽巷店的店长是谁？", shops) is None
    assert missing_role("财务总监是谁？", shops) == "财务"


def test_a_kind_of_offering_the_passages_never_name_is_refused() -> None:
    benefits = [_passage("Benefits include a dental plan, life insurance and a transit card.")]
    assert missing_qualifier("Does Harbor offer pet insurance?", benefits) == "pet insurance"
    assert missing_qualifier("How much is the gym membership?", benefits) == "gym membership"
    assert missing_qualifier("Is life insurance free?", benefits) is None
    assert missing_qualifier("What does the dental plan cover?", benefits) is None
    # Only the clause that asks; no stopword or superlative is a kind.
    assert missing_qualifier("I have the plus policy - is there a dental plan?", benefits) is None
    assert missing_qualifier("What's the biggest service credit?", benefits) is None
    assert missing_qualifier("Can I cancel a policy?", benefits) is None
    # A preposition, or a verb after "to", names no kind.
    assert missing_qualifier("Is my laptop still under warranty?", benefits) is None
    assert missing_qualifier("When can I choose to switch plans?", benefits) is None
    # Allowances, bonuses and discounts are offerings too; a hyphenated word holds its parts.
    pay = [_passage("New drivers get a $3,500 sign-on bonus and a 10% fleet discount.")]
    assert missing_qualifier("Is there a relocation allowance?", pay) == "relocation allowance"
    assert missing_qualifier("How much is the signing bonus?", pay) is None
    assert missing_qualifier("What's the fleet discount?", pay) is None
    # A kind of leave; the means of paying is not what is asked about.
    leave = [_passage("Employees get 12 days of sick leave a year.")]
    assert missing_qualifier("How many days of bereavement leave do we get?", leave) == (
        "bereavement leave"
    )
    assert missing_qualifier("Can I leave early on Fridays?", leave) is None
    fee = [_passage("Card payments carry a $2.25 convenience fee.")]
    assert missing_qualifier("Is there a fee if I pay with a visa card?", fee) is None
    # A word the documents use elsewhere: retrieval chose other chunks.
    plans = [_passage("Coverage begins on the first day of the month after hire.")]
    assert missing_qualifier("When does my health insurance start?", plans) == "health insurance"
    assert missing_qualifier("When does my health insurance start?", plans, {"health"}) is None

    zh = [_passage("员工福利包括补充医疗保险和每月交通补贴。")]
    assert missing_qualifier("茶香有宠物保险吗？", zh) == "宠物保险"
    assert missing_qualifier("医疗保险包括什么？", zh) is None


def test_full_width_forms_are_the_same_words() -> None:
    assert words("ＫＸ－２２０ 多少钱？") == words("KX-220 多少钱？")


def test_a_roles_pay_no_sentence_naming_the_role_states_is_refused() -> None:
    apart = [
        _passage("Harbor matches 4.5% of your salary into the pension."),
        _passage("Our CEO is Dana Reyes, who has led Harbor since 2017."),
    ]
    assert unpaid_role("What is the CEO's annual salary?", apart) == "CEO"
    assert unpaid_role("How much does the plant manager make a year?", apart) == "plant manager"
    assert unpaid_role("What is the salary of the chief executive officer?", apart) == (
        "chief executive officer"
    )
    stated = [_passage("The chief executive officer earns a base salary of $240,000.")]
    assert unpaid_role("What is the CEO's annual salary?", stated) is None  # as an acronym
    assert unpaid_role("What's the CEO's name?", apart) is None  # no pay asked
    table = "| Role | Shift premium |\n|---|---|\n| Line lead | $1.50/hour |"
    row = Passage("| Line lead | $1.50/hour |", Chunk(id="t", text=table, source="p.md"), 0.8)
    assert unpaid_role("How much does a line lead make on top?", [row]) is None
    zh = [_passage("总经理王芳负责全部门店。"), _passage("员工年终奖为一个月工资。")]
    assert unpaid_role("总经理的年薪是多少？", zh) == "总经理"


def test_a_subject_no_word_of_which_the_documents_hold_is_refused() -> None:
    corpus = set(words(" ".join(CORPUS)))
    about = [_passage(CORPUS[0]), _passage(CORPUS[1])]
    assert missing_subject("What is Harbor's stock ticker symbol?", about, corpus) == (
        "stock ticker symbol"
    )
    assert missing_subject("Does the plan cover braces for adults?", about, corpus) == (
        "braces for adults"
    )
    # One word is no evidence (another word may name it); a word anywhere in the documents
    # keeps the question (retrieval may have missed its passage).
    assert missing_subject("Does the plan cover glasses?", about, corpus) is None
    assert missing_subject("whats the holiday surcharge?", about[:1], corpus) is None
    assert missing_subject("What is the refund window?", about, corpus) is None
    assert missing_subject("How do refunds work?", about, corpus) is None  # no subject named
    # "wifi" is the documents' "Wi-Fi"; the organization's own name is no subject.
    wifi = [_passage("Guests use the Harbor Wi-Fi network.")]
    assert missing_subject("What's the wifi network?", wifi, corpus) is None
    assert (
        missing_subject("What is Harbor Logistics?", about, corpus, own_words("Harbor Logistics"))
        is None
    )
