"""eval/exported.py without a model: which eval answers are reused, and what counts as a drop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.eval.exported import ExportScore, comparison_lines, evaluated_answers
from shoptalk.eval.questions import suite_from_faq
from shoptalk.eval.scorecard import Scorecard, SuiteScores

PAIRS = [
    ("How long is the claim window?", "47 days from delivery.", "faq.csv:2"),
    ("Who runs the depot?", "Ingrid Solberg runs it.", "faq.csv:3"),
]


def stored_eval(evals: Path, run_id: str, prompts: list[str], tuned: list[str]) -> None:
    folder = evals / run_id
    questions = [{"suite": "heldout_faq", "prompt": p} for p in prompts]
    write_json(folder / "scorecard.json", {"questions": questions})
    write_json(folder / "answers.json", {"heldout_faq": {"base": ["x"] * 2, "tuned": tuned}})


def test_the_evaluated_runs_answers_are_reused_only_for_the_same_questions(tmp_path: Path) -> None:
    project = SimpleNamespace(evals=tmp_path / "evals")
    run = RunArtifact(path=tmp_path / "runs" / "run-1", run_id="run-1")
    suites = [suite_from_faq("heldout_faq", PAIRS)]
    assert evaluated_answers(project, run, suites) is None  # never evaluated

    stored_eval(project.evals, "run-1", [q for q, _, _ in PAIRS], ["47 days.", "Ingrid."])
    assert evaluated_answers(project, run, suites) == {"heldout_faq": ["47 days.", "Ingrid."]}

    # The questions changed since the eval: its answers do not fit them.
    stored_eval(project.evals, "run-1", ["How long is the claim window?", "Other?"], ["a", "b"])
    assert evaluated_answers(project, run, suites) is None


def card(diffs: dict[str, list[float]]) -> Scorecard:
    scores = SuiteScores(
        n=20,
        kind="domain",
        base={m: 0.5 for m in diffs},
        tuned={m: 0.5 + d[0] for m, d in diffs.items()},
        diff=diffs,
    )
    return Scorecard(
        run_id="run-1",
        base_model="m",
        created="now",
        suites={"domain": scores},
        labels=["tuned", "gguf-q4_k_m"],
    )


def test_a_drop_is_flagged_only_beyond_the_interval(tmp_path: Path) -> None:
    diffs = {
        "key_fact_recall": [-0.2, -0.35, -0.05],  # worse, interval below 0: a drop
        "rouge_l": [-0.05, -0.15, 0.05],  # worse, but the interval holds 0: noise
        "false_refusal_rate": [0.1, 0.02, 0.2],  # lower is better: a rise is a drop
    }
    lines = comparison_lines(ExportScore(card(diffs), tmp_path, "the eval's"))
    flagged = {line.split()[1] for line in lines if line.endswith("DROP")}
    assert flagged == {"key_fact_recall", "false_refusal_rate"}
    assert "2 metric(s) dropped beyond the 95% interval" in "\n".join(lines)
    assert lines[0].startswith("scorecard gguf-q4_k_m (llama.cpp) vs tuned (run-1)")
