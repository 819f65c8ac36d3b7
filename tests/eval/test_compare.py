"""`shoptalk eval --compare A B`: any two models side by side, the same report with A and B."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_model import teach
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.errors import ShoptalkError
from shoptalk.eval.run import compare, find_model
from shoptalk.eval.scorecard import read_scorecard
from shoptalk.project import Project

from projects import FAQ, write_project

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def project(tmp_path, tiny_model) -> Project:
    """The test project with two finished full-weight runs: the base's own weights, and
    the base taught the FAQ."""
    project = Project.open(write_project(tmp_path / "p", tiny_model))
    shutil.copytree(tiny_model, project.runs / "run-same" / "final")
    teach(tiny_model, project.runs / "run-other" / "final", FAQ, project.config.system_prompt)
    return project


def test_compare_a_run_with_the_base_on_the_cli(project):
    result = CliRunner().invoke(
        app, ["eval", str(project.root), "--compare", "base", "run-other", "--json"]
    )
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["labels"] == ["base", "run-other"]
    assert card["run_id"] == "base-vs-run-other"
    folder = project.evals / "base-vs-run-other"
    assert read_scorecard(folder / "scorecard.json").labels == ["base", "run-other"]
    answers = json.loads((folder / "answers.json").read_text())
    # The taught model talks (in 8 tokens, the project's limit); the random base does not.
    assert answers["domain"]["base"] == ["", ""]
    assert all(answers["domain"]["tuned"]), answers
    report = (folder / "report.html").read_text(encoding="utf-8")
    assert "base (A) vs run-other (B)" in report
    assert "<th>run-other answer</th>" in report and "<th>run-other</th>" in report


def test_a_model_compared_with_itself_changes_nothing(project, tiny_model):
    card = compare(project, "run-same", "base", str(tiny_model), question_suites(project))
    for scores in card.suites.values():
        for mean, low, high in scores.diff.values():
            assert mean == low == high == 0.0
    assert all(q.base_answer == q.tuned_answer for q in card.questions)
    assert card.labels == ["run-same", "base"]


def question_suites(project: Project):
    from shoptalk.eval.run import question_suites as suites
    from shoptalk.pipeline import prepare_dataset

    return suites(project, prepare_dataset(project))


def test_unknown_models_are_named_with_the_choices(project):
    assert find_model(project, "base") is None
    assert find_model(project, "run-same").run_id == "run-same"
    with pytest.raises(ShoptalkError, match="no finished run 'run-typo'.*run-other, run-same"):
        find_model(project, "run-typo")
    result = CliRunner().invoke(app, ["eval", str(project.root), "--compare", "base", "nope"])
    assert result.exit_code == 2 and "no finished run 'nope'" in result.output
