"""The data report: what went into a dataset, what was left out and why, what changed.

    shoptalk data report my-assistant
    -> .shoptalk/datasets/<hash>/report.json and report.html

Everything shown comes from the dataset files (already redacted) and the
manifest (ids, sources, reasons, counts). PII appears as counts per type only;
free-text errors from the manifest are redacted again before they are shown.
"""

from __future__ import annotations

import html
import json
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shoptalk.artifacts import (
    MANIFEST_FILE,
    REPORT_HTML,
    REPORT_JSON,
    DatasetArtifact,
    write_atomic,
    write_json,
)
from shoptalk.config import PiiSettings
from shoptalk.data.clean import source_file
from shoptalk.data.dedupe import record_text
from shoptalk.data.pii import redact
from shoptalk.errors import ShoptalkError
from shoptalk.project import Project
from shoptalk.text import CJK_CHAR, is_chinese

KINDS = ("faq", "paraphrase", "doc_qa", "chat", "refusal", "doc_text")
SPLITS = ("train", "val", "heldout", "text")
EXAMPLES = 20
BINS = 12
NOT_RECORDED = "(source not recorded)"


@dataclass(frozen=True)
class Item:
    """One record of a dataset, flattened: what the report needs and nothing more."""

    id: str
    kind: str
    split: str
    source: str
    question: str
    text: str


def dataset_items(dataset: DatasetArtifact) -> list[Item]:
    items = []
    for split in ("train", "val", "heldout"):
        for c in dataset.conversations(split):
            question = next((m.content for m in c.messages if m.role == "user"), "")
            items.append(Item(c.id, c.kind, split, c.source, question, record_text(c)))
    items += [Item(c.id, "doc_text", "text", c.source, c.text, c.text) for c in dataset.texts()]
    return items


def built_at(dataset: DatasetArtifact) -> str:
    mtime = dataset.manifest_file.stat().st_mtime
    return datetime.fromtimestamp(mtime, tz=timezone.utc).isoformat(timespec="seconds")


def approx_tokens(text: str) -> int:
    """Words, with each CJK character counted as one (Chinese has no spaces)."""
    return len(CJK_CHAR.findall(text)) + len(CJK_CHAR.sub(" ", text).split())


def histogram(values: list[int], bins: int) -> list[tuple[int, int, int]]:
    """Equal-width bins from 0 to the largest value: (low, high, count), high exclusive."""
    if not values:
        return []
    width = max(1, -(-(max(values) + 1) // bins))
    counts = Counter(v // width for v in values)
    return [(i * width, (i + 1) * width, counts[i]) for i in range(max(counts) + 1)]


def length_stats(values: list[int]) -> dict:
    ordered = sorted(values)
    return {
        "count": len(values),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "bins": [list(b) for b in histogram(values, BINS)],
    }


def token_lengths(items: list[Item], tokenizer: Any = None) -> dict:
    if tokenizer is None:
        count: Callable[[str], int] = approx_tokens
    else:
        count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    per_kind: dict[str, list[int]] = defaultdict(list)
    for item in items:
        per_kind[item.kind].append(count(item.text))
    return {
        "unit": "tokens" if tokenizer is not None else "words (each CJK character is one)",
        "kinds": {k: length_stats(per_kind[k]) for k in KINDS if per_kind[k]},
    }


def language_mix(items: list[Item]) -> dict:
    chinese = sum(is_chinese(item.text) for item in items)
    total = len(items)
    return {
        "chinese": chinese,
        "other": total - chinese,
        "chinese_share": round(chinese / total, 3) if total else 0.0,
        "rule": "Chinese characters are at least half of its letters",
    }


def counts(items: list[Item]) -> dict:
    kinds = {k: {s: 0 for s in SPLITS} for k in KINDS}
    files: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        kinds.setdefault(item.kind, {s: 0 for s in SPLITS})[item.split] += 1
        files[source_file(item.source)][item.kind] += 1
    return {
        "total": len(items),
        "kinds": {k: v | {"total": sum(v.values())} for k, v in kinds.items()},
        "sources": {f: dict(c) | {"total": c.total()} for f, c in sorted(files.items())},
    }


def filtered(manifest: dict, clean: Callable[[str], str]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in manifest.get("dropped", []):
        # "has 1 characters" and "has 0 characters" are one reason; settings like min_chars=2 stay.
        groups[re.sub(r"(?<![=\d])\d+", "N", clean(d["reason"]))].append(d)
    by_reason = [
        {
            "reason": reason,
            "count": len(rows),
            "examples": [{"id": r["id"], "source": clean(r["source"])} for r in rows[:EXAMPLES]],
        }
        for reason, rows in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    skipped = [clean(e) for e in manifest.get("skipped", [])]
    return {"dropped": len(manifest.get("dropped", [])), "by_reason": by_reason, "skipped": skipped}


def duplicates(manifest: dict, sources: dict[str, str]) -> list[dict]:
    """Clusters with sources. A removed record is not in the dataset: its source is known
    only if the manifest recorded it (`removed_sources`), else it is None."""
    out = []
    for c in manifest.get("duplicates", []):
        named = dict(zip(c["removed"], c.get("removed_sources", []), strict=False))
        kept = {"id": c["kept"], "source": c.get("kept_source") or sources.get(c["kept"])}
        removed = [{"id": i, "source": named.get(i) or sources.get(i)} for i in c["removed"]]
        out.append({"kind": c["kind"], "kept": kept, "removed": removed})
    return out


def source_records(items: list[Item]) -> list[Item]:
    """Records that stand for a source row or section; generated ones follow from them."""
    kinds = {"faq", "chat", "doc_text"}
    if not any(item.kind == "doc_text" for item in items):
        kinds.add("doc_qa")
    return [item for item in items if item.kind in kinds]


def match(new: list[Item], old: list[Item], key: Callable[[Item], object]) -> tuple:
    """Pair new items with old ones of an equal key: (paired new, unpaired new, unpaired old)."""
    pool: dict[object, list[int]] = defaultdict(list)
    for j, item in enumerate(old):
        pool[key(item)].append(j)
    used, paired, rest = set(), [], []
    for item in new:
        if pool.get(key(item)):
            used.add(pool[key(item)].pop(0))
            paired.append(item)
        else:
            rest.append(item)
    return paired, rest, [item for j, item in enumerate(old) if j not in used]


def diff(old_items: list[Item], new_items: list[Item]) -> dict:
    """Added, removed and changed source records.

    Identical records pair first, so a row that only moved (its `file:line` shifted) is
    unchanged; then the same question (an edited answer) or the same source is "changed".
    """
    new, old = source_records(new_items), source_records(old_items)
    _, new, old = match(new, old, lambda i: (i.kind, i.text))
    edited, new, old = match(new, old, lambda i: (i.kind, i.question))
    same_source, added, removed = match(new, old, lambda i: (i.kind, i.source))
    return {
        "added": examples(added),
        "removed": examples(removed),
        "changed": examples(edited + same_source),
    }


def examples(items: list[Item]) -> dict:
    rows = [{"source": i.source, "question": i.question[:80]} for i in items[:EXAMPLES]]
    return {"count": len(items), "examples": rows}


def build_report(
    project: Project,
    dataset: DatasetArtifact,
    previous: DatasetArtifact | None,
    tokenizer: Any = None,
) -> dict:
    """The data report as JSON-ready data; `tokenizer` needs only `encode(text)`."""
    manifest = dataset.manifest()
    items = dataset_items(dataset)
    clean = redactor(project.config.data.pii, project.root)
    report = {
        "dataset": dataset.hash,
        "path": str(dataset.path),
        "built": built_at(dataset),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts(items),
        "token_lengths": token_lengths(items, tokenizer),
        "languages": language_mix(items),
        "filtered": filtered(manifest, clean),
        "duplicates": duplicates(manifest, {i.id: i.source for i in items}),
        "pii_redacted": dict(manifest.get("pii_redacted", {})),
        "previous": None,
    }
    if previous is not None:
        changes = diff(dataset_items(previous), items)
        report["previous"] = {"dataset": previous.hash, "built": built_at(previous), **changes}
    return report


def report_for(report: dict, may_see: Callable[[str], bool]) -> dict:
    """The report as shown to a reader who may see only the source files `may_see` allows.

    A restricted file's name, and the records and errors that name it, are left out;
    what was left out is counted (totals and aggregate numbers stay as they are).
    """
    seen: dict[str, bool] = {}

    def shown(source: str | None) -> bool:
        if not source:
            return True
        name = source_file(source)
        if name not in seen:
            seen[name] = may_see(name)
        return seen[name]

    out = json.loads(json.dumps(report))
    sources, hidden = {}, Counter()
    for name, per_kind in report["counts"]["sources"].items():
        if shown(name):
            sources[name] = per_kind
        else:
            hidden.update(per_kind)
    if hidden:
        files = sum(not shown(name) for name in report["counts"]["sources"])
        sources[f"({files} files this key may not read)"] = dict(hidden)
    out["counts"]["sources"] = sources
    for group in out["filtered"]["by_reason"]:
        group["examples"] = [e for e in group["examples"] if shown(e["source"])]
    # A skipped source's error starts with its file: "docs/a.md:12: ...".
    skipped = [e for e in report["filtered"]["skipped"] if shown(e.split(": ", 1)[0])]
    if len(skipped) < len(report["filtered"]["skipped"]):
        left_out = len(report["filtered"]["skipped"]) - len(skipped)
        skipped.append(f"({left_out} errors in files this key may not read)")
    out["filtered"]["skipped"] = skipped
    out["duplicates"] = [
        d
        for d in report["duplicates"]
        if shown(d["kept"]["source"]) and all(shown(r["source"]) for r in d["removed"])
    ]
    if out.get("previous"):
        for name in ("added", "removed", "changed"):
            change = out["previous"][name]
            change["examples"] = [e for e in change["examples"] if shown(e["source"])]
    return out


def redactor(settings: PiiSettings, root: Path) -> Callable[[str], str]:
    """Manifest strings as shown: PII redacted, paths relative to the project."""
    prefix = str(root) + os.sep
    return lambda text: redact(text.replace(prefix, ""), settings).text


def previous_dataset(datasets: Path, current: DatasetArtifact) -> DatasetArtifact | None:
    """The most recently built other dataset version, if any."""
    others = [
        p / MANIFEST_FILE
        for p in datasets.iterdir()
        if p.is_dir() and p.name != current.hash and (p / MANIFEST_FILE).is_file()
    ]
    if not others:
        return None
    latest = max(others, key=lambda m: m.stat().st_mtime).parent
    return DatasetArtifact(path=latest, hash=latest.name)


def base_tokenizer(project: Project) -> tuple[Any, str]:
    """The base model's tokenizer, or None and why lengths are approximate."""
    from shoptalk.modeling.load import load_tokenizer, resolve_base_model

    try:
        return load_tokenizer(resolve_base_model(project.config.base_model, project.root)), ""
    except (ShoptalkError, OSError, ValueError, ImportError) as exc:
        return None, f"Approximate: the base model's tokenizer could not be loaded ({exc})"


def write_report(project: Project, dataset: DatasetArtifact) -> tuple[Path, Path]:
    """Write report.json and report.html beside the project's `dataset`."""
    tokenizer, note = base_tokenizer(project)
    report = build_report(project, dataset, previous_dataset(project.datasets, dataset), tokenizer)
    if note:
        report["token_lengths"]["note"] = note
    json_path, html_path = dataset.path / REPORT_JSON, dataset.path / REPORT_HTML
    write_json(json_path, report)
    write_atomic(html_path, render_html(report))
    return json_path, html_path


# --- HTML: one self-contained file, every text escaped ---------------------------------

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{margin-bottom:0}.meta{color:#666}section{margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}
svg{margin:.3em 1em .3em 0}rect{fill:#4a7ab8}svg text{font-size:11px;fill:#444}"""


def esc(value: object) -> str:
    return html.escape(NOT_RECORDED if value is None else str(value))


def table(headers: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    cells = lambda row: "".join(  # noqa: E731
        f'<td class="n">{v}</td>' if isinstance(v, int | float) else f"<td>{esc(v)}</td>"
        for v in row
    )
    body = "".join(f"<tr>{cells(row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def paragraph(text: str, css_class: str = "") -> str:
    return f'<p class="{css_class}">{esc(text)}</p>' if css_class else f"<p>{esc(text)}</p>"


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def svg_bars(bins: list, title: str, width: int = 440, height: int = 150) -> str:
    """A bar chart of (low, high, count) bins as inline SVG."""
    if not bins:
        return ""
    top = max(b[2] for b in bins) or 1
    plot_w, plot_h, left = width - 50, height - 45, 40
    bar = plot_w / len(bins)
    rects = "".join(
        f'<rect x="{left + i * bar:.1f}" y="{22 + plot_h * (1 - c / top):.1f}" '
        f'width="{max(bar - 2, 1):.1f}" height="{plot_h * c / top:.1f}">'
        f"<title>{lo}-{hi - 1}: {c}</title></rect>"
        for i, (lo, hi, c) in enumerate(bins)
    )
    axis = (
        f'<text x="{left}" y="{height - 6}">{bins[0][0]}</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">{bins[-1][1]}</text>'
        f'<text x="{left - 4}" y="30" text-anchor="end">{top}</text>'
        f'<text x="{left - 4}" y="{22 + plot_h}" text-anchor="end">0</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
        f'<text x="{left}" y="13" font-weight="bold">{esc(title)}</text>{rects}{axis}</svg>'
    )


def svg_histogram(values: list[int], bins: int, title: str) -> str:
    return svg_bars(histogram(values, bins), title)


def html_counts(report: dict) -> str:
    c = report["counts"]
    kinds = [[k, *v.values()] for k, v in c["kinds"].items()]
    kinds.append(["all", *(sum(v[s] for v in c["kinds"].values()) for s in (*SPLITS, "total"))])
    files = [[f, *(v.get(k, 0) for k in KINDS), v["total"]] for f, v in c["sources"].items()]
    splits = [f"{s}.jsonl" for s in SPLITS]
    return section("Records per kind", table(["kind", *splits, "total"], kinds)) + section(
        "Records per source file", table(["file", *KINDS, "total"], files)
    )


def html_lengths(report: dict) -> str:
    t, lang = report["token_lengths"], report["languages"]
    stats = [
        [k, s["count"], s["min"], s["median"], s["p95"], s["max"]] for k, s in t["kinds"].items()
    ]
    charts = "".join(svg_bars(s["bins"], f"{k} ({s['count']})") for k, s in t["kinds"].items())
    mix = [[lang["chinese"], lang["other"], f"{lang['chinese_share']:.1%}"]]
    return section(
        "Length per kind",
        paragraph(f"Length of each record's text in {t['unit']}. {t.get('note', '')}"),
        table(["kind", "records", "min", "median", "p95", "max"], stats),
        charts,
    ) + section(
        "Language mix",
        table(["mostly Chinese", "other", "Chinese share"], mix),
        paragraph(f"A record counts as Chinese when {lang['rule']}."),
    )


def html_filtered(report: dict) -> str:
    f = report["filtered"]
    rows = [
        [g["reason"], g["count"], ", ".join(e["source"] for e in g["examples"])]
        for g in f["by_reason"]
    ]
    skipped = [[e] for e in f["skipped"][:100]]
    more = len(f["skipped"]) - len(skipped)
    return section(
        f"Filtered out: {f['dropped']} records",
        table(["reason", "records", f"sources (first {EXAMPLES})"], rows),
        f"<h3>Source errors skipped: {len(f['skipped'])}</h3>",
        table(["error"], skipped),
        paragraph(f"... and {more} more in report.json") if more > 0 else "",
    )


def html_duplicates(report: dict) -> str:
    rows = [
        [
            d["kind"],
            f"{d['kept']['source'] or NOT_RECORDED} ({d['kept']['id']})",
            "; ".join(f"{r['source'] or NOT_RECORDED} ({r['id']})" for r in d["removed"]),
        ]
        for d in report["duplicates"]
    ]
    pii = [[k, v] for k, v in sorted(report["pii_redacted"].items())]
    return section(
        f"Duplicate clusters: {len(rows)}", table(["match", "kept", "removed"], rows)
    ) + section(
        "Personal data redacted",
        paragraph("Counts per type; values were replaced by placeholders and are not shown."),
        table(["type", "values redacted"], pii),
    )


def html_changes(report: dict) -> str:
    prev, title = report["previous"], "Changes since the previous version"
    if prev is None:
        return section(title, paragraph("No previous dataset version."))
    parts = [paragraph(f"Compared with {prev['dataset']}, built {prev['built']}.")]
    for name in ("added", "removed", "changed"):
        rows = [[e["source"], e["question"]] for e in prev[name]["examples"]]
        parts += [
            f"<h3>{name.capitalize()}: {prev[name]['count']}</h3>",
            table(["source", "question"], rows),
        ]
    return section(title, *parts)


def render_html(report: dict) -> str:
    meta = (
        f"dataset {report['dataset']} · built {report['built']} · "
        f"report written {report['written']} · {report['counts']['total']} records"
    )
    sections = (html_counts, html_lengths, html_filtered, html_duplicates, html_changes)
    body = "<h1>Data report</h1>" + paragraph(meta, "meta") + "".join(s(report) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Data report {esc(report['dataset'])}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
