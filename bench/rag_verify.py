"""Answers with retrieval, end to end, three ways: nice -n 10 .venv/bin/python bench/rag_verify.py

On a temporary copy of the project (examples/kestrel by default), indexed with
its documents and FAQ rows, the base model (or `--run RUN`'s) answers the
document, paraphrased and unanswerable suites:
- "old prompt": the five retrieved chunks as numbered <document> elements (`rag_messages`);
- "short prompt": only the sentences `rag.select` picks, numbered with their sources;
- "short prompt + verify": the same answers, verified and repaired (`rag.verify`),
  which is what `shoptalk ask` and the scorecard's RAG modes show.
Reported per suite: key-fact recall (answerable), refusal (unanswerable), false
refusals (answerable answers that refuse), unsupported claims (answers holding
a value that what the model read does not hold; before repair) and repairs,
each with a 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from shoptalk.artifacts import RunArtifact
from shoptalk.eval.metrics import is_refusal, key_fact_recall
from shoptalk.modeling.generate import answer, load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.rag.answer import not_found_message, passage_messages, rag_messages
from shoptalk.rag.index import index_project
from shoptalk.rag.retrieve import open_index
from shoptalk.rag.select import Passage, select_passages
from shoptalk.rag.verify import unsupported_values, verify_answer

SUITES = (
    "questions/documents.jsonl",
    "questions/paraphrased.jsonl",
    "questions/unanswerable.jsonl",
)


def interval(values: list[float], rounds: int = 2000) -> str:
    data = np.array(values, dtype=float)
    rng = np.random.default_rng(0)
    means = data[rng.integers(0, len(data), (rounds, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return f"{data.mean():.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", nargs="?", default="examples/kestrel")
    parser.add_argument("--run", help="a trained run's folder; default: the base model")
    parser.add_argument("--out", default="", help="write every answer to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".shoptalk"))
        project = Project.open(root)
        print(f"index: {index_project(project).summary()}")
        index = open_index(project)
        run = RunArtifact(path=Path(args.run), run_id=Path(args.run).name) if args.run else None
        assistant = load_assistant(resolve_base_model(project.config.base_model, root), run)
        rows = {s: read(root / s) for s in SUITES}
        results = {s: measure(project, index, assistant, r) for s, r in rows.items()}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    report(rows, results)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def measure(project: Project, index, assistant, rows: list[dict]) -> dict:
    """Both prompts' answers to every row, and the verified short-prompt answers."""
    cfg, select = project.config, project.config.rag.select
    old, short, read_old, read_short = [], [], [], []
    for row in rows:
        found = index.search(row["question"], None, None)
        passages = select_passages(row["question"], found.hits, index.embedder, select)
        old.append(rag_messages(row["question"], found, cfg.system_prompt) if found.found else None)
        short.append(
            passage_messages(row["question"], passages, cfg.system_prompt) if found.found else None
        )
        read_old.append([Passage(h.chunk.text, h.chunk, h.score) for h in found.hits])
        read_short.append(passages)
    started = time.perf_counter()
    texts = generate(assistant, old + short, cfg.eval.max_new_tokens, cfg.eval.batch_size)
    texts = [
        t if t is not None else not_found_message(r["question"])
        for t, r in zip(texts, rows + rows, strict=True)
    ]
    seconds = time.perf_counter() - started
    verified = [
        verify_answer(r["question"], t, p, index.abstention) if p else None
        for r, t, p in zip(rows, texts[len(rows) :], read_short, strict=True)
    ]
    return {
        "seconds": seconds,
        "old": texts[: len(rows)],
        "short": texts[len(rows) :],
        "verified": [
            v.message if v else t for v, t in zip(verified, texts[len(rows) :], strict=True)
        ],
        "status": [v.status if v else "not_found" for v in verified],
        "unsupported_old": [
            bool(unsupported_values(t, p))
            for t, p in zip(texts[: len(rows)], read_old, strict=True)
        ],
        "unsupported_verified": [
            bool(v and v.status != "not_found" and unsupported_values(v.message, p))
            for v, p in zip(verified, read_short, strict=True)
        ],
        "unsupported_short": [
            bool(unsupported_values(t, p))
            for t, p in zip(texts[len(rows) :], read_short, strict=True)
        ],
    }


def generate(assistant, prompts: list, max_new_tokens: int, batch_size: int) -> list[str | None]:
    """Answers to the prompts that exist (None where nothing was retrieved)."""
    asked = [p for p in prompts if p is not None]
    answers = iter(answer(assistant, asked, max_new_tokens, batch_size))
    return [next(answers) if p is not None else None for p in prompts]


def report(rows: dict[str, list[dict]], results: dict[str, dict]) -> None:
    print(
        "| suite (n) | variant | recall or refusal | false refusals | unsupported claims | repaired |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for suite, result in results.items():
        qs = rows[suite]
        answerable = "unanswerable" not in suite
        name = f"{Path(suite).stem} ({len(qs)})"
        variants = {
            "old prompt (5 chunks)": (result["old"], result["unsupported_old"]),
            "short prompt (selected sentences)": (result["short"], result["unsupported_short"]),
            "short prompt + verify/repair": (result["verified"], result["unsupported_verified"]),
        }
        for variant, (texts, unsupported) in variants.items():
            if answerable:
                score = [
                    key_fact_recall(t, q["must_include"]) for t, q in zip(texts, qs, strict=True)
                ]
            else:
                score = [float(is_refusal(t)) for t in texts]
            false = [float(is_refusal(t)) for t in texts] if answerable else None
            shown = texts is result["verified"]  # after repair: checked again, as shown
            repaired = [float(s == "repaired") for s in result["status"]] if shown else None
            print(
                f"| {name} | {variant} | {interval(score)} | "
                f"{interval(false) if false else '-'} | {interval([float(u) for u in unsupported])} | "
                f"{interval(repaired) if repaired else '-'} |"
            )
        print(f"<!-- {suite}: {result['seconds']:.0f} s generation -->")


if __name__ == "__main__":
    main()
