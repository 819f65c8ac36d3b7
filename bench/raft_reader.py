"""Tuned models closed book and +RAG on the domain and unanswerable suites, as the scorecard
answers and scores them, with a paired comparison of two runs.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 timeout 3600 .venv/bin/python \\
        bench/raft_reader.py PROJECT --runs RUN_A RUN_B --out DIR

PROJECT is a built project (its retrieval index exists); each run id must be in its
`.shoptalk/runs/`. Retrieval and prompts as the scorecard builds them
(`eval.grounded.grounded_prompts`), one batched generation per model
(`eval.run.answer_suites`), each answer scored by `eval.scorecard.question_metrics`.
Each run's answers and scores are written to DIR/<run>.json as soon as it is done (the
last run first), so a stopped comparison keeps the runs it finished; a rerun reuses them. Nothing is written into PROJECT.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shoptalk.eval.grounded import grounded_prompts, verified_replies
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.questions import load_suites
from shoptalk.eval.run import answer_suites
from shoptalk.eval.scorecard import question_metrics
from shoptalk.modeling.generate import answer, load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.rag.retrieve import open_index

METRIC = {"domain": "key_fact_recall", "unanswerable": "refusal_rate"}


def interval(scores: list[float]) -> str:
    mean, low, high = bootstrap_diff([0.0] * len(scores), scores)
    return f"{mean:.3f} [{low:.2f}, {high:.2f}]"


def answered(project: Project, assistant, suite, grounded, with_rag: bool) -> list[str]:
    """The suite's answers as the scorecard shows them, closed book or +RAG."""
    if not with_rag:
        return answer_suites(project, assistant, [suite])[0][suite.name]
    items = grounded[suite.name]
    prompts = [g.messages for g in items if g.messages]
    settings = project.config.eval
    texts = answer(assistant, prompts, settings.max_new_tokens, settings.batch_size)
    org = project.organization
    return verified_replies(items, texts, project.style, project.system_prompt, org)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument(
        "--runs", nargs="+", required=True, help="run ids: the last is compared to the first"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for <run>.json")
    parser.add_argument("--suites", nargs="+", help="suite names, scored in this order")
    args = parser.parse_args()
    runs = args.runs
    project = Project.open(args.project)
    paths = [project.root / p for p in project.config.sources.questions]
    suites = [s for s in load_suites(paths) if s.kind in METRIC]
    if args.suites:
        suites = sorted(
            (s for s in suites if s.name in args.suites), key=lambda s: args.suites.index(s.name)
        )
    grounded = grounded_prompts(project, open_index(project), suites)
    base_path = resolve_base_model(project.config.base_model, project.root)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {r: _load(args.out / f"{r}.json") for r in runs}
    models: dict[str, object] = {}
    # +RAG first, the last run (the one under test) first, suite by suite, each saved at
    # once: a comparison stopped at any point keeps what it finished, and a rerun goes on.
    for with_rag in (True, False):
        for run_id in reversed(runs):
            for suite in suites:
                name = f"{suite.name}+rag" if with_rag else suite.name
                if name in results[run_id]:
                    continue
                if run_id not in models:
                    models.clear()
                    models[run_id] = load_assistant(
                        base_path, project.run(run_id), project.config.train.device
                    )
                rows = []
                texts = answered(project, models[run_id], suite, grounded, with_rag)
                for q, a in zip(suite.questions, texts, strict=True):
                    rows.append({"prompt": q.prompt_text, "answer": a} | question_metrics(q, a))
                results[run_id][name] = {"metric": METRIC[suite.kind], "rows": rows}
                path = args.out / f"{run_id}.json"
                path.write_text(json.dumps(results[run_id], ensure_ascii=False, indent=1), "utf-8")
                print(f"{time.strftime('%H:%M:%S')} {run_id} {name} done", flush=True)
    report(runs, results)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def report(runs: list[str], results: dict) -> None:
    first, last = runs[0], runs[-1]
    print(f"| suite | metric | {' | '.join(runs)} | {last} - {first} [95%] |")
    print("| --- | --- |" + " ---: |" * len(runs) + " --- |")
    for name, entry in results[last].items():
        if any(name not in results[r] for r in runs):
            continue
        metric = entry["metric"]
        values = {r: [row[metric] for row in results[r][name]["rows"]] for r in runs}
        cells = " | ".join(interval(values[r]) for r in runs)
        mean, low, high = bootstrap_diff(values[first], values[last])
        n = len(values[first])
        print(f"| {name} ({n}) | {metric} | {cells} | {mean:+.3f} [{low:+.2f}, {high:+.2f}] |")
        if metric == "key_fact_recall" and name.endswith("+rag"):
            refused = " | ".join(
                str(int(sum(row["false_refusal_rate"] for row in results[r][name]["rows"])))
                for r in runs
            )
            print(f"| {name} ({n}) | answered 'not found' (count) | {refused} | |")


if __name__ == "__main__":
    main()
