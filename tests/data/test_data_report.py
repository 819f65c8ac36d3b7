import csv
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.data.dataset import build_dataset
from shoptalk.data.report import (
    build_report,
    previous_dataset,
    report_for,
    svg_histogram,
    write_report,
)
from shoptalk.project import Project

from projects import FAQ, write_project

SECRET_DROPPED = "dropped.person@corp.example"
SECRET_DUPLICATE = "twice.person@corp.example"
SECRET_KEPT = "kept.person@corp.example"
EXTRA_FAQ = [
    ("How do I reach the night desk?", f"Write to {SECRET_KEPT} after 22:00."),
    ("Who handles damaged pallets?", f"Mail {SECRET_DUPLICATE} with photos."),
    ("Who handles damaged pallets?", f"Mail {SECRET_DUPLICATE} with photos."),
    ("?", f"Contact {SECRET_DROPPED} for anything else."),  # too short: dropped
    ("退货期限是多少天？", "退货期限是自签收之日起七十五天。"),
]


def write_faq(root: Path, rows: list[tuple[str, str]]) -> None:
    with (root / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(rows)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = write_project(tmp_path / "kestrel", tmp_path / "no-model")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["data"] |= {"on_error": "skip", "clean": {"min_chars": 2}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    write_faq(root, FAQ + EXTRA_FAQ)
    with (root / "chats.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"messages": "not a list"}\n')  # skipped with an error
    return Project.open(root)


def build(project: Project):
    return build_dataset(project.config, project.root, project.datasets)


def test_counts_match_the_dataset_files(project):
    dataset = build(project)
    manifest = json.loads((dataset.path / "manifest.json").read_text(encoding="utf-8"))
    report = build_report(project, dataset, None)
    kinds = report["counts"]["kinds"]
    for kind, n in manifest["counts"]["train"].items():
        assert kinds[kind]["train"] == n
    assert kinds["paraphrase"]["val"] == manifest["counts"]["val"]
    assert kinds["doc_text"]["total"] == manifest["counts"]["text_chunks"] == 2
    # 11 rows: one dropped as too short, one removed as an exact duplicate.
    assert kinds["faq"]["total"] == len(FAQ) + len(EXTRA_FAQ) - 2
    sources = report["counts"]["sources"]
    assert sources["faq.csv"]["faq"] == kinds["faq"]["total"]
    assert sources["chats.jsonl"] == {"chat": 1, "total": 1}
    assert sources["docs/handbook.md"]["doc_text"] == 2
    assert report["counts"]["total"] == sum(k["total"] for k in kinds.values())
    assert report["languages"]["chinese"] >= 1
    assert 0 < report["languages"]["chinese_share"] < 0.5


def test_filtered_duplicates_and_pii_are_reported_without_values(project):
    json_path, html_path = write_report(project, build(project))
    report = json.loads(json_path.read_text(encoding="utf-8"))
    page = html_path.read_text(encoding="utf-8")
    assert report["pii_redacted"]["email"] >= 2
    assert "<td>email</td>" in page
    [group] = report["filtered"]["by_reason"]
    assert group["count"] == 1
    assert group["examples"][0]["source"] == "faq.csv:11"
    assert "min_chars=2" in group["reason"]
    [skipped] = report["filtered"]["skipped"]
    assert skipped.startswith("chats.jsonl:2:")  # relative to the project, not /tmp/...
    [cluster] = report["duplicates"]
    assert cluster["kind"] == "exact"
    assert cluster["kept"]["source"] == "faq.csv:9"
    assert len(cluster["removed"]) == 1
    for secret in (SECRET_DROPPED, SECRET_DUPLICATE, SECRET_KEPT):
        for text in (page, json_path.read_text(encoding="utf-8")):
            assert secret not in text
            assert secret.split("@")[0] not in text


def test_diff_finds_one_added_one_removed_one_changed_faq_row(project):
    first = build(project)
    rows = FAQ + EXTRA_FAQ
    changed = (rows[3][0], "The pallet fee is $21 per pallet.")
    # Row 2 removed (every later line shifts up), row 4 edited, one row appended.
    rows = [rows[0], rows[2], changed, *rows[4:], ("Is there parking?", "Yes, behind depot B.")]
    write_faq(project.root, rows)
    second = build(project)
    past = (first.path / "manifest.json").stat().st_mtime - 60
    os.utime(first.path / "manifest.json", (past, past))  # the first version is the older one
    assert previous_dataset(project.datasets, second).hash == first.hash
    assert previous_dataset(project.datasets, first).hash == second.hash

    diff = build_report(project, second, previous_dataset(project.datasets, second))["previous"]
    assert diff["dataset"] == first.hash
    assert diff["added"]["count"] == 1
    assert diff["added"]["examples"] == [
        {"source": f"faq.csv:{len(rows) + 1}", "question": "Is there parking?"}
    ]
    assert diff["removed"]["count"] == 1
    assert diff["removed"]["examples"] == [{"source": "faq.csv:3", "question": FAQ[1][0]}]
    assert diff["changed"]["count"] == 1
    assert diff["changed"]["examples"] == [{"source": "faq.csv:4", "question": FAQ[3][0]}]


class Tags(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.add(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def test_html_is_self_contained_balanced_and_has_charts(project):
    build(project)
    write_faq(project.root, FAQ)
    _, html_path = write_report(project, build(project))
    page = html_path.read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    assert {"svg", "table", "section", "h1"} <= parser.seen
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "https://" not in page
    assert html_path.parent.name in page  # the dataset hash in the header
    assert "Changes since the previous version" in page
    assert "could not be loaded" in page  # no model here: approximate lengths, said so


def test_token_lengths_use_the_tokenizer_when_given(project):
    class ByteTokenizer:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return list(text.encode())

    dataset = build(project)
    lengths = build_report(project, dataset, None, ByteTokenizer())["token_lengths"]
    assert lengths["unit"] == "tokens"
    longest = max(len(c.text.encode()) for c in dataset.texts())
    assert lengths["kinds"]["doc_text"]["max"] == longest
    approx = build_report(project, dataset, None)["token_lengths"]
    assert approx["unit"].startswith("words")
    assert approx["kinds"]["doc_text"]["max"] < longest


def test_svg_histogram_draws_one_bar_per_bin_and_escapes_the_title():
    svg = svg_histogram([1, 2, 2, 3, 40], 4, "<faq> & co")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 4
    assert "&lt;faq&gt; &amp; co" in svg and "<faq>" not in svg
    assert svg_histogram([], 4, "empty") == ""


def test_cli_data_report_writes_both_files(project):
    result = CliRunner().invoke(app, ["data", "report", str(project.root)])
    assert result.exit_code == 0, result.output
    [folder] = list(project.datasets.iterdir())
    assert (folder / "report.json").is_file() and (folder / "report.html").is_file()
    assert "report.html" in result.output and "report.json" in result.output


def test_a_report_for_a_reader_leaves_out_the_files_it_may_not_see():
    counts = {"faq": 2, "total": 2}
    report = {
        "counts": {"sources": {"faq.csv": counts, "docs/hr/pay.md": counts}},
        "filtered": {
            "by_reason": [{"reason": "short", "count": 2, "examples": [
                {"id": "a", "source": "docs/hr/pay.md#Pay"}, {"id": "b", "source": "faq.csv:3"}]}],
            "skipped": ["docs/hr/pay.md:4: bad row", "faq.csv:9: bad row"],
        },
        "duplicates": [
            {"kind": "faq", "kept": {"id": "c", "source": "faq.csv:2"},
             "removed": [{"id": "d", "source": "docs/hr/pay.md:7"}]},
        ],
        "previous": {"added": {"count": 1, "examples": [
            {"source": "docs/hr/pay.md#Pay", "question": "What is the pay?"}]},
            "removed": {"count": 0, "examples": []}, "changed": {"count": 0, "examples": []}},
    }  # fmt: skip
    shown = report_for(report, lambda name: not name.startswith("docs/hr/"))
    assert "docs/hr/pay.md" not in json.dumps(shown) and "What is the pay" not in json.dumps(shown)
    assert shown["counts"]["sources"]["(1 files this key may not read)"] == counts
    assert shown["filtered"]["skipped"] == [
        "faq.csv:9: bad row",
        "(1 errors in files this key may not read)",
    ]
    assert shown["filtered"]["by_reason"][0]["count"] == 2  # the totals stay
    assert shown["duplicates"] == [] and shown["previous"]["added"]["count"] == 1
    assert report_for(report, lambda name: True) == report
