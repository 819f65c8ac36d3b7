"""The style suites only, closed book and +RAG, as the scorecard answers and scores them.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 timeout 3600 .venv/bin/python \\
        bench/style_rag.py PROJECT [--run RUN_ID] [--json OUT]

PROJECT is a built project (its retrieval index exists). For the base model and, with
`--run`, the run's model: retrieval and prompts as the scorecard builds them
(`eval.grounded.grounded_prompts`), one batched generation (`eval.run.answer_suites`),
each answer scored by `eval.scorecard.question_metrics` (style_pass_rate). Nothing is
written into PROJECT. Running the same file with another checkout's `src` on the
PYTHONPATH compares two versions of the code on the same models and questions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shoptalk.eval.grounded import grounded_prompts
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.questions import load_suites
from shoptalk.eval.run import answer_suites
from shoptalk.eval.scorecard import question_metrics
from shoptalk.modeling.generate import load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.rag.retrieve import open_index


def interval(scores: list[float]) -> str:
    mean, low, high = bootstrap_diff([0.0] * len(scores), scores)
    return f"{mean:.3f} [{low:.2f}, {high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--run", help="a run id of the project: its model is scored too")
    parser.add_argument("--json", type=Path, help="write every answer and score here")
    args = parser.parse_args()
    project = Project.open(args.project)
    paths = [project.root / p for p in project.config.sources.questions]
    suites = [s for s in load_suites(paths) if s.kind == "style"]
    grounded = grounded_prompts(project, open_index(project), suites)
    base_path = resolve_base_model(project.config.base_model, project.root)
    models = [("base", None)] + ([("tuned", project.run(args.run))] if args.run else [])
    rows, dump = [], {}
    for label, run in models:
        assistant = load_assistant(base_path, run, project.config.train.device)
        answers, _ = answer_suites(project, assistant, suites, grounded)
        for suite in suites:
            for mode, name in ((label, suite.name), (f"{label}+RAG", f"{suite.name}+rag")):
                scores = [
                    question_metrics(q, a)["style_pass_rate"]
                    for q, a in zip(suite.questions, answers[name], strict=True)
                ]
                rows.append((suite.name, mode, len(scores), sum(scores), interval(scores)))
                dump[f"{suite.name} {mode}"] = [
                    {"prompt": q.prompt_text, "answer": a, "pass": s}
                    for q, a, s in zip(suite.questions, answers[name], scores, strict=True)
                ]
        del assistant
    print("| suite | mode | n | passed | pass rate [95%] |\n| --- | --- | ---: | ---: | --- |")
    for suite, mode, n, passed, rate in rows:
        print(f"| {suite} | {mode} | {n} | {passed:.0f} | {rate} |")
    if args.json:
        args.json.write_text(json.dumps(dump, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
