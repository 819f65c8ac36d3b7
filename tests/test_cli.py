"""The CLI verbs a newcomer uses: init, build without question files, eval --json, ask."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.config import load_config

from projects import write_project

runner = CliRunner()


def test_init_writes_a_config_that_loads_and_never_overwrites(tmp_path):
    (tmp_path / "faq.csv").write_text("question,answer\nA?,B.\n")
    (tmp_path / "docs").mkdir()
    target = tmp_path / "assistant"
    result = runner.invoke(
        app,
        [
            "init",
            str(target),
            "--faq",
            str(tmp_path / "faq.csv"),
            "--docs",
            str(tmp_path / "docs"),
            "--name",
            "ACME",
        ],
    )
    assert result.exit_code == 0, result.output
    config = load_config(target)
    assert config.sources.faq == ["../faq.csv"] and config.sources.docs == ["../docs"]
    assert "ACME" in config.system_prompt
    again = runner.invoke(app, ["init", str(target), "--faq", str(tmp_path / "faq.csv")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_without_question_files_a_heldout_faq_split_is_scored_and_never_trained(
    tmp_path, tiny_model
):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["sources"]["questions"] = []
    config["data"]["holdout_ratio"] = 0.34
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))

    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 0, result.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    held = [json.loads(line) for line in (dataset / "heldout.jsonl").read_text().splitlines()]
    trained = (dataset / "train.jsonl").read_text() + (dataset / "val.jsonl").read_text()
    assert len(held) == 2
    for row in held:
        answer = row["messages"][-1]["content"]
        assert answer not in trained, "a held-out answer leaked into training"

    printed = runner.invoke(app, ["eval", str(project), "--json"])
    assert printed.exit_code == 0, printed.output
    card = json.loads(printed.stdout)
    assert card["suites"]["heldout_faq"]["n"] == 2
    assert {"run_id", "base_model", "created", "suites"} <= set(card)


def test_ask_answers_with_the_tuned_and_the_base_model(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    assert runner.invoke(app, ["build", str(project)]).exit_code == 0
    tuned = runner.invoke(
        app, ["ask", str(project), "What is the claim window?", "--max-new-tokens", "5"]
    )
    base = runner.invoke(
        app, ["ask", str(project), "What is the claim window?", "--base", "--max-new-tokens", "5"]
    )
    assert tuned.exit_code == 0 and base.exit_code == 0
    assert tuned.output.strip() and base.output.strip()


def test_ask_before_any_build_says_what_to_do(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    result = runner.invoke(app, ["ask", str(project), "Hi?"])
    assert result.exit_code == 2 and "shoptalk build" in result.output


def test_data_check_lists_every_problem_and_marks_trained_tokens(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    with (project / "faq.csv").open("a") as f:
        f.write("Empty answer here?,\n")
    (project / "chats.jsonl").write_text('{"messages": "hi"}\nnot json\n')
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "2"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "3 problem(s)" in output
    assert "faq.csv:8" in output and "chats.jsonl:1" in output and "chats.jsonl:2" in output
    assert "6 FAQ rows" in output, "the good rows are still counted"
    assert "<|im_start|>assistant" in output


def test_skip_mode_keeps_good_rows_and_reports_bad_ones(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["data"]["on_error"] = "skip"
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    with (project / "faq.csv").open("a") as f:
        f.write("Broken row with no answer?,\n")
    result = runner.invoke(app, ["build", str(project), "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert len(manifest["skipped"]) == 1 and "faq.csv:8" in manifest["skipped"][0]
    assert manifest["counts"]["train"]["faq"] == 6


def test_data_check_samples_are_shown_redacted(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "faq.csv").write_text(
        "question,answer\nWho handles refunds?,Write to jane.roe@example.com or call 13812345678.\n"
    )
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "2"])
    output = " ".join(result.output.split())
    assert "jane.roe@example.com" not in output and "13812345678" not in output
    assert "<EMAIL_1>" in output.replace(" ", "")


def test_data_check_reads_preference_and_question_files(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["sources"]["preferences"] = ["prefs.jsonl"]
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    good = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}
    (project / "prefs.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({"prompt": "x"}) + "\n"
    )
    with (project / "questions" / "domain.jsonl").open("a") as f:
        f.write('{"question": "Where?", "must_include": "Oslo"}\n')
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "0"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "2 problem(s)" in output
    assert "prefs.jsonl:2" in output and "domain.jsonl:3" in output
    assert "1 preference pairs" in output and "3 questions" in output


def test_data_check_shows_chinese_whole(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "faq.csv").write_text("问题,答案\n可以退货吗？,七天内可以无理由退货。\n")
    (project / "chats.jsonl").write_text("")
    result = runner.invoke(app, ["data", "check", str(project), "--samples", "1"])
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())
    assert "\ufffd" not in output
    assert "可以退货吗？" in output and "七天内可以无理由退货。" in output


def test_a_csv_row_with_an_unquoted_comma_is_reported_and_skipped(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    with (project / "faq.csv").open("a") as f:
        f.write("Do you ship abroad?,Yes, to 40 countries.\n")
    check = runner.invoke(app, ["data", "check", str(project), "--samples", "0"])
    assert check.exit_code == 1 and "faq.csv:8" in " ".join(check.output.split())

    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["data"]["on_error"] = "skip"
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    report = runner.invoke(app, ["data", "report", str(project)])
    assert report.exit_code == 0, report.output
    (dataset,) = (project / ".shoptalk" / "datasets").iterdir()
    assert "faq.csv:8" in (dataset / "report.html").read_text(encoding="utf-8")
    assert "Do you ship abroad?" not in (dataset / "train.jsonl").read_text(encoding="utf-8")
