import json
from pathlib import Path

import pytest

from shoptalk.data.faq import read_faq
from shoptalk.errors import SourceError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def pairs(conversations):
    return [(c.messages[0].content, c.messages[1].content) for c in conversations]


def test_gbk_csv_with_chinese_header_and_a_multiline_cell(tmp_path):
    text = (
        "编号,问题,答案\r\n"
        '1,怎么退货？,"登录账户，\r\n在订单页点击“退货”。"\r\n'
        "2,运费谁付？,质量问题由我们承担。\r\n"
    )
    path = write(tmp_path / "faq.csv", text, encoding="gbk")

    faq = read_faq(path, tmp_path)

    assert pairs(faq) == [
        ("怎么退货？", "登录账户，\n在订单页点击“退货”。"),
        ("运费谁付？", "质量问题由我们承担。"),
    ]
    # The second row starts on line 4: the first one spans lines 2-3.
    assert [c.source for c in faq] == ["faq.csv:2", "faq.csv:4"]
    assert [m.role for m in faq[0].messages] == ["user", "assistant"]
    assert all(c.kind == "faq" for c in faq)
    assert len({c.id for c in faq}) == 2


def test_utf8_bom_csv_with_capitalised_header(tmp_path):
    path = write(
        tmp_path / "faq.csv", "Question,Answer\nHow long is shipping?,  3-5 days  \n", "utf-8-sig"
    )

    [row] = read_faq(path, tmp_path)

    assert pairs([row]) == [("How long is shipping?", "3-5 days")]
    assert row.source == "faq.csv:2"


def test_tsv_and_semicolon_csv_and_aliases(tmp_path):
    tsv = write(tmp_path / "faq.tsv", "q\ta\nOpen on Sunday?\tNo.\n")
    semicolon = write(tmp_path / "excel.csv", "prompt;reply\nOpen on Sunday?;No, closed.\n")

    assert pairs(read_faq(tsv, tmp_path)) == [("Open on Sunday?", "No.")]
    assert pairs(read_faq(semicolon, tmp_path)) == [("Open on Sunday?", "No, closed.")]


def test_jsonl_and_json_list_faq(tmp_path):
    jsonl = write(
        tmp_path / "faq.jsonl",
        '{"question": "Q1", "answer": "A1"}\n\n{"问题": "Q2", "回答": "A2"}\n',
    )
    items = [{"q": "Q3", "a": "A3"}, {"Question": "Q4", "Response": "A4"}]
    listed = write(tmp_path / "faq.json", json.dumps(items, indent=2))

    assert pairs(read_faq(jsonl, tmp_path)) == [("Q1", "A1"), ("Q2", "A2")]
    assert [c.source for c in read_faq(jsonl, tmp_path)] == ["faq.jsonl:1", "faq.jsonl:3"]
    assert pairs(read_faq(listed, tmp_path)) == [("Q3", "A3"), ("Q4", "A4")]
    # A JSON list item's source is the line the item starts on.
    assert [c.source for c in read_faq(listed, tmp_path)] == ["faq.json:2", "faq.json:6"]


def test_csv_missing_answer_column_names_file_line_and_columns(tmp_path):
    path = write(tmp_path / "faq.csv", "question,notes\nWhere are you?,n/a\n")

    with pytest.raises(SourceError) as info:
        read_faq(path, tmp_path)

    message = str(info.value)
    assert message.startswith(f"{path}:1: expected a header with a question column (one of ")
    assert "an answer column (one of answer, a, response, reply, 答案, 回答)" in message
    assert message.endswith("found columns ['question', 'notes']")


def test_empty_answer_names_the_line_and_the_column(tmp_path):
    path = write(tmp_path / "faq.csv", "问题,答案\n怎么退货？,七天内\n运费谁付？,  \n")

    with pytest.raises(SourceError) as info:
        read_faq(path, tmp_path)

    assert (info.value.path, info.value.line) == (str(path), 3)
    assert str(info.value) == f"{path}:3: expected a non-empty '答案', found an empty string"


def test_jsonl_line_that_is_not_json(tmp_path):
    path = write(tmp_path / "faq.jsonl", '{"q": "Q1", "a": "A1"}\n{"q": "Q2", "a": A2}\n')

    with pytest.raises(SourceError) as info:
        read_faq(path, tmp_path)

    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: expected a JSON object, found invalid JSON: ")


def test_json_list_errors_say_which_item(tmp_path):
    path = write(tmp_path / "faq.json", '[{"q": "Q1", "a": "A1"}, {"q": "Q2"}]')

    with pytest.raises(SourceError) as info:
        read_faq(path, tmp_path)

    assert str(info.value).startswith(f"{path}:1: item 2: expected a question key")


def test_skip_and_report_keeps_good_rows_and_lists_every_bad_one(tmp_path):
    path = write(tmp_path / "faq.csv", "question,answer\nQ1,A1\n,A2\nQ3,\nQ4,A4\n")
    errors: list[SourceError] = []

    faq = read_faq(path, tmp_path, errors)

    assert pairs(faq) == [("Q1", "A1"), ("Q4", "A4")]
    assert [(e.line, e.detail) for e in errors] == [
        (3, "expected a non-empty 'question', found an empty string"),
        (4, "expected a non-empty 'answer', found an empty string"),
    ]


def test_file_level_error_is_collected_too(tmp_path):
    path = write(tmp_path / "faq.csv", "")
    errors: list[SourceError] = []

    assert read_faq(path, tmp_path, errors) == []
    assert len(errors) == 1 and "found an empty file" in errors[0].detail


def test_utf16_tsv_as_excel_saves_unicode_text(tmp_path):
    path = write(tmp_path / "faq.tsv", "问题\t答案\r\n几点开门？\t九点。\r\n", encoding="utf-16")

    assert pairs(read_faq(path, tmp_path)) == [("几点开门？", "九点。")]


def test_a_row_with_more_fields_than_the_header_is_an_error_naming_its_line(tmp_path):
    path = write(
        tmp_path / "faq.csv",
        "question,answer\n"
        "Do you ship abroad?,Yes, to 40 countries.\n"
        "Do you ship on Sundays?,No.,,\n"  # trailing empty fields are a spreadsheet's
        '"Is it quoted?","Yes, it is."\n',
    )

    with pytest.raises(SourceError, match=r"faq.csv:2: expected at most 2 fields .* found 3"):
        read_faq(path, tmp_path)

    errors: list[SourceError] = []
    faq = read_faq(path, tmp_path, errors)
    assert pairs(faq) == [("Do you ship on Sundays?", "No."), ("Is it quoted?", "Yes, it is.")]
    assert [(e.line, "double quotes" in e.detail) for e in errors] == [(2, True)]
