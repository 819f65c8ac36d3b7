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


MISSPELT = "HuggingFaceTB/SmolLM2-135M-Instrcut"
MODEL_COMMANDS = [["build"], ["train"], ["eval"], ["export"], ["chat"], ["ask", "{p}", "Hi?"]]


def model_error(project, args: list[str], limit: float = 10.0) -> str:
    import time

    argv = [a.format(p=project) for a in args] if "{p}" in args[1:] else [*args, str(project)]
    started = time.perf_counter()
    result = runner.invoke(app, argv, input="Hi\n")
    assert time.perf_counter() - started < limit, "no retries, no download"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert message.count("error:") == 1
    return message.split("error:", 1)[1]


@pytest.mark.parametrize("args", MODEL_COMMANDS, ids=lambda a: a[0])
def test_a_misspelt_hub_id_offline_fails_first_naming_base_model(
    tmp_path, tiny_model, monkeypatch, args
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project = write_project(tmp_path / "p", tiny_model)
    edit_config(project, lambda c: c.update(base_model=MISSPELT))

    message = model_error(project, args)

    assert f"base_model: '{MISSPELT}'" in message and "HF_HUB_OFFLINE is set" in message
    assert not (project / ".shoptalk" / "datasets").exists(), "no stage ran before the check"


def test_an_unreachable_hub_is_said_in_one_paragraph(tmp_path, tiny_model, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    project = write_project(tmp_path / "p", tiny_model)
    edit_config(project, lambda c: c.update(base_model=MISSPELT))

    message = model_error(project, ["build"])

    assert f"base_model: '{MISSPELT}'" in message and "could not be asked within 3 s" in message


def test_a_hub_id_the_hub_does_not_know_is_called_a_spelling_problem(
    tmp_path, tiny_model, monkeypatch
):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    project = write_project(tmp_path / "p", tiny_model)
    edit_config(project, lambda c: c.update(base_model=MISSPELT))
    try:
        message = model_error(project, ["eval"])
    finally:
        server.shutdown()

    assert f"has no model '{MISSPELT}'" in message and "Check the spelling" in message
