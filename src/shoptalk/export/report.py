"""The parity report: `parity.txt` for people, `parity.json` for tools, in the export folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from shoptalk.artifacts import write_atomic, write_json
from shoptalk.export.parity import ParityResult

SHOWN_ROWS = 12


def write_parity_report(result: ParityResult, folder: Path, model_id: str) -> Path:
    """Write both files; returns the text report's path."""
    write_json(
        folder / "parity.json",
        {"model": model_id, "passed": result.passed} | asdict(result),
    )
    path = folder / "parity.txt"
    write_atomic(path, render_text(result, model_id))
    return path


def render_text(result: ParityResult, model_id: str) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    if result.passed and not result.greedy_required:
        verdict += " (its greedy answers are compared and reported, not required to agree)"
    lines = [
        f"Parity check: {result.artifact} export of {model_id}: {verdict}",
        "",
        "The same prompts were run through the tuned model in memory (reference) and",
        "through the exported artifact loaded back from disk.",
        "",
    ]
    for check in result.checks:
        lines.append(f"[{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    pairs = enumerate(zip(result.reference, result.exported, strict=True))
    # Real differences first: they are what a reader has to look at.
    differing = sorted((i for i, (a, b) in pairs if a != b), key=lambda i: i in result.near_ties)
    ties = len(result.near_ties)
    lines += [
        "",
        f"Answers that differ: {len(differing)} of {len(result.prompts)} "
        f"({ties} near ties, {len(differing) - ties} real differences)",
    ]
    for i in differing[:SHOWN_ROWS]:
        lines += ["", f"--- prompt {i + 1}{where(result, i)}", result.prompts[i].rstrip()]
        lines += [f"reference> {result.reference[i]}", f"export>    {result.exported[i]}"]
    if len(differing) > SHOWN_ROWS:
        lines.append(f"... and {len(differing) - SHOWN_ROWS} more (see parity.json)")
    return "\n".join(lines) + "\n"


def where(result: ParityResult, i: int) -> str:
    """Where prompt i's answers part, and how close the reference's own choice was there."""
    if i not in result.divergences:
        return ""
    k, margin = result.divergences[i]
    gap = f", the reference's top-2 logit margin there {margin:.3g}" if margin is not None else ""
    tie = "; near tie" if i in result.near_ties else ""
    return f" (first different token: {k + 1}{gap}{tie})"
