"""Span-level precision/recall of PII detection: .venv/bin/python bench/pii_eval.py

Scores `find_pii` on the labelled set tests/data/pii_cases.jsonl (regenerate it
with tests/data/make_pii_cases.py). A found span counts only when start, end
and type all match a labelled one.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from shoptalk.data.pii import PRIORITY, find_pii

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_cases.jsonl"


def score(path: Path) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    found: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        gold = {(s["start"], s["end"], s["type"]) for s in case["spans"]}
        got = {(s.start, s.end, s.type) for s in find_pii(case["text"])}
        for kinds, spans in ((labelled, gold), (found, got)):
            kinds.update(t for _, _, t in spans)
        tp.update(t for _, _, t in gold & got)
    table = {}
    for kind in [*PRIORITY, "overall"]:
        t, f, g = (
            (sum(c.values()) for c in (tp, found, labelled))
            if kind == "overall"
            else (tp[kind], found[kind], labelled[kind])
        )
        p = t / f if f else 1.0
        r = t / g if g else 1.0
        table[kind] = {
            "labelled": g,
            "found": f,
            "precision": p,
            "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0,
        }
    return table


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CASES
    print(f"{'type':<16}{'labelled':>9}{'found':>7}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, row in score(path).items():
        print(
            f"{kind:<16}{row['labelled']:>9}{row['found']:>7}"
            f"{row['precision']:>11.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}"
        )


if __name__ == "__main__":
    main()
