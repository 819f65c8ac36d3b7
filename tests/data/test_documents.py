from pathlib import Path

import pytest

from shoptalk.data.documents import decode_text, document_groups, markdown_groups, read_document
from shoptalk.errors import SourceError

RETURNS_MD = """\
---
title: Returns
groups:
  - support
  - finance
---
This page is the returns policy.

# Returns policy

We accept returns of unused items.

## Claim window

| plan  | days |
| ----- | ---- |
| basic | 14   |
| pro   | 30   |

## Refund method
### Card payments

- refunded to the card
- within 5 working days

```
# not a heading: a comment in code
```

# Contact
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_markdown_sections_follow_the_heading_path(tmp_path):
    path = write(tmp_path / "docs" / "returns.md", RETURNS_MD)

    chunks = read_document(path, tmp_path)

    assert [c.headings for c in chunks] == [
        [],
        ["Returns policy"],
        ["Returns policy", "Claim window"],
        ["Returns policy", "Refund method", "Card payments"],
    ]
    assert [c.source for c in chunks] == [
        "docs/returns.md:7",  # text before the first heading: first line after front matter
        "docs/returns.md#Returns policy",
        "docs/returns.md#Claim window",
        "docs/returns.md#Card payments",
    ]
    assert chunks[2].text == (
        "| plan  | days |\n| ----- | ---- |\n| basic | 14   |\n| pro   | 30   |"
    )
    assert chunks[3].text.startswith("- refunded to the card\n- within 5 working days\n\n```")
    assert "# not a heading" in chunks[3].text  # a `#` inside a code fence stays code
    # "Refund method" and "Contact" have no body of their own: no chunk.
    assert all(c.acl == ["support", "finance"] for c in chunks)


def test_ids_are_short_stable_and_distinct(tmp_path):
    path = write(tmp_path / "returns.md", RETURNS_MD)

    first, second = read_document(path, tmp_path), read_document(path, tmp_path)

    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)
    assert all(len(c.id) == 16 and int(c.id, 16) >= 0 for c in first)


def test_acl_from_comma_string_or_parent_folder(tmp_path):
    listed = write(tmp_path / "a.md", "---\nacl: hr, legal\n---\n# A\nbody\n")
    in_folder = write(tmp_path / "docs" / "hr" / "leave.md", "# Leave\n20 days a year.\n")
    at_root = write(tmp_path / "open.md", "# Open\nfor everyone\n")

    assert read_document(listed, tmp_path)[0].acl == ["hr", "legal"]
    assert read_document(in_folder, tmp_path)[0].acl == ["docs/hr"]
    assert read_document(at_root, tmp_path)[0].acl == []


def test_text_file_is_one_chunk_pointing_at_its_first_line(tmp_path):
    path = write(tmp_path / "notes.txt", "\n\n# not a heading in a text file\nsecond line\n\n")

    [chunk] = read_document(path, tmp_path)

    assert chunk.text == "# not a heading in a text file\nsecond line"
    assert chunk.source == "notes.txt:3"
    assert chunk.headings == []


def test_path_outside_root_is_named_as_given(tmp_path):
    path = write(tmp_path / "elsewhere" / "a.md", "# A\nbody\n")

    [chunk] = read_document(path, tmp_path / "project")

    assert chunk.source == f"{path.as_posix()}#A"


def test_gb18030_and_bom_documents_decode_without_mangling(tmp_path):
    gbk = write(tmp_path / "gbk.md", "# 退货政策\n七天无理由退货。\n", encoding="gb18030")
    bom = write(tmp_path / "bom.md", "# Policy\r\nbody\r\n", encoding="utf-8-sig")

    assert read_document(gbk, tmp_path)[0].text == "七天无理由退货。"
    assert read_document(gbk, tmp_path)[0].headings == ["退货政策"]
    assert read_document(bom, tmp_path)[0].headings == ["Policy"]
    assert read_document(bom, tmp_path)[0].text == "body"


def test_binary_file_named_md_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "logo.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")

    with pytest.raises(SourceError) as info:
        read_document(path, tmp_path)

    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: expected a UTF-8 text document, found binary data")


def test_undecodable_bytes_are_an_error_not_replacement_characters(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_bytes(b"fine\n\xff\xfe\xfd\xfc broken\n")

    with pytest.raises(SourceError, match="found binary data .*line 2"):
        decode_text(path)


def test_utf8_damaged_in_one_place_is_not_read_as_gbk(tmp_path):
    path = tmp_path / "faq.md"
    path.write_bytes("# 退货政策\n七天无理由退货，运费由我们承担。\n".encode() + b"bad \xff byte\n")

    with pytest.raises(SourceError) as info:
        read_document(path, tmp_path)

    assert info.value.line == 3
    assert info.value.detail.startswith("expected UTF-8 text, found a byte that is not UTF-8")


def test_invalid_front_matter_names_the_line(tmp_path):
    path = write(tmp_path / "bad.md", "---\ntitle: ok\ngroups: [a, b\n---\n# A\nbody\n")

    with pytest.raises(SourceError) as info:
        read_document(path, tmp_path)

    assert info.value.line is not None and info.value.line >= 3
    assert "expected YAML front matter" in info.value.detail


# (declared, matching rag.access groups, rag.folder_groups) -> groups: one case per combination.
@pytest.mark.parametrize(
    ("declared", "access", "folder_groups", "expected"),
    [
        (None, {}, False, []),  # nothing says anything: every key
        (["hr"], {}, False, ["hr"]),  # front matter alone
        (None, {"docs/hr/*": ["hr", "payroll"]}, False, ["hr", "payroll"]),  # rag.access alone
        (None, {}, True, ["docs/hr"]),  # the folder alone
        # Front matter only narrows: a group the project does not give is dropped.
        (["legal"], {"docs/hr/*": ["hr"]}, False, ["hr"]),
        (["legal"], {}, True, ["docs/hr"]),
        (["hr"], {"docs/hr/*": ["hr", "payroll"]}, False, ["hr"]),  # narrowed to one
        (["hr", "legal"], {"docs/hr/*": ["hr", "payroll"]}, False, ["hr"]),
        (["docs/hr"], {}, True, ["docs/hr"]),
        (None, {"docs/hr/*": ["hr"]}, True, ["hr"]),  # rag.access beats the folder
        (["legal"], {"docs/hr/*": ["hr"]}, True, ["hr"]),  # all three: rag.access
        (["hr"], {"docs/hr/*": ["hr"]}, True, ["hr"]),
        (None, {"docs/*": ["staff"], "*/pay.md": ["hr", "staff"]}, False, ["staff", "hr"]),
        (None, {"docs/it/*": ["it"]}, False, []),  # a pattern that does not match
    ],
)
def test_front_matter_narrows_the_project_s_groups_and_never_widens_them(
    declared, access, folder_groups, expected
):
    groups = document_groups(declared, "docs/hr/pay.md", ["docs/hr"], access, folder_groups)
    assert groups == expected


def test_front_matter_groups_equal_to_the_folder_name_are_still_the_document_s(tmp_path):
    path = write(tmp_path / "hr" / "pay.md", "---\ngroups: [hr]\n---\n# Pay\nOn the 25th.\n")
    assert markdown_groups(path) == ["hr"]
    assert document_groups(markdown_groups(path), "hr/pay.md", ["hr"], {}, False) == ["hr"]
    assert markdown_groups(write(tmp_path / "open.md", "# Open\nfor all\n")) is None


@pytest.mark.parametrize(
    ("front_matter", "line", "message"),
    [
        ("groups: []", 2, "'groups' names no group"),
        ("title: Pay\ngroups:", 3, "'groups' names no group"),
        ("acl: ' , '", 2, "'acl' names no group"),
        ("group: hr", 2, "key 'group' is not read"),
        ("Groups: [hr]", 2, "key 'Groups' is not read"),
        ("groups: {hr: true}", 2, "expected 'groups' as a list of group names, found dict"),
        ("groups: [[hr]]", 2, "found a nested value"),
    ],
)
def test_groups_that_cannot_be_told_are_an_error_never_public(
    tmp_path, front_matter, line, message
):
    path = write(tmp_path / "pay.md", f"---\n{front_matter}\n---\n# Pay\nOn the 25th.\n")
    with pytest.raises(SourceError, match=message) as caught:
        read_document(path, tmp_path)
    assert caught.value.line == line
