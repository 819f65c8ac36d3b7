"""Retrieval quality on the bundled example: .venv/bin/python bench/rag_eval.py [examples/kestrel]

Indexes the project's documents (in a temporary copy, the example is not
touched), then for each held-out question with a document `source` checks
whether the top k chunks contain *the key fact*: a chunk of that document whose
text holds every `must_include` string. Reported for BM25 alone, vectors alone
and the hybrid (reciprocal rank fusion), with MRR. Also prints the best cosine
similarity of answerable and unanswerable questions, the numbers behind
`rag.min_similarity`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from shoptalk.modeling.embed import load_embedder
from shoptalk.project import Project
from shoptalk.rag.bm25 import terms
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import RagIndex, _ranked, open_index


def key_fact(chunk, question: dict) -> bool:
    text = chunk.text.lower()
    in_source = chunk.source.split("#")[0] == question["source"]
    return in_source and all(s.lower() in text for s in question["must_include"])


def rankings(index: RagIndex, question: str) -> dict[str, list[int]]:
    allowed = index.allowed(None)
    similarity = index.stored.vectors @ index.embedder.encode([question])[0]
    hybrid = index.search(question, None, top_k=50).hits
    row = {c.id: i for i, c in enumerate(index.stored.chunks)}
    return {
        "bm25": _ranked(index.bm25.scores(terms(question), allowed), allowed, positive=True),
        "vectors": _ranked(similarity, allowed),
        "hybrid": [row[h.chunk.id] for h in hybrid],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", nargs="?", default="examples/kestrel")
    parser.add_argument("--questions", default="questions/documents.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".shoptalk"))
        project = Project.open(root)
        embedder = load_embedder(project.config.rag.embedding_model, root)
        start = time.perf_counter()
        report = index_project(project, embedder)
        print(
            f"indexed {report.documents} documents, {report.chunks} chunks "
            f"in {time.perf_counter() - start:.1f}s"
        )
        index = open_index(project, embedder)
        lines = (root / args.questions).read_text(encoding="utf-8").splitlines()
        questions = [json.loads(line) for line in lines if line.strip()]
        ranks: dict[str, list[int | None]] = {"bm25": [], "vectors": [], "hybrid": []}
        for q in questions:
            for method, rows in rankings(index, q["question"]).items():
                hit = [i for i, r in enumerate(rows) if key_fact(index.stored.chunks[r], q)]
                ranks[method].append(hit[0] + 1 if hit else None)
        print(f"{len(questions)} questions with a document source")
        print("method    recall@1  recall@3  recall@5  recall@10  MRR")
        for method, found in ranks.items():
            recall = [
                sum(r is not None and r <= k for r in found) / len(found) for k in (1, 3, 5, 10)
            ]
            mrr = sum(1 / r for r in found if r) / len(found)
            print(f"{method:9} " + "  ".join(f"{x:8.2f}" for x in recall) + f"  {mrr:.3f}")
        best_similarity(index, root)


def best_similarity(index: RagIndex, root: Path) -> None:
    for name in ("documents", "faq_as_written", "paraphrased", "unanswerable"):
        path = root / "questions" / f"{name}.jsonl"
        if not path.is_file():
            continue
        questions = [
            json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()
        ]
        best = np.max(index.stored.vectors @ index.embedder.encode(questions).T, axis=0)
        found = np.mean(best >= index.settings.min_similarity)
        print(
            f"best similarity {name:15} median {statistics.median(best):.2f} "
            f"min {best.min():.2f} max {best.max():.2f}  found at {index.settings.min_similarity}: {found:.2f}"
        )


if __name__ == "__main__":
    main()
