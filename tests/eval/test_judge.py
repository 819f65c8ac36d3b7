"""LLM-as-judge against a stub OpenAI-compatible judge on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator

import pytest
import yaml
from fastapi import FastAPI

from shoptalk.errors import ShoptalkError
from shoptalk.eval.judge import JudgeSettings, combine, parse_verdict, run_judge
from shoptalk.eval.run import evaluate
from shoptalk.project import Project
from shoptalk.serve.server import BackgroundServer

from projects import write_project

pytestmark = pytest.mark.usefixtures("one_thread")


def stub_judge(policy: str, seen: list[dict]) -> FastAPI:
    """A judge that is 'fair' (picks the answer holding the reference), or always says 'A'."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        seen.append(body)
        text = body["messages"][1]["content"]
        reference = text.split("Reference answer:\n")[1].split("\n\n")[0]
        first = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        second = text.split("Answer B:\n")[1]
        if policy == "first":
            winner = "A"
        elif (reference in first) != (reference in second):
            winner = "A" if reference in first else "B"
        else:
            winner = "tie"
        verdict = {"rationale": f"{winner} states the reference", "winner": winner}
        return {"choices": [{"message": {"role": "assistant", "content": json.dumps(verdict)}}]}

    return app


@contextlib.contextmanager
def judge(policy: str) -> Iterator[tuple[JudgeSettings, list[dict]]]:
    seen: list[dict] = []
    with BackgroundServer(stub_judge(policy, seen)) as url:
        yield JudgeSettings(url=url + "/v1", model="stub-judge"), seen


# (question, reference, base answer, tuned answer): the tuned model knows 3 of 4.
ITEMS = [
    ("Claim window?", "47 days", "I don't know.", "It is 47 days."),
    ("Depot manager?", "Ingrid Solberg", "Someone.", "Ingrid Solberg runs it."),
    ("Pallet fee?", "$18", "About $20.", "It is $18 per pallet."),
    ("Support hours?", "7:30", "Ask support.", "Ask support."),
]


def test_both_orders_are_asked_and_a_fair_judge_picks_the_tuned_answers():
    with judge("fair") as (settings, seen):
        details = run_judge(settings, ITEMS)
    assert len(seen) == 2 * len(ITEMS)
    for i, (question, _, base, tuned) in enumerate(ITEMS[:3]):  # the 4th: equal answers
        first, second = (
            seen[2 * i]["messages"][1]["content"],
            seen[2 * i + 1]["messages"][1]["content"],
        )
        assert question in first and question in second
        assert first.index(base) < first.index(tuned), "base first, then tuned"
        assert second.index(tuned) < second.index(base), "then swapped"
        assert seen[2 * i]["temperature"] == 0 and seen[2 * i]["model"] == "stub-judge"
    outcomes = [j["outcome"] for j in details["judgements"]]
    assert outcomes == ["tuned", "tuned", "tuned", "tie"]
    assert details["win_rate"][0] == 0.75 and details["loss_rate"][0] == 0.0
    assert details["judgements"][0]["rationale_base_first"] == "B states the reference"


def test_a_position_biased_judge_is_cancelled_out():
    with judge("first") as (settings, seen):
        details = run_judge(settings, ITEMS)
    assert len(seen) == 2 * len(ITEMS)
    # "A" both times means base in one order and tuned in the other: a tie, never a win.
    assert [j["outcome"] for j in details["judgements"]] == ["tie"] * 4
    assert details["tie_rate"][:1] == [1.0] and details["win_rate"] == [0.0, 0.0, 0.0]


def test_verdicts_combine_and_parse():
    assert combine("B", "A") == "tuned" and combine("A", "B") == "base"
    assert combine("A", "A") == combine("tie", "A") == combine("tie", "tie") == "tie"
    assert parse_verdict('Sure! {"rationale": "B is right", "winner": "b"}') == ("B", "B is right")
    assert parse_verdict('{"winner": "tie", "rationale": "same"')[0] == "tie"
    with pytest.raises(ShoptalkError, match="names no winner"):
        parse_verdict("I think both are fine.")


def test_a_missing_key_or_a_dead_judge_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    settings = JudgeSettings(
        url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_JUDGE_KEY"
    )
    with pytest.raises(ShoptalkError, match="NO_SUCH_JUDGE_KEY, which is not set"):
        run_judge(settings, ITEMS)
    dead = JudgeSettings(url="http://127.0.0.1:9/v1", model="m", timeout_s=2)
    with pytest.raises(ShoptalkError, match="the judge at http://127.0.0.1:9/v1 .* failed"):
        run_judge(dead, ITEMS)


def test_the_scorecard_carries_the_judge_suite_and_each_verdict(tmp_path, tiny_model):
    with judge("first") as (settings, seen):
        root = write_project(tmp_path / "p", tiny_model)
        config = yaml.safe_load((root / "shoptalk.yaml").read_text())
        config["eval"]["judge"] = settings.model_dump()
        (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
        project = Project.open(root)
        run_dir = project.runs / "run-same"
        shutil.copytree(tiny_model, run_dir / "final")
        from shoptalk.artifacts import RunArtifact
        from shoptalk.eval.run import question_suites
        from shoptalk.pipeline import prepare_dataset

        suites = question_suites(project, prepare_dataset(project))
        card = evaluate(
            project, RunArtifact(path=run_dir, run_id="run-same"), str(tiny_model), suites
        )
    # Two domain questions with a reference, each asked in both orders.
    assert len(seen) == 4
    scores = card.suites["judge"]
    assert (scores.kind, scores.n) == ("judge", 2)
    assert scores.base["preferred"] == scores.tuned["preferred"] == 0.0
    judged = [q for q in card.questions if q.judge_verdict]
    assert len(judged) == 2 and judged[0].judge_verdict.startswith(
        "tie (base first: A, tuned first: A)"
    )
    details = json.loads((project.evals / "run-same" / "judge.json").read_text())
    assert details["n"] == 2 and details["labels"] == ["base", "tuned"]
    report = (project.evals / "run-same" / "report.html").read_text(encoding="utf-8")
    assert "<th>judge</th>" in report and "A states the reference" in report


def test_the_cli_judges_with_a_url_given_on_the_command_line(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from shoptalk.cli import app

    root = write_project(tmp_path / "p", tiny_model)
    shutil.copytree(tiny_model, root / ".shoptalk" / "runs" / "run-same" / "final")
    with judge("fair") as (settings, seen):
        args = ["eval", str(root), "--compare", "base", "run-same", "--json"]
        args += ["--judge-url", settings.url, "--judge-model", "stub-judge"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["suites"]["judge"]["n"] == 2 and len(seen) == 4
    assert {body["model"] for body in seen} == {"stub-judge"}
