"""Answers with retrieval on the bundled example: .venv/bin/python bench/rag_answers.py [--run RUN]

For each held-out document question of examples/kestrel: retrieve (hybrid,
top 5), answer with the base model (or a trained run's model with --run),
and report key-fact recall (every `must_include` string in the answer), how
often the retrieved chunks held the key fact, and the citation check's counts:
answers with at least one kept citation, citations kept by kind, dropped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from shoptalk.artifacts import RunArtifact
from shoptalk.modeling.generate import load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.rag.answer import answer_with_citations
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", nargs="?", default="examples/kestrel")
    parser.add_argument("--questions", default="questions/documents.jsonl")
    parser.add_argument("--run", help="a run folder (.shoptalk/runs/<id>); default: the base model")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".shoptalk"))
        project = Project.open(root)
        index_project(project)
        index = open_index(project)
        run = RunArtifact(path=Path(args.run), run_id=Path(args.run).name) if args.run else None
        assistant = load_assistant(resolve_base_model(project.config.base_model, root), run)
        lines = (root / args.questions).read_text(encoding="utf-8").splitlines()
        questions = [json.loads(line) for line in lines if line.strip()]
        questions = questions[: args.limit] if args.limit else questions
        recalled = retrieved = with_citation = dropped = 0
        kinds = {"cited": 0, "supported": 0}
        start = time.perf_counter()
        for q in questions:
            result = answer_with_citations(
                assistant,
                index,
                q["question"],
                None,
                project.config.system_prompt,
                args.max_new_tokens,
            )
            keys = [k.lower() for k in q["must_include"]]
            recalled += all(k in result.message.lower() for k in keys)
            chunks = {c.id: c for c in index.stored.chunks}
            texts = [chunks[r.chunk_id].text.lower() for r in result.retrieved]
            retrieved += any(all(k in t for k in keys) for t in texts)
            with_citation += bool(result.citations)
            dropped += result.dropped_citations
            for citation in result.citations:
                kinds[citation.kind] += 1
        n = len(questions)
        print(f"{n} questions, {time.perf_counter() - start:.0f}s, model: {args.run or 'base'}")
        print(f"key fact in the retrieved chunks: {retrieved / n:.3f}")
        print(f"key-fact recall of the answers:  {recalled / n:.3f}")
        print(f"answers with a kept citation:    {with_citation / n:.3f}")
        print(f"citations kept: {kinds}; dropped: {dropped}")


if __name__ == "__main__":
    main()
