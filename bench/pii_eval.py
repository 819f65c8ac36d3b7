"""Span-level precision/recall of PII detection: .venv/bin/python bench/pii_eval.py

Scores `find_pii` on the labelled set tests/data/pii_cases.jsonl (regenerate it
with tests/data/make_pii_cases.py). A found span counts only when start, end
and type all match a labelled one.

NER (names, organizations, addresses) is scored on its own set, by split
(dev: the rules were tuned on it; heldout: never) and by language:

    .venv/bin/python bench/pii_eval.py tests/data/pii_ner_cases.jsonl --ner auto --org
    .venv/bin/python bench/pii_eval.py --ner auto --org       # NER must not hurt the regex set

`--overlap` also counts a found span that overlaps a labelled one of the same
type (a boundary off by a word still hides most of a name). `--ner-model` names
the spaCy pipeline Presidio uses (a package or a folder).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

from shoptalk.data.pii import NER_TYPES, PRIORITY, PiiSettings, find_pii

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_cases.jsonl"
CJK = re.compile(r"[\u4e00-\u9fff]")

Spans = set[tuple[int, int, str]]


def matched(gold: Spans, got: Spans, overlap: bool) -> Counter[str]:
    """True positives per type: exact matches, or with `overlap` one found span per
    labelled span of the same type that it overlaps."""
    if not overlap:
        return Counter(t for _, _, t in gold & got)
    tp: Counter[str] = Counter()
    free = set(got)
    for s, e, t in sorted(gold):
        hit = next((g for g in sorted(free) if g[2] == t and g[0] < e and s < g[1]), None)
        if hit:
            free.discard(hit)
            tp[t] += 1
    return tp


def score(
    cases: list[dict], settings: PiiSettings, overlap: bool = False
) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    found: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    for case in cases:
        gold = {(s["start"], s["end"], s["type"]) for s in case["spans"]}
        got = {(s.start, s.end, s.type) for s in find_pii(case["text"], settings)}
        for kinds, spans in ((labelled, gold), (found, got)):
            kinds.update(t for _, _, t in spans)
        tp.update(matched(gold, got, overlap))
    table = {}
    for kind in [*PRIORITY, *NER_TYPES, "overall"]:
        t, f, g = (
            (sum(c.values()) for c in (tp, found, labelled))
            if kind == "overall"
            else (tp[kind], found[kind], labelled[kind])
        )
        if not (f or g):
            continue
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


def groups(cases: list[dict]) -> dict[str, list[dict]]:
    """All cases, then each split and language when the set has more than one."""
    out = {"all": cases}
    splits = sorted({c.get("split", "") for c in cases} - {""})
    for split in splits if len(splits) > 1 else []:
        out[split] = [c for c in cases if c.get("split") == split]
    for name, is_zh in (("Chinese", True), ("English", False)):
        subset = [c for c in cases if bool(CJK.search(c["text"])) == is_zh]
        if 0 < len(subset) < len(cases):
            out[name] = subset
            for split in splits if len(splits) > 1 else []:
                out[f"{split}, {name}"] = [c for c in subset if c.get("split") == split]
    return out


def print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'type':<16}{'labelled':>9}{'found':>7}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, row in table.items():
        print(
            f"{kind:<16}{row['labelled']:>9}{row['found']:>7}"
            f"{row['precision']:>11.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="?", type=Path, default=CASES)
    parser.add_argument("--ner", choices=["off", "auto", "jieba", "presidio"], default="off")
    parser.add_argument("--ner-model", default="en_core_web_sm")
    parser.add_argument("--org", action="store_true", help="also detect organizations")
    parser.add_argument("--overlap", action="store_true", help="also score overlapping spans")
    args = parser.parse_args()
    cases = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").splitlines()]
    settings = PiiSettings(ner=args.ner, ner_model=args.ner_model, org=args.org)
    for text in ("warm-up", "张三"):  # loads spaCy and jieba outside the timing
        find_pii(text, settings)
    for name, subset in groups(cases).items():
        started = time.perf_counter()
        table = score(subset, settings)
        seconds = time.perf_counter() - started
        chars = sum(len(c["text"]) for c in subset)
        print_table(f"{name}: {len(subset)} texts, {chars / seconds:,.0f} chars/s (exact)", table)
        if args.overlap:
            print_table(f"{name} (overlap)", score(subset, settings, overlap=True))


if __name__ == "__main__":
    main()
