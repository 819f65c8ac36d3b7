"""Calibrated abstention, measured: nice -n 10 .venv/bin/python bench/rag_abstain.py examples/kestrel

Indexes a temporary copy of the project, which fits the abstention rule on the
project's OWN FAQ (rag.index.fit_abstention -> rag.abstain.fit_index_rule; never
the eval questions) and writes it beside the index. Then replays, on the eval
suites the project lists (domain questions = answerable, unanswerable ones =
should be refused), the decision every answer path takes before generation
(rag.answer.select_for): refusal on unanswerable and false refusal on
answerable questions, with 95% bootstrap intervals, for the fitted rule, the
default rule, and each signal's medians. No model answers: retrieval and
sentence selection only. A question about the assistant itself (rag.voice
route "assistant") is answered closed book and left out.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from shoptalk.eval.questions import load_suites
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, SIGNALS, Abstention, signals
from shoptalk.rag.abstain_fit import _Remembering
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.select import select_passages
from shoptalk.rag.voice import route


def interval(values: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    data = np.array(values, dtype=float)
    means = data[rng.integers(0, len(data), (rounds, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", nargs="?", default="examples/kestrel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".shoptalk"))
        project = Project.open(root)
        print(f"{args.project}: {index_project(project).summary()}")
        index = open_index(project)
        index.embedder = _Remembering(index.embedder)  # questions share retrieved sentences
        rule = index.rule
        print(f"fitted rule: {rule.model_dump_json()}")
        idf = index.abstention.idf
        evals = []  # (signals or None when retrieval found nothing, answerable)
        suites = load_suites([root / p for p in project.config.sources.questions])
        for suite in suites:
            if suite.kind not in ("domain", "unanswerable"):
                continue
            for question in suite.questions:
                text = question.prompt_text
                if route(text) == "assistant":
                    continue
                found = index.search(text, None, None)
                passages = select_passages(
                    text, found.hits, index.embedder, project.config.rag.select
                )
                if not (found.found and passages):
                    evals.append((None, suite.kind == "domain"))
                    continue
                decisions = {
                    name: Abstention(r, idf).refuses(text, passages)
                    for name, r in (("default", DEFAULT_RULE), ("fitted", rule))
                }
                evals.append(((signals(text, passages, idf), decisions), suite.kind == "domain"))
        report(evals)


def report(evals) -> None:
    deciders = {
        "default rule (all passages' IDF coverage < 0.3) + value check": "default",
        "fitted rule (own FAQ split) + value check": "fitted",
    }
    answerable = [v for v, a in evals if a]
    unanswerable = [v for v, a in evals if not a]
    print(f"\neval: {len(answerable)} answerable, {len(unanswerable)} unanswerable\n")
    print("| decision | refusal on unanswerable [95% CI] | false refusal on answerable [95% CI] |")
    print("| --- | --- | --- |")
    for name, decider in deciders.items():
        r = [float(v is None or v[1][decider]) for v in unanswerable]
        f = [float(v is None or v[1][decider]) for v in answerable]
        ri, fi = interval(r), interval(f)
        print(
            f"| {name} | {np.mean(r):.2f} [{ri[0]:.2f}, {ri[1]:.2f}] "
            f"| {np.mean(f):.2f} [{fi[0]:.2f}, {fi[1]:.2f}] |"
        )
    nothing = [sum(v is None for v in group) for group in (unanswerable, answerable)]
    print(f"\nretrieval found nothing: {nothing[0]} unanswerable, {nothing[1]} answerable")
    for signal in SIGNALS:
        a = np.median([v[0][signal] for v in answerable if v is not None])
        u = np.median([v[0][signal] for v in unanswerable if v is not None])
        print(f"median {signal}: answerable {a:.2f}, unanswerable {u:.2f}")


if __name__ == "__main__":
    main()
