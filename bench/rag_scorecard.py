"""The scorecard's four variants side by side: .venv/bin/python bench/rag_scorecard.py SCORECARD

SCORECARD is the `scorecard.json` of a build with `eval.rag: true` (for example
`/tmp/raft/kestrel/.shoptalk/evals/<run-id>/scorecard.json`). For each suite
with a '+rag' twin: the primary metric of base, base+RAG, tuned and tuned+RAG,
each with a 95% bootstrap interval of its mean, then the paired differences the
retrieval bar is about: tuned+RAG - tuned and tuned+RAG - base+RAG. Then the
`retrieval` suite (hit@k, MRR) if the scorecard has one.

`--against OTHER` adds a table of this scorecard's tuned model minus OTHER's,
without and with retrieval, paired by question (e.g. a RAFT build against one
trained without RAFT on the same questions).
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
    parser.add_argument("--against", type=Path, help="another scorecard on the same questions")
    args = parser.parse_args()
    card = read_scorecard(args.scorecard)
    rows = by_suite(card.questions)
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
    if args.against is not None:
        print_against(rows, by_suite(read_scorecard(args.against).questions))


def by_suite(questions: list[QuestionResult]) -> dict[str, list[QuestionResult]]:
    rows: dict[str, list[QuestionResult]] = {}
    for question in questions:
        rows.setdefault(question.suite, []).append(question)
    return rows


def print_against(
    rows: dict[str, list[QuestionResult]], other: dict[str, list[QuestionResult]]
) -> None:
    """This tuned model minus the other's, per suite, paired by prompt."""
    print("\n| suite | n | other tuned | tuned | change | other tuned+RAG | tuned+RAG | change |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for suite, plain in rows.items():
        if suite.endswith(RAG) or suite + RAG not in rows or suite + RAG not in other:
            continue
        cells = []
        for name in (suite, suite + RAG):
            mine = {q.prompt: q.tuned_score for q in rows[name]}
            theirs = {q.prompt: q.tuned_score for q in other[name]}
            ids = sorted(mine.keys() & theirs.keys())
            first, second = [theirs[i] for i in ids], [mine[i] for i in ids]
            cells += [interval(first), interval(second), change(first, second)]
        print(f"| {suite} | {len(plain)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
