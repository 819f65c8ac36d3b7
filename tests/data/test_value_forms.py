from __future__ import annotations

import pytest

from shoptalk.data.value_forms import ValueForm, apply_forms, form_code, read_forms

GUIDE = [
    'Sales orders: always write "SO-" followed by the five-digit number, for example SO-48213.',
    'Never write "#48213", "order no. 48213" or the number alone.',
    "RMA numbers: always the full format RMA-YYYY-NNNNN, for example RMA-2024-01387.",
    'Never shorten to "RMA 1387".',
    "Part numbers: exactly as in the catalog, for example BW-HF-2200-08-SS.",
    'Dates: month name, day and four-digit year, for example "June 14, 2024".',
    "Never use numeric formats such as 06/14/2024 or 14.6.24.",
    'Amounts: dollar sign, thousands separator, two decimals, then "USD", for example "$1,250.00 USD".',
    "Our office is like a second home, for example on Fridays.",  # no value shown: no form
]


def test_forms_are_read_from_the_guides_examples() -> None:
    forms = {(f.kind, f.example): f for f in read_forms(GUIDE)}
    assert set(forms) == {
        ("code", "SO-48213"),
        ("code", "RMA-2024-01387"),
        ("date", "June 14, 2024"),
        ("money", "$1,250.00 USD"),
    }  # a part number is written "exactly as in the catalog": no form to rewrite into
    assert forms["code", "SO-48213"].label == "order"  # from "Sales orders:"
    # 06/14/2024 is the example's date month first; 14.6.24 is day first.
    assert forms["date", "June 14, 2024"].day_first == ["."]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Your order 48213 ships soon.", "Your order SO-48213 ships soon."),
        ("Order no. 48213 and #48213.", "Order SO-48213 and SO-48213."),
        ("Claim RMA 2024-1387 is closed.", "Claim RMA-2024-01387 is closed."),
        ("It ships on 06/14/2024, not 14.6.24.", "It ships on June 14, 2024, not June 14, 2024."),
        (
            "The fee is $400, the credit $1284.5.",
            "The fee is $400.00 USD, the credit $1,284.50 USD.",
        ),
        # Already in form, or not values of these kinds: left as written.
        ("SO-48213, RMA-2024-01387, $830.00 USD.", "SO-48213, RMA-2024-01387, $830.00 USD."),
        ("ZIP 48213, 25% off, 1.5 kg, 2024-06-14.", "ZIP 48213, 25% off, 1.5 kg, 2024-06-14."),
        # Shortened beyond repair ("RMA 1387" lost its year), or a value the form would change.
        ("RMA 1387 at $4.155 each.", "RMA 1387 at $4.155 each."),
        ("Part BW-HF-2200-08-SS.", "Part BW-HF-2200-08-SS."),
    ],
)
def test_values_are_rewritten_into_the_forms_never_changed(written: str, expected: str) -> None:
    assert apply_forms(written, read_forms(GUIDE)) == expected


def test_a_day_first_example_reads_numeric_dates_day_first() -> None:
    form = ValueForm(kind="date", example="14 June 2024", day_first=["/", "."])
    assert apply_forms("Due 03/07/2024.", [form]) == "Due 3 July 2024."
    money = ValueForm(kind="money", example="£12.50")
    assert apply_forms("It costs £8 or $8.", [money]) == "It costs £8.00 or $8."  # its symbol only


def test_a_chinese_guides_forms_and_values_written_into_chinese_text() -> None:
    forms = read_forms(
        [
            "日期：统一写成年月日格式，例如“2024年6月14日”，不要写2024/06/14。",
            "订单号：一律写作SO-加五位数字，例如SO-48213。",
        ]
    )
    assert [(f.kind, f.example) for f in forms] == [("date", "2024年6月14日"), ("code", "SO-48213")]
    written = "您的订单SO 48213将于2024/06/14发货，原定2024-6-12。"
    assert (
        apply_forms(written, forms) == "您的订单SO-48213将于2024年6月14日发货，原定2024年6月12日。"
    )


def test_the_first_code_of_a_form_is_found_as_the_guide_writes_it() -> None:
    forms = read_forms(GUIDE)
    request = "Write to Mr. Nowak about claim RMA 2024-1387; report QIR-2024-0412 shows a burst."
    assert form_code(request, forms) == "RMA-2024-01387"  # QIR has no form in this guide
    assert form_code("Her custom order 51077 is late.", forms) == "SO-51077"
    assert form_code("No code here, 51077 alone.", forms) == ""


def test_a_form_shown_against_one_to_avoid_is_a_form():
    forms = read_forms(["Write dollar amounts with two decimal places: **$45.00**, not $45."])
    assert [(f.kind, f.example) for f in forms] == [("money", "$45.00")]
    assert apply_forms("Please pay $86.4 by Friday.", forms) == "Please pay $86.40 by Friday."


def test_times_are_written_as_the_guides_example():
    forms = read_forms(['Write times with "a.m." and "p.m.": **5:30 p.m.**, not 5:30PM.'])
    assert [(f.kind, f.example) for f in forms] == [("time", "5:30 p.m.")]
    text = "Booked for 9:30am; restored at 4:15 PM, or 9 a.m. tomorrow. I am 3.5 pm"
    assert apply_forms(text, forms) == (
        "Booked for 9:30 a.m.; restored at 4:15 p.m., or 9 a.m. tomorrow. I am 3.5 pm"
    )


def test_deadlines_get_the_day_of_the_week_the_guide_shows():
    forms = read_forms(
        [
            "Write dates as Month D, YYYY, for example March 4, 2025.",
            'For deadlines, include the day of the week: "by Friday, March 14, 2025."',
        ]
    )
    assert [(f.kind, f.example, f.weekday) for f in forms] == [
        ("date", "March 4, 2025", "deadlines")
    ]
    written = apply_forms(
        "We met on 10/01/2025; Tom replies by 10/10/25 or before July 21, 2025.", forms
    )
    # A deadline's date only, the day computed; a day already named is not named twice.
    assert written == (
        "We met on October 1, 2025; Tom replies by Friday, October 10, 2025 or before Monday, "
        "July 21, 2025."
    )
    assert apply_forms(written, forms) == written
    # Not a day: left as written.
    assert apply_forms("by February 30, 2025", forms) == "by February 30, 2025"


def test_a_guide_writing_every_date_with_its_day_names_every_one():
    forms = read_forms(['Always write the day: for example "Monday, 3 March 2025".'])
    assert forms[0].weekday == "always"
    assert apply_forms("on 4 March 2025", forms) == "on Tuesday, 4 March 2025"
    # A weekday with no rule asking for it is no form.
    assert read_forms(["We are closed on Friday, March 14, 2025."]) == []


def test_a_day_the_customer_must_act_on_is_a_deadline():
    forms = read_forms(
        ["Add the weekday when the rider must do something on that day: `Friday, March 14, 2025`."]
    )
    assert forms[0].weekday == "deadlines"
    assert apply_forms("Renew it by 03/14/2025; we met on 03/10/2025.", forms) == (
        "Renew it by Friday, March 14, 2025; we met on March 10, 2025."
    )
