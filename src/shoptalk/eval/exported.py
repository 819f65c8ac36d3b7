"""The scorecard re-run on an exported GGUF file, in llama.cpp (`shoptalk export --scorecard`).

The exported file answers the project's suites (and, with `eval.rag` and an
index, their '+rag' variants) through `answer_suites`, the scorecard's own
loop, with the file's chat template, tokenizer and stop tokens in llama.cpp
(`modeling.gguf.GgufChat`), greedily. Its answers are scored against the
answers of the model it was exported from, as `shoptalk eval --compare` scores
two models: same suites, same metrics, a paired-bootstrap 95% interval of
each change. The exported-from model's answers are the evaluated run's
(`evals/<run-id>/answers.json`) when its scorecard asked exactly these
questions; otherwise that model answers them again (transformers).

Written beside the export: `scorecard.json`, `report.html`, `answers.json`,
labelled `tuned` (the exported-from model) and `gguf-<quant>` (the file).
Not re-run on the file: retention (log-likelihood scoring of transformers
weights), canaries (the same) and the judge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

from shoptalk.artifacts import DatasetArtifact, EvalArtifact, RunArtifact, write_json
from shoptalk.eval.grounded import Grounded, add_claim_metrics, closed_book_flags, grounded_prompts
from shoptalk.eval.promote import mode_scores
from shoptalk.eval.questions import Suite
from shoptalk.eval.report import write_report
from shoptalk.eval.retention import QA_SUITE, with_general_qa
from shoptalk.eval.run import (
    BASE,
    NO_INDEX,
    RAG_OFF,
    TUNED,
    Flags,
    answer_suites,
    has_index,
    question_suites,
    with_rag_suites,
)
from shoptalk.eval.scorecard import (
    LOWER_IS_BETTER,
    Scorecard,
    abstention_rates,
    build_scorecard,
    write_scorecard,
)
from shoptalk.modeling.generate import load_assistant
from shoptalk.modeling.gguf import GgufChat
from shoptalk.project import Project

NOT_ON_GGUF = "measured on transformers weights only (log-likelihood scoring); not re-run on a GGUF"
# llama.cpp's context for the re-run: room for a retrieval prompt and its answer.
CONTEXT = 4096


@dataclass
class ExportScore:
    card: Scorecard
    folder: Path
    reference: str  # where the exported-from model's answers came from


def score_gguf(
    project: Project,
    run: RunArtifact,
    base_path: str,
    dataset_hash: str,
    gguf_file: Path,
    out: Path,
    context: int = CONTEXT,
) -> ExportScore:
    """Score `gguf_file` (exported from `run`) on the project's suites; write to `out`.

    `context`: llama.cpp's context in tokens (at most the model's own).
    """
    quant = gguf_file.name.removeprefix("model-").removesuffix(".gguf")
    label = f"gguf-{quant}"
    dataset = DatasetArtifact.of_run(project.datasets, dataset_hash)
    suites = with_general_qa(question_suites(project, dataset), project.config.eval.retention)
    rag_on = project.config.eval.rag and has_index(project)
    rag: dict[str, list[Grounded]] = {}
    if rag_on:
        from shoptalk.rag.retrieve import open_index

        index = open_index(project)
        rag = grounded_prompts(project, index, [s for s in suites if s.name != QA_SUITE])
    scored = with_rag_suites(suites, rag)
    timing: dict[str, float] = {}
    started = time.perf_counter()
    with GgufChat(gguf_file, n_ctx=context) as chat:
        exported, exported_flags = answer_suites(
            project, chat, suites, rag, f"scorecard: {label} answers (llama.cpp)"
        )
    timing[f"{label}_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    stored = evaluated_answers(project, run, scored)
    if stored is not None:
        reference, source = stored, f"{project.evals / run.run_id / 'answers.json'} (the eval's)"
        # Closed-book claim flags follow from the answers; the '+rag' ones were taken
        # before repair, which the stored replies no longer show.
        reference_flags: Flags = {
            name: closed_book_flags(rag[name], reference[name]) for name in rag
        }
    else:
        assistant = load_assistant(base_path, run, project.config.train.device)
        reference, reference_flags = answer_suites(
            project, assistant, suites, rag, f"scorecard: {TUNED} answers (transformers)"
        )
        del assistant
        source = "answered again by the exported-from model (no matching eval answers)"
        timing[f"{TUNED}_seconds"] = round(time.perf_counter() - started, 1)
    answers = {name: (reference[name], exported[name]) for name in exported}
    card = build_scorecard(
        run.run_id, project.config.base_model, scored, answers, project.config.data.refusal_answer
    )
    card.labels = [TUNED, label]
    card.abstention = abstention_rates(
        card, frozenset({QA_SUITE}), project.config.data.refusal_answer
    )
    add_claim_metrics(
        card, {name: (reference_flags.get(name, {}), f) for name, f in exported_flags.items()}
    )
    card.not_run = {"retention": NOT_ON_GGUF, "canaries": NOT_ON_GGUF}
    if not rag_on:
        reason = RAG_OFF if not project.config.eval.rag else NO_INDEX
        card.not_run |= {f"{name}+RAG": reason for name in card.labels}
    # The modes, named by who answers: the scorecard's two places are tuned and the file.
    names = {BASE: TUNED, TUNED: label}
    card.modes = {
        names[mode.split("+")[0]] + mode[len(mode.split("+")[0]) :]: value
        for mode, value in mode_scores(card).items()
    }
    card.timing = timing
    files = EvalArtifact(path=out)
    write_scorecard(card, files.scorecard)
    write_report(card, files.report, extra=_provenance(run, gguf_file, quant, source))
    write_json(files.answers, {k: {TUNED: v[0], label: v[1]} for k, v in answers.items()})
    return ExportScore(card, out, source)


def evaluated_answers(
    project: Project, run: RunArtifact, suites: list[Suite]
) -> dict[str, list[str]] | None:
    """The evaluated run's tuned answers per suite, if its scorecard asked exactly `suites`."""
    files = EvalArtifact(path=project.evals / run.run_id)
    if not (files.scorecard.is_file() and files.answers.is_file()):
        return None
    card = json.loads(files.scorecard.read_text(encoding="utf-8"))
    stored = json.loads(files.answers.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for suite in suites:
        asked = [q["prompt"] for q in card.get("questions", []) if q["suite"] == suite.name]
        tuned = stored.get(suite.name, {}).get(TUNED)
        if asked != [q.prompt_text for q in suite.questions] or tuned is None:
            return None
        if len(tuned) != len(asked):
            return None
        out[suite.name] = tuned
    return out


def _provenance(run: RunArtifact, gguf_file: Path, quant: str, source: str) -> str:
    rows = [
        ("exported file", str(gguf_file)),
        ("quantization", quant),
        ("runtime", "llama.cpp (llama-cpp-python), greedy, the file's template and stops"),
        ("exported from", f"{run.run_id} ({TUNED})"),
        (f"{TUNED} answers", source),
    ]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>Exported file</h2><table>{cells}</table>"


@dataclass
class Change:
    suite: str
    metric: str
    reference: float
    exported: float
    diff: list[float]  # [mean(exported - reference), 2.5th, 97.5th percentile]

    @property
    def dropped(self) -> bool:
        """Worse beyond the 95% interval: the whole interval on the losing side of 0."""
        low, high = self.diff[1], self.diff[2]
        return low > 0 if self.metric in LOWER_IS_BETTER else high < 0


def changes(card: Scorecard) -> list[Change]:
    """Each suite's metrics: the exported-from model, the file, the change and its interval."""
    return [
        Change(name, metric, scores.base[metric], scores.tuned[metric], scores.diff[metric])
        for name, scores in card.suites.items()
        for metric in scores.base
        if metric in scores.diff
    ]


def comparison_lines(score: ExportScore) -> list[str]:
    """The short comparison `shoptalk export --scorecard` prints: drops flagged."""
    card = score.card
    a, b = card.labels
    rows = changes(card)
    width = max((len(f"{c.suite} {c.metric}") for c in rows), default=10)
    lines = [f"scorecard {b} (llama.cpp) vs {a} ({card.run_id}): {len(rows)} metrics"]
    for c in rows:
        mean, low, high = c.diff
        flag = "  DROP" if c.dropped else ""
        lines.append(
            f"  {f'{c.suite} {c.metric}':<{width}}  {c.reference:.3f} -> {c.exported:.3f}  "
            f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]{flag}"
        )
    dropped = [c for c in rows if c.dropped]
    verdict = (
        f"{len(dropped)} metric(s) dropped beyond the 95% interval: "
        + ", ".join(f"{c.suite} {c.metric}" for c in dropped)
        if dropped
        else "no metric dropped beyond the 95% interval"
    )
    lines.append(f"  {verdict}")
    lines.append(f"  {a} answers: {score.reference}")
    lines.append(f"  report: {score.folder / 'report.html'}")
    return lines
