import pytest
from pydantic import ValidationError

from shoptalk.data.clean import (
    CleanSettings,
    boilerplate_lines,
    clean_chunks,
    clean_conversations,
    clean_text,
)
from shoptalk.records import Chunk

from factories import faq_record

FOOTER = "Confidential – internal use only"


def test_full_width_letters_and_digits_are_folded_chinese_punctuation_stays():
    assert clean_text("ＡＢＣ１２３") == "ABC123"
    assert (
        clean_text("型号ＫＸ－２２０（新款），七天内退货！") == "型号KX-220（新款），七天内退货！"
    )
    assert clean_text("价格：３００元；可以吗？") == "价格：300元；可以吗？"
    # Outside Chinese text full-width punctuation is a stray IME character: folded.
    assert clean_text("Ｈｅｌｌｏ，ｗｏｒｌｄ！") == "Hello,world!"
    assert clean_text("ＡＢＣ", CleanSettings(nfkc=False)) == "ＡＢＣ"


def test_whitespace_and_control_characters():
    text = "  Line\tone   has\x00 runs  \r\nline two\u200b   \r\n\r\n\r\n\r\n\r\nend\x07"

    assert clean_text(text) == "Line\tone has runs\nline two\n\nend"


def test_indentation_survives_and_page_breaks_end_a_line():
    text = "- item\n  - nested  item\fnext page"

    assert clean_text(text) == "- item\n  - nested item\nnext page"


def test_boilerplate_is_a_line_found_in_enough_documents():
    docs = [
        f"Returns\nYou have 30 days.\n{FOOTER}",
        f"Shipping\nWe ship with DHL.\n  {FOOTER}  ",
        f"Warranty\nTwo years.\n{FOOTER}\nPage 1",
        "Only two docs share this line\nPrivacy",
        "Only two docs share this line",
    ]

    assert boilerplate_lines(docs, min_docs=3) == {FOOTER}


def test_table_rows_and_headings_are_not_boilerplate():
    docs = ["| Item | Price |\n## Contact us here"] * 4

    assert boilerplate_lines(docs, min_docs=3) == set()


def test_clean_chunks_removes_footers_repeated_across_files():
    chunks = [
        Chunk(id="a", text=f"Returns within 30 days.\n{FOOTER}", source="docs/returns.md#Returns"),
        Chunk(id="b", text=f"Ship with DHL.\n\n{FOOTER}", source="docs/shipping.md:4"),
        Chunk(id="c", text=f"Two-year warranty.\n{FOOTER}", source="docs/warranty.md#Terms"),
        Chunk(id="d", text=FOOTER, source="docs/warranty.md#Footer"),
    ]

    kept, dropped = clean_chunks(chunks, CleanSettings())

    assert [c.text for c in kept] == [
        "Returns within 30 days.",
        "Ship with DHL.",
        "Two-year warranty.",
    ]
    assert [(d.id, d.reason) for d in dropped] == [("d", "empty after cleaning")]


def test_a_line_repeated_within_one_file_is_content():
    chunks = [
        Chunk(id=str(i), text=f"Section {i}\nPrices include VAT.", source=f"docs/prices.md#S{i}")
        for i in range(4)
    ]

    kept, dropped = clean_chunks(chunks, CleanSettings())

    assert all("Prices include VAT." in c.text for c in kept) and not dropped


def test_clean_conversations_drops_with_reasons():
    convs = [
        faq_record("ok", "Ｈｏｗ  long is the warranty?", "Two years.  "),
        faq_record("empty", "Hello?", "\u200b  "),
        faq_record("short", "?", "Fine."),
        faq_record("long", "Tell me everything.", "x" * 50),
    ]

    kept, dropped = clean_conversations(convs, CleanSettings(max_chars=40))

    assert [(m.content) for m in kept[0].messages] == ["How long is the warranty?", "Two years."]
    reasons = {d.id: d.reason for d in dropped}
    assert list(reasons) == ["empty", "short", "long"]
    assert "empty" in reasons["empty"]
    assert "min_chars=2" in reasons["short"]
    assert "max_chars=40" in reasons["long"]
    assert dropped[0].source == "faq.csv:empty"


def test_clean_settings_are_closed():
    with pytest.raises(ValidationError):
        CleanSettings(min_char=3)
