"""`shoptalk index` and `shoptalk ask --rag` with the bundled embedding model (local, ~90 MB)."""

from __future__ import annotations

import yaml
from rag_fakes import write_rag_project
from typer.testing import CliRunner

from shoptalk.cli import app

runner = CliRunner()


def test_index_then_ask_with_rag(tmp_path, tiny_model, one_thread):
    root = write_rag_project(tmp_path / "p", min_similarity=0.2)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config | {"base_model": str(tiny_model)}))

    first = runner.invoke(app, ["index", str(root)])
    assert first.exit_code == 0, first.output
    assert "4 documents, 5 chunks: 5 embedded, 0 reused, 0 removed" in first.output
    (root / "docs" / "legal.md").unlink()
    second = runner.invoke(app, ["index", str(root)])
    assert "3 documents, 4 chunks: 0 embedded, 4 reused, 1 removed" in second.output

    asked = runner.invoke(
        app,
        ["ask", str(root), "Who runs the Oslo depot?", "--rag", "--base", "--max-new-tokens", "4"],
    )
    assert asked.exit_code == 0, asked.output
    off_topic = runner.invoke(
        app, ["ask", str(root), "What is the boiling point of tungsten?", "--rag", "--base"]
    )
    assert "I could not find this in the documents." in off_topic.output


def test_ask_with_rag_before_indexing_says_what_to_run(tmp_path, tiny_model):
    root = write_rag_project(tmp_path / "p")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config | {"base_model": str(tiny_model)}))
    result = runner.invoke(app, ["ask", str(root), "Who runs the depot?", "--rag", "--base"])
    assert result.exit_code == 2 and "shoptalk index" in result.output


def test_ask_answers_with_retrieval_whenever_an_index_exists_unless_no_rag(tmp_path, tiny_model):
    root = write_rag_project(tmp_path / "p", min_similarity=0.2)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config | {"base_model": str(tiny_model)}))
    question = ["ask", str(root), "What is the boiling point of tungsten?", "--base"]
    before = runner.invoke(app, [*question, "--max-new-tokens", "3"])
    assert before.exit_code == 0 and "could not find" not in before.output, "no index: no retrieval"
    assert runner.invoke(app, ["index", str(root)]).exit_code == 0

    grounded = runner.invoke(app, question)
    assert "I could not find this in the documents." in grounded.output
    plain = runner.invoke(app, [*question, "--no-rag", "--max-new-tokens", "3"])
    assert plain.exit_code == 0 and "could not find" not in plain.output

    asked = runner.invoke(
        app, ["ask", str(root), "Who runs the Oslo depot?", "--base", "--max-new-tokens", "4"]
    )
    # The tiny model's words are noise: verification shows the passage instead, with its source.
    assert asked.exit_code == 0, asked.output
    assert "Oslo depot" in asked.output and "docs/handbook.md#Depots" in asked.output


def test_chat_answers_each_question_from_the_documents_once_indexed(tmp_path, tiny_model):
    root = write_rag_project(tmp_path / "p", min_similarity=0.2)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config | {"base_model": str(tiny_model)}))
    assert runner.invoke(app, ["index", str(root)]).exit_code == 0
    typed = "Who runs the Oslo depot?\nWhat is the boiling point of tungsten?\n\n"
    result = runner.invoke(app, ["chat", str(root), "--base", "--max-new-tokens", "4"], input=typed)
    assert result.exit_code == 0, result.output
    assert "with retrieval" in result.output
    answers = [line for line in result.stdout.splitlines() if line.startswith("assistant> ")]
    assert len(answers) == 2 and "Oslo depot" in answers[0]
    assert answers[1] == "assistant> I could not find this in the documents."
