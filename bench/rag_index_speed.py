"""Indexing speed: .venv/bin/python bench/rag_index_speed.py [--pages 2000] [--pages-per-doc 20]

Writes synthetic Markdown documents of ~450-word pages (a heading every page,
English sentences with numbers) into a temporary project, then times with the
default embedding model:
  1. indexing everything from scratch (read, chunk, embed, write);
  2. re-indexing after one document changed (one sentence edited);
  3. re-indexing with nothing changed.
Prints the counts `shoptalk index` prints and the seconds of each run.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import yaml

from shoptalk.modeling.embed import load_embedder
from shoptalk.project import Project
from shoptalk.rag.index import index_project

WORDS = (
    "shipment pallet depot invoice claim carrier freight warehouse customer driver route "
    "delivery surcharge policy employee manager approval portal tracking service tier rate "
    "weight insurance temperature dock schedule contract quote discount payment refund"
).split()


def page(rng: random.Random, doc: int, number: int) -> str:
    sentences = []
    while sum(len(s.split()) for s in sentences) < 450:
        words = rng.sample(WORDS, 9)
        sentences.append(
            f"The {words[0]} {words[1]} for {words[2]} {words[3]} is {rng.randint(2, 900)} "
            f"{words[4]}s, reviewed by the {words[5]} {words[6]} of {words[7]} {words[8]}."
        )
    return f"## Section {doc}.{number}\n\n" + " ".join(sentences) + "\n"


def write_project(root: Path, pages: int, per_doc: int) -> None:
    rng = random.Random(0)
    docs = root / "docs"
    docs.mkdir(parents=True)
    for doc in range(pages // per_doc):
        body = "".join(page(rng, doc, n) for n in range(per_doc))
        (docs / f"manual_{doc:04d}.md").write_text(f"# Manual {doc}\n\n{body}", encoding="utf-8")
    config = {"name": "Bench", "sources": {"docs": ["docs"]}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def timed(project: Project, embedder, label: str) -> None:
    start = time.perf_counter()
    report = index_project(project, embedder)
    print(f"{label:18} {time.perf_counter() - start:7.1f}s  {report.summary()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--pages-per-doc", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, args.pages, args.pages_per_doc)
        project = Project.open(root)
        embedder = load_embedder("default")
        embedder.encode(["warm up"])  # model loading is not indexing
        timed(project, embedder, "from scratch")
        changed = root / "docs" / "manual_0003.md"
        changed.write_text(changed.read_text().replace("is ", "is about ", 1), encoding="utf-8")
        timed(project, embedder, "one doc changed")
        timed(project, embedder, "nothing changed")


if __name__ == "__main__":
    main()
