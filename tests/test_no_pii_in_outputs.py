"""No planted personal value reaches any file shoptalk writes, or anything it prints.

Values are planted in FAQ rows, a document, a chat and in malformed rows that are
skipped (`data.on_error: skip`), so error messages, the skipped-errors list and
the logs are checked along with the dataset, the run, the eval and the report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoptalk.cli import app

from projects import DOC, FAQ, write_project

runner = CliRunner()

EMAIL = "jane.doe@privatemail.example"
PHONE = "139-1234-5678"  # China mobile
CN_ID = "110105199003071239"  # valid MOD 11-2 check digit
CARD = "4111 1111 1111 1111"  # Luhn-valid Visa
API_KEY = "sk-proj-Q7fTz2LmN8vR4kXw1YhB6cJ9dPs3"
PLANTED = {
    "email": [EMAIL],
    "phone": [PHONE, PHONE.replace("-", "")],
    "cn_id": [CN_ID],
    "card": [CARD, CARD.replace(" ", "")],
    "api_key": [API_KEY],
}
# Malformed: the role is a value an error message would quote.
BAD_ROLE = {"messages": [{"role": f"customer {PHONE}", "content": "Hello there"}]}


def plant(root: Path) -> None:
    faq = [
        *FAQ,
        ("How do I reach the claims lead?", f"Write to {EMAIL} or call {PHONE}."),
        ("Which card pays the depot fee?", f"The company card {CARD} pays it."),
        ("What is the API key of the tracker?", f"The tracker uses {API_KEY}."),
        # Malformed: no answer. The question holds a value the error must not quote.
        (f"Who owns {EMAIL}?", ""),
    ]
    with (root / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(faq)
    doc = DOC + (
        f"\n## Contacts\n\nThe night lead is reachable at {PHONE.replace('-', '')} "
        f"and {EMAIL}. Her resident ID is {CN_ID}; expenses go on {CARD.replace(' ', '')}.\n"
    )
    (root / "docs" / "handbook.md").write_text(doc, encoding="utf-8")
    chats = [
        {
            "messages": [
                {"role": "user", "content": f"My ID is {CN_ID} and my card {CARD}."},
                {
                    "role": "assistant",
                    "content": f"Thanks, I will mail {EMAIL} with key {API_KEY}.",
                },
            ]
        },
        BAD_ROLE,
    ]
    with (root / "chats.jsonl").open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(c) + "\n" for c in chats))
        f.write(f'{{"messages": [{{"role": "user", "content": "{EMAIL}"\n')  # broken JSON


def leaks(text: str) -> list[str]:
    return [f"{kind}: {v!r}" for kind, values in PLANTED.items() for v in values if v in text]


def test_no_planted_value_in_any_output(tmp_path, tiny_model, one_thread):
    root = write_project(tmp_path / "p", tiny_model, epochs=1, tokens_per_step=4096)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["data"]["on_error"] = "skip"
    # The retention suites score bundled general prompts, never project data; off for speed.
    config["eval"]["retention"] = False
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    plant(root)

    outputs = []
    for command in (["data", "check", "--samples", "0"], ["build"], ["data", "report"]):
        result = runner.invoke(app, [*command, str(root)])
        outputs.append((command, result))
        assert result.exception is None or isinstance(result.exception, SystemExit), command
    check, build, report = (r for _, r in outputs)
    assert check.exit_code == 1 and "problem" in check.output, "the malformed rows are reported"
    assert build.exit_code == 0, build.output
    assert report.exit_code == 0, report.output

    found = {
        f"`shoptalk {' '.join(command)}`: {leak}"
        for command, result in outputs
        for leak in leaks(result.output)
    }
    files = [p for p in (root / ".shoptalk").rglob("*") if p.is_file()]
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        found |= {f"{path.relative_to(root)}: {leak}" for leak in leaks(text)}
    assert not found, "planted values leaked:\n" + "\n".join(sorted(found))

    # The test checked something: the values were in the data, redacted and counted,
    # and the malformed rows reached the skipped-errors list.
    (manifest,) = (root / ".shoptalk" / "datasets").glob("*/manifest.json")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    assert {"email", "phone", "cn_id", "bank_card", "secret"} <= set(data["pii_redacted"])
    assert len(data["skipped"]) >= 3
    suffixes = {p.suffix for p in files}
    assert {".json", ".jsonl", ".html", ".log"} <= suffixes


def test_a_stopping_error_is_printed_without_the_value(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)  # on_error: stop, the default
    (root / "chats.jsonl").write_text(json.dumps(BAD_ROLE) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["build", str(root)])
    assert result.exit_code == 2, result.output
    assert "chats.jsonl:1" in result.output and "found 'customer <PHONE_1>'" in result.output
    assert not leaks(result.output), result.output


# NER (data.pii.ner): names and addresses are guesses, not validated values, but once
# found they must be as invisible as a phone number.
NER_PLANTED = ["林志强", "湖滨南路256号", "Sarah Johnson", "55 Water Street"]


def test_no_planted_name_or_address_in_any_output_with_ner(tmp_path, tiny_model):
    spacy = pytest.importorskip("spacy")
    pytest.importorskip("presidio_analyzer")
    nlp = spacy.blank("en")  # a real pipeline that knows one name: no model to download
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Sarah Johnson"}])
    nlp.to_disk(tmp_path / "en_ner")
    root = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["data"] |= {
        "on_error": "skip",
        "pii": {"ner": "auto", "ner_model": str(tmp_path / "en_ner")},
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with (root / "faq.csv").open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [
                ("谁负责厦门门店？", "林志强负责，地址是厦门市思明区湖滨南路256号。"),
                ("Who signs the contracts?", "Sarah Johnson signs them at 55 Water Street."),
            ]
        )
    bad_roles = [  # malformed: error messages would quote the role
        {"messages": [{"role": "客户林志强", "content": "你好"}]},
        {"messages": [{"role": "customer Sarah Johnson", "content": "Hello"}]},
    ]
    with (root / "chats.jsonl").open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in bad_roles))

    check = runner.invoke(app, ["data", "check", "--samples", "3", str(root)])
    report = runner.invoke(app, ["data", "report", str(root)])

    assert check.exit_code == 1 and "problem" in check.output, check.output
    assert "'customer <PERSON_1>'" in check.output, "the malformed role is quoted, redacted"
    assert report.exit_code == 0, report.output
    texts = {"check": check.output, "report": report.output}
    texts |= {
        str(p.relative_to(root)): p.read_bytes().decode("utf-8", errors="replace")
        for p in (root / ".shoptalk").rglob("*")
        if p.is_file()
    }
    leaked = sorted(f"{where}: {v!r}" for where, t in texts.items() for v in NER_PLANTED if v in t)
    assert not leaked, "planted values leaked:\n" + "\n".join(leaked)
    (manifest,) = (root / ".shoptalk" / "datasets").glob("*/manifest.json")
    found = json.loads(manifest.read_text(encoding="utf-8"))["pii_redacted"]
    assert found.get("person", 0) >= 2 and found.get("address", 0) >= 2, found


def test_a_stopping_error_is_printed_without_a_name_with_ner(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)  # on_error: stop, the default
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["data"]["pii"] = {"ner": "jieba"}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    bad = {"messages": [{"role": "客户林志强", "content": "你好"}]}
    (root / "chats.jsonl").write_text(json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")

    result = runner.invoke(app, ["build", str(root)])

    assert result.exit_code == 2, result.output
    assert "chats.jsonl:1" in result.output and "'客户<PERSON_1>'" in result.output
    written = [p.read_text(errors="replace") for p in root.joinpath(".shoptalk").rglob("*.log")]
    assert not [t for t in [result.output, *written] if "林志强" in t]
