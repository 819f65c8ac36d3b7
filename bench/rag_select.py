"""Sentence selection, measured: nice -n 10 .venv/bin/python bench/rag_select.py examples/kestrel

Indexes the project (documents and FAQ rows, in a temporary copy), retrieves
the top `rag.top_k` chunks for each question of the given suites, and reports
the *context recall* of each selection variant: the mean share of a question's
`must_include` facts found in the selected text (compared as the scorecard
compares them, `key_fact_recall`), with a 95% bootstrap interval over the
questions, and the mean tokens of the selected text. No model answers: this
measures what the model is given to read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from shoptalk.config import SelectSettings
from shoptalk.eval.metrics import key_fact_recall
from shoptalk.project import Project
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.select import select_passages

SUITES = ("questions/documents.jsonl", "questions/paraphrased.jsonl")
VARIANTS: dict[str, dict] = {
    "top 5 chunks (no selection)": {},
    "k=1": {"sentences": 1},
    "k=2": {"sentences": 2},
    "k=3 (default)": {},
    "k=5": {"sentences": 5},
    "k=3, lexical weight 0 (embedding only)": {"lexical_weight": 0.0},
    "k=3, lexical weight 1.0": {"lexical_weight": 1.0},
    "k=3, lexical weight 3.0 (mostly words)": {"lexical_weight": 3.0},
    "k=3, sentence embedded without heading": {"with_heading": False},
    "k=3, 1 neighbour each side": {"neighbours": 1},
    "k=1, 1 neighbour each side": {"sentences": 1, "neighbours": 1},
    "k=3, budget 100 tokens": {"max_tokens": 100},
}


def interval(values: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    data = np.array(values)
    means = data[rng.integers(0, len(data), (rounds, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", nargs="?", default="examples/kestrel")
    parser.add_argument("--suites", nargs="*", default=list(SUITES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".shoptalk"))
        project = Project.open(root)
        report = index_project(project)
        print(f"{args.project}: {report.summary()}")
        index = open_index(project)
        for suite in args.suites:
            rows = [json.loads(line) for line in (root / suite).read_text().splitlines() if line]
            measure(index, suite, [r for r in rows if r.get("must_include")])


def measure(index, suite: str, rows: list[dict]) -> None:
    retrieved = [index.search(r["question"], None, None).hits for r in rows]
    print(f"\n{suite} ({len(rows)} questions)\n")
    print("| variant | context recall [95% CI] | tokens read |")
    print("| --- | --- | ---: |")
    for name, change in VARIANTS.items():
        recalls, tokens = [], []
        for row, hits in zip(rows, retrieved, strict=True):
            if change or name.startswith("k=3 (default)"):
                settings = SelectSettings(**change)
                texts = [
                    p.text for p in select_passages(row["question"], hits, index.embedder, settings)
                ]
            else:
                texts = [h.chunk.text for h in hits]
            text = "\n".join(texts)
            recalls.append(key_fact_recall(text, row["must_include"]))
            tokens.append(index.embedder.count_tokens([text])[0])
        low, high = interval(recalls)
        mean = sum(recalls) / len(recalls)
        print(f"| {name} | {mean:.3f} [{low:.3f}, {high:.3f}] | {np.mean(tokens):.0f} |")


if __name__ == "__main__":
    main()
