"""Calibrated abstention, measured: nice -n 10 .venv/bin/python bench/rag_abstain.py examples/kestrel

Indexes the project (a temporary copy), then builds the project's OWN split from
its FAQ rows (never the eval questions): positives = each FAQ question against
the whole index; negatives = the same question with its row and every chunk
covering half of its answer's IDF-weighted terms left out of retrieval. Fits
`rag.abstain.fit_rule` on that split and reports, on the eval suites, refusal
on unanswerable and false refusal on answerable questions (95% bootstrap
intervals) for each signal alone, the fitted rule, the default rule and the
old `min_question_overlap` test. No model answers: the decision is replayed on
retrieval and sentence selection only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from shoptalk.data.faq import read_faq
from shoptalk.data.sources import listed_files
from shoptalk.project import Project
from shoptalk.rag.abstain import DEFAULT_RULE, coverage, fit_rule, signals, term_idf
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.select import select_passages
from shoptalk.rag.verify import question_overlap

ANSWERABLE = ("questions/documents.jsonl", "questions/paraphrased.jsonl")
UNANSWERABLE = ("questions/unanswerable.jsonl",)


def interval(values: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    data = np.array(values, dtype=float)
    means = data[rng.integers(0, len(data), (rounds, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def ask(index, project, question: str, excluded: set[str] = frozenset()):
    """Selected passages for `question`, retrieval blind to the chunks `excluded` (by id)."""
    keep = index.allowed
    index.allowed = lambda groups: (
        keep(groups) & np.array([c.id not in excluded for c in index.stored.chunks])
    )
    try:
        found = index.search(question, None, None)
    finally:
        index.allowed = keep
    passages = select_passages(question, found.hits, index.embedder, project.config.rag.select)
    return passages if found.found else []


def own_split(index, project, root: Path, idf) -> tuple[list[list[float]], list[bool]]:
    values, labels = [], []
    for path in listed_files(root, project.config.sources.faq, "faq", []):
        for row in read_faq(path, root, []):
            question, answer = row.messages[0].content, row.messages[-1].content
            # The row itself is indexed: asked verbatim it answers itself, far easier than
            # any user question (a rule fitted so refuses everything). Leave it out.
            own = {c.id for c in index.stored.chunks if c.source == row.source}
            values.append(signals(question, ask(index, project, question, own), idf))
            labels.append(True)
            excluded = {
                c.id
                for c in index.stored.chunks
                if c.source == row.source or coverage(answer, c.text, idf) >= 0.5
            }
            passages = ask(index, project, question, excluded)
            values.append(signals(question, passages, idf))
            labels.append(False)
    return values, labels


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
        idf = term_idf([f"{' '.join(c.headings)}\n{c.text}" for c in index.stored.chunks])
        train_x, train_y = own_split(index, project, root, idf)
        rule = fit_rule(train_x, train_y, max_false_refusal=0.1)
        print(f"own split: {sum(train_y)} answerable, {len(train_y) - sum(train_y)} not")
        print(f"fitted rule: {rule.model_dump_json()}")
        evals = []
        for suite, answerable in [(s, True) for s in ANSWERABLE] + [
            (s, False) for s in UNANSWERABLE
        ]:
            path = root / suite
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    q = json.loads(line)["question"]
                    passages = ask(index, project, q)
                    overlap = question_overlap(q, passages[0]) if passages else 0.0
                    evals.append((signals(q, passages, idf), overlap, answerable))
        report(rule, evals, project.config.rag.select.min_question_overlap)


def report(rule, evals, min_overlap: float) -> None:
    deciders = {
        "old: best sentence word share < min_question_overlap": lambda v, o: o < min_overlap,
        "default rule (IDF coverage of best passage < 0.2)": lambda v, o: DEFAULT_RULE.refuses(v),
        "fitted rule (own FAQ split, <=10% false refusal there)": lambda v, o: rule.refuses(v),
    }
    answerable = [e for e in evals if e[2]]
    unanswerable = [e for e in evals if not e[2]]
    print(f"\neval: {len(answerable)} answerable, {len(unanswerable)} unanswerable\n")
    print("| decision | refusal on unanswerable [95% CI] | false refusal on answerable [95% CI] |")
    print("| --- | --- | --- |")
    for name, refuses in deciders.items():
        r = [float(refuses(v, o)) for v, o, _ in unanswerable]
        f = [float(refuses(v, o)) for v, o, _ in answerable]
        ri, fi = interval(r), interval(f)
        print(
            f"| {name} | {np.mean(r):.2f} [{ri[0]:.2f}, {ri[1]:.2f}] "
            f"| {np.mean(f):.2f} [{fi[0]:.2f}, {fi[1]:.2f}] |"
        )
    for k, signal in enumerate(("best sentence score", "best coverage", "all coverage")):
        a = np.median([v[k] for v, _, _ in answerable])
        u = np.median([v[k] for v, _, _ in unanswerable])
        print(f"median {signal}: answerable {a:.2f}, unanswerable {u:.2f}")


if __name__ == "__main__":
    main()
