"""Bad input gets a one-paragraph error that names the place, through the real CLI."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from shoptalk.cli import app

from projects import write_project

runner = CliRunner()


def build_error(project) -> str:
    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert "error:" in message
    return message.split("error:", 1)[1]


def edit_config(project, change) -> None:
    path = project / "shoptalk.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


def test_csv_without_answer_column(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "faq.csv").write_text("question,reply_text\nWhat?,That.\n")
    message = build_error(project)
    assert "faq.csv:1" in message and "answer column" in message and "reply_text" in message


def test_jsonl_line_that_is_not_json(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    chats = project / "chats.jsonl"
    chats.write_text(chats.read_text() + '{"messages": [oops\n')
    message = build_error(project)
    assert "chats.jsonl:2" in message and "JSON" in message


def test_messages_given_as_a_string(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "chats.jsonl").write_text('{"messages": "hello there"}\n')
    message = build_error(project)
    assert "chats.jsonl:1" in message and "list" in message and "string" in message


def test_unknown_config_key(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    edit_config(project, lambda c: c["train"].update(learning_rte=0.1))
    message = build_error(project)
    assert (
        "shoptalk.yaml" in message and "train.learning_rte" in message and "unknown key" in message
    )


@pytest.mark.parametrize(
    "name", ["HuggingFaceTB/SmolLM2-135M-Instruc t", "./no-such-model", "smolm2"]
)
def test_misspelt_base_model(tmp_path, tiny_model, name):
    project = write_project(tmp_path / "p", tiny_model)
    edit_config(project, lambda c: c.update(base_model=name))
    message = build_error(project)
    assert "base_model" in message and repr(name) in message


def test_question_file_with_a_bad_row(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    (project / "questions" / "domain.jsonl").write_text(
        '{"question": "Hi?", "must_include": "47 days"}\n'
    )
    result = runner.invoke(app, ["eval", str(project)])
    assert result.exit_code == 2
    assert "domain.jsonl:1" in " ".join(result.output.split())
