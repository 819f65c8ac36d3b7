"""The scorecard's four variants side by side: .venv/bin/python bench/rag_scorecard.py SCORECARD

SCORECARD is the `scorecard.json` of a build with `eval.rag: true` (for example
`/tmp/raft/kestrel/.shoptalk/evals/<run-id>/scorecard.json`). For each suite
with a '+rag' twin: the primary metric of base, base+RAG, tuned and tuned+RAG,
each with a 95% bootstrap interval of its mean, then the paired differences the
retrieval bar is about: tuned+RAG - tuned and tuned+RAG - base+RAG. Then the
`retrieval` suite (hit@k, MRR) if the scorecard has one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.scorecard import QuestionResult, read_scorecard

RAG = "+rag"


def interval(scores: list[float]) -> str:
    mean, low, high = bootstrap_diff([0.0] * len(scores), scores)
    return f"{mean:.3f} [{low:.2f}, {high:.2f}]"


def change(first: list[float], second: list[float]) -> str:
    mean, low, high = bootstrap_diff(first, second)
    return f"{mean:+.3f} [{low:+.2f}, {high:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scorecard", type=Path)
    card = read_scorecard(parser.parse_args().scorecard)
    rows: dict[str, list[QuestionResult]] = {}
    for question in card.questions:
        rows.setdefault(question.suite, []).append(question)
    print(
        "| suite | n | base | base+RAG | tuned | tuned+RAG "
        "| tuned+RAG - tuned | tuned+RAG - base+RAG |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for suite, plain in rows.items():
        if suite.endswith(RAG) or suite + RAG not in rows:
            continue
        rag = rows[suite + RAG]
        base, tuned = [q.base_score for q in plain], [q.tuned_score for q in plain]
        base_rag, tuned_rag = [q.base_score for q in rag], [q.tuned_score for q in rag]
        print(
            f"| {suite} | {len(plain)} | {interval(base)} | {interval(base_rag)} "
            f"| {interval(tuned)} | {interval(tuned_rag)} "
            f"| {change(tuned, tuned_rag)} | {change(base_rag, tuned_rag)} |"
        )
    retrieval = card.suites.get("retrieval")
    if retrieval is not None:
        scores = ", ".join(f"{name} {value:.3f}" for name, value in retrieval.base.items())
        print(f"\nretrieval ({retrieval.n} document questions): {scores}")
    print(f"\ntiming: {card.timing}")


if __name__ == "__main__":
    main()
