"""The eval stage: base vs tuned (or any two models) on the same questions -> scorecard.json.

Both models answer every suite with the same system prompt, chat template,
greedy decoding and stop tokens; only the weights differ.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from pathlib import Path

import shoptalk
from shoptalk.artifacts import (
    ABSTAIN_RULE,
    FINAL_DIR,
    DatasetArtifact,
    EvalArtifact,
    RunArtifact,
    write_json,
)
from shoptalk.errors import ShoptalkError
from shoptalk.eval.canary import CanaryCheck
from shoptalk.eval.gate import check_gate
from shoptalk.eval.grounded import (
    Grounded,
    add_claim_metrics,
    closed_book_flags,
    grounded_prompts,
    verified_replies,
)
from shoptalk.eval.judge import METRIC as JUDGE_METRIC
from shoptalk.eval.judge import SUITE as JUDGE_SUITE
from shoptalk.eval.judge import Judgement, JudgeSettings, describe, run_judge
from shoptalk.eval.metrics import bootstrap_diff
from shoptalk.eval.promote import choose_mode, mode_scores
from shoptalk.eval.questions import Suite, load_suites, suite_from_faq, suite_from_style
from shoptalk.eval.report import write_report
from shoptalk.eval.retention import QA_SUITE, RetentionCheck, with_general_qa
from shoptalk.eval.retrieval import SUITE as RETRIEVAL_SUITE
from shoptalk.eval.retrieval import retrieval_scores
from shoptalk.eval.scorecard import (
    Scorecard,
    SuiteScores,
    abstention_rates,
    build_scorecard,
    read_scorecard,
    write_scorecard,
)
from shoptalk.modeling.chat_format import with_system
from shoptalk.modeling.generate import Assistant, answer, load_assistant
from shoptalk.modeling.gguf import GgufChat
from shoptalk.project import Project
from shoptalk.records import Message

log = logging.getLogger(__name__)

HELDOUT_SUITE = "heldout_faq"
BASE, TUNED = "base", "tuned"
# With eval.rag, each suite is asked again with retrieved documents, as '<suite>+rag'.
RAG_SUFFIX = "+rag"
RAG_OFF = "eval.rag is off (turn it on once `shoptalk index` has built the retrieval index)"
NO_INDEX = "no retrieval index (run `shoptalk index` to build one)"
# Per suite, per answer: {"unsupported_claims": [0/1...], "repaired": [...]} (eval/grounded.py).
Flags = dict[str, dict[str, list[float]]]


def question_suites(
    project: Project, dataset: DatasetArtifact, extra: list[str] | None = None
) -> list[Suite]:
    """The user's question files, or else the FAQ rows the dataset held out; and, when the
    project has style rules but no style suite of its own, drafting prompts scored on them."""
    files = extra if extra else project.config.sources.questions
    held = dataset.conversations("heldout")
    if files:
        suites = load_suites([resolve(project.root, f) for f in files])
    elif held:
        pairs = [(c.messages[0].content, c.messages[-1].content, c.source) for c in held]
        suites = [suite_from_faq(HELDOUT_SUITE, pairs)]
    else:
        suites = []
    if extra or any(s.kind == "style" for s in suites):
        return suites
    # What people ask: the held-out FAQ rows, else the questions of the domain suites.
    asked = [c.messages[0].content for c in held] or [
        q.prompt_text for s in suites if s.kind == "domain" for q in s.questions
    ]
    generated = suite_from_style(dataset.style(), asked)
    return suites + [generated] if generated else suites


def resolve(root: Path, name: str) -> Path:
    """Config paths are relative to the project; a `--questions` path may be relative to the cwd."""
    return root / name if (root / name).exists() else Path(name)


def inputs_hash(
    project: Project, name: str, suites: list[Suite], extra: tuple[str, ...] = ()
) -> str:
    h = hashlib.sha256(name.encode())
    # Another version may answer, verify or score differently: its answers are not reused.
    h.update(shoptalk.__version__.encode())
    for part in extra:
        h.update(part.encode())
    h.update(project.config.eval.model_dump_json().encode())
    h.update(project.system_prompt.encode())
    for suite in suites:
        h.update(suite.model_dump_json().encode())
    return h.hexdigest()[:16]


def evaluate(
    project: Project,
    run: RunArtifact,
    base_path: str,
    suites: list[Suite],
    force: bool = False,
    own_folder: bool = False,
) -> Scorecard:
    """Base vs tuned: write `.shoptalk/evals/<run-id>/scorecard.json`; reuse it if nothing changed.

    `own_folder`: the suites are not the project's (`--questions`), so the
    results go to a sub-folder of their own (`eval_folder`).
    """
    return score_pair(project, (BASE, None), (TUNED, run), base_path, suites, force, own_folder)


def compare(
    project: Project,
    a: str,
    b: str,
    base_path: str,
    suites: list[Suite],
    force: bool = False,
    own_folder: bool = False,
) -> Scorecard:
    """Any two models ('base' or run ids) on the same questions, A in the base's place.

    Written to `.shoptalk/evals/<a>-vs-<b>/`; the scorecard's `labels` name the two.
    """
    first, second = (a, find_model(project, a)), (b, find_model(project, b))
    return score_pair(project, first, second, base_path, suites, force, own_folder)


def eval_folder(project: Project, name: str, suites: list[Suite], own_folder: bool) -> Path:
    """Where an eval writes: `evals/<name>/`, or for other questions than the project's
    `evals/<name>/questions-<hash>/`, so that it never replaces the build's scorecard
    (which the console and the registry read) nor another question set's results.
    """
    if not own_folder:
        return project.evals / name
    h = hashlib.sha256()
    for suite in suites:
        h.update(suite.model_dump_json().encode())
    return project.evals / name / f"questions-{h.hexdigest()[:10]}"


def find_model(project: Project, name: str) -> RunArtifact | None:
    """'base' is the untuned base model (None); anything else a finished run's id."""
    if name == BASE:
        return None
    run = project.run(name)
    if not run.done:
        finished = sorted(p.parent.name for p in project.runs.glob(f"*/{FINAL_DIR}"))
        raise ShoptalkError(
            f"no finished run '{name}' in {project.runs}: expected 'base' or one of "
            f"{', '.join(finished) or '(none yet: run `shoptalk build` first)'}"
        )
    return run


Model = tuple[str, RunArtifact | None]


def score_pair(
    project: Project,
    first: Model,
    second: Model,
    base_path: str,
    suites: list[Suite],
    force: bool = False,
    own_folder: bool = False,
) -> Scorecard:
    """Both models answer every suite; the scorecard's "base" side is `first`, "tuned" `second`."""
    labels = [first[0], second[0]]
    name = second[1].run_id if labels == [BASE, TUNED] else f"{first[0]}-vs-{second[0]}"
    out = eval_folder(project, name, suites, own_folder)
    # Retention and canary suites: measured on each model inside the loop below.
    checks = model_checks(project, first[1], second[1], base_path)
    suites = with_general_qa(suites, project.config.eval.retention)
    rag_on = project.config.eval.rag and has_index(project)
    extra = tuple(c.digest() for c in checks)
    if rag_on:  # the selection settings and the abstention rule shape what RAG modes read
        rule = project.index / ABSTAIN_RULE
        fitted = rule.read_text(encoding="utf-8") if rule.is_file() else ""
        extra += (project.config.rag.model_dump_json(), fitted)
    digest = inputs_hash(project, name, suites, extra)
    stamp = out / "inputs.txt"
    files = EvalArtifact(path=out)
    if not force and stamp.is_file() and stamp.read_text().strip() == digest:
        card = read_scorecard(files.scorecard)
        # The answers are still valid; the verdict is re-judged by this version's gate.
        judged = card.model_copy(deep=True)
        if labels == [BASE, TUNED]:
            judge_modes(judged, project)
        if judged != card:
            write_scorecard(judged, files.scorecard)
        if judged != card or not files.report.is_file():
            write_report(judged, files.report)
        return judged
    timing: dict[str, float] = {}
    answers: dict[str, tuple[list[str], list[str]]] = {}
    flags: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    # The general QA suite measures the model alone: no retrieval for it.
    rag: dict[str, list[Grounded]] = {}
    retrieval = None
    if rag_on:
        from shoptalk.rag.retrieve import open_index

        index = open_index(project)
        rag = grounded_prompts(project, index, [s for s in suites if s.name != QA_SUITE])
        retrieval = retrieval_scores(index, suites)
    for side, (_, which) in ((BASE, first), (TUNED, second)):
        started = time.perf_counter()
        assistant = load_assistant(base_path, which, project.config.train.device)
        per_suite, per_flags = answer_suites(
            project, assistant, suites, rag, f"eval: {side} answers"
        )
        for suite_name, texts in per_suite.items():
            answers.setdefault(suite_name, ([], []))[0 if side == BASE else 1].extend(texts)
        for suite_name, suite_flags in per_flags.items():
            flags.setdefault(suite_name, ({}, {}))[0 if side == BASE else 1].update(suite_flags)
        for check in checks:
            check.measure(side, assistant)
        timing[f"{side}_seconds"] = round(time.perf_counter() - started, 1)
        del assistant
        gc.collect()
    scored = with_rag_suites(suites, rag)
    n = sum(len(s.questions) for s in scored)
    checked = sum(c.seconds for c in checks)
    timing["questions_per_second"] = round(2 * n / max(1e-9, sum(timing.values()) - checked), 2)
    card = build_scorecard(
        name, project.config.base_model, scored, answers, project.config.data.refusal_answer
    )
    card.labels = labels
    card.abstention = abstention_rates(
        card, frozenset({QA_SUITE}), project.config.data.refusal_answer
    )
    add_claim_metrics(card, flags)
    if not rag_on:
        reason = RAG_OFF if not project.config.eval.rag else NO_INDEX
        card.not_run = {f"{label}+RAG": reason for label in labels}
    if retrieval is not None:
        card.suites[RETRIEVAL_SUITE] = retrieval
    for check in checks:
        card.suites[check.name] = check.scores()
        timing[f"{check.name}_seconds"] = round(check.seconds, 1)
        write_json(out / f"{check.name}.json", check.details())
    judge = project.config.eval.judge
    if judge is not None:
        started = time.perf_counter()
        add_judge(card, judge, out)
        timing["judge_seconds"] = round(time.perf_counter() - started, 1)
    card.timing = timing
    if labels == [BASE, TUNED]:
        judge_modes(card, project)
    write_scorecard(card, files.scorecard)
    write_report(card, files.report)
    write_json(files.answers, {k: {BASE: v[0], TUNED: v[1]} for k, v in answers.items()})
    stamp.write_text(digest)
    return card


def judge_modes(card: Scorecard, project: Project) -> None:
    """The gate's verdict, each mode's score and the mode to serve, set on `card`."""
    card.gate = check_gate(card, project.config.eval.gate)
    card.modes = mode_scores(card)
    card.mode, card.mode_reason = choose_mode(card, project.config.eval.promote, card.gate.passed)


def add_judge(card: Scorecard, settings: JudgeSettings, out: Path) -> None:
    """Judge the user's domain questions that have a reference: suite 'judge', row verdicts."""
    rows = [q for q in card.questions if q.kind == "domain" and q.reference and q.suite != QA_SUITE]
    rows = rows[: settings.max_questions] if settings.max_questions else rows
    if not rows:
        log.warning("eval.judge is set, but no domain question has a reference answer")
        return
    items = [(q.prompt, q.reference or "", q.base_answer, q.tuned_answer) for q in rows]
    details = run_judge(settings, items)
    base, tuned = [], []
    for row, judgement in zip(rows, details["judgements"], strict=True):
        row.judge_verdict = describe(Judgement.model_validate(judgement), card.labels)
        base.append(float(judgement["outcome"] == "base"))
        tuned.append(float(judgement["outcome"] == "tuned"))
    card.suites[JUDGE_SUITE] = SuiteScores(
        n=len(rows),
        kind="judge",
        base={JUDGE_METRIC: sum(base) / len(base)},
        tuned={JUDGE_METRIC: sum(tuned) / len(tuned)},
        diff={JUDGE_METRIC: list(bootstrap_diff(base, tuned))},
    )
    write_json(out / "judge.json", {"labels": card.labels, **details})


def model_checks(
    project: Project, first: RunArtifact | None, second: RunArtifact | None, base_path: str
) -> list[RetentionCheck | CanaryCheck]:
    """The suites measured on the models themselves: retention, and canaries if planted.

    Retention measures drift from the first model's own answers; the canaries
    are those of the dataset the second (else the first) was trained on.
    """
    checks: list[RetentionCheck | CanaryCheck] = []
    if project.config.eval.retention:
        checks.append(RetentionCheck.setup(project, base_path, reference=first))
    trained = second or first
    canaries = CanaryCheck.setup(project, trained) if trained else None
    if canaries is not None:
        checks.append(canaries)
    return checks


def has_index(project: Project) -> bool:
    from shoptalk.rag.index import index_folder
    from shoptalk.rag.store import index_exists

    return index_exists(index_folder(project))


def answer_suites(
    project: Project,
    assistant: Assistant | GgufChat,
    suites: list[Suite],
    rag: dict[str, list[Grounded]] | None = None,
    phase: str | None = None,
) -> tuple[dict[str, list[str]], Flags]:
    """One batched generation over every question of every suite (and its RAG variant).

    `rag[suite]` holds, per question, what retrieval gave it (eval/grounded.py).
    `assistant` may be an exported GGUF in llama.cpp (eval/exported.py).
    Returns the answers per suite ('<suite>+rag' verified and repaired as shown
    to users) and, per suite, the per-answer claim flags.
    """
    from shoptalk.modeling.embed import load_embedder
    from shoptalk.rag.voice import follow_style

    settings = project.config.eval
    # Which of the guide's situations a draft is about (rag.voice.situation_for); loaded
    # on first use, so only for a guide that names situations.
    embedder = load_embedder(project.config.rag.embedding_model, project.root)
    prompts = [
        with_system([Message(role="user", content=q.prompt_text)], project.system_prompt)
        for suite in suites
        for q in suite.questions
    ]
    rag = rag or {}
    asked = [g for suite in suites for g in rag.get(suite.name, []) if g.messages]
    # The closed-book prompts write any number; those with passages only theirs, as
    # `rag.copy_numbers` says for this model (modeling.copy_numbers).
    copies = project.config.rag.copies_numbers(assistant.tuned)
    sources = [None] * len(prompts) + [g.sources() if copies else None for g in asked]
    prompts += [g.messages for g in asked]
    texts = answer(assistant, prompts, settings.max_new_tokens, settings.batch_size, phase, sources)
    out: dict[str, list[str]] = {}
    flags: Flags = {}
    for suite in suites:
        out[suite.name], texts = texts[: len(suite.questions)], texts[len(suite.questions) :]
        # The post-check users get in every mode: drafts held to the style rules.
        out[suite.name] = [
            follow_style(q.prompt_text, a, project.style, embedder)
            for q, a in zip(suite.questions, out[suite.name], strict=True)
        ]
        if suite.name in rag:
            flags[suite.name] = closed_book_flags(rag[suite.name], out[suite.name])
    for suite in suites:
        if suite.name not in rag:
            continue
        asked = sum(g.messages is not None for g in rag[suite.name])
        generated, texts = texts[:asked], texts[asked:]
        name = rag_name(suite.name)
        out[name], flags[name] = verified_replies(
            rag[suite.name],
            generated,
            project.style,
            project.system_prompt,
            project.organization,
            embedder,
            project.config.data.own_refusal_answer,
        )
    return out, flags


def rag_name(suite: str) -> str:
    return f"{suite}{RAG_SUFFIX}"


def with_rag_suites(suites: list[Suite], rag: dict[str, list]) -> list[Suite]:
    """`suites` plus a '<suite>+rag' copy of each suite that retrieval ran for."""
    return [
        *suites,
        *(s.model_copy(update={"name": rag_name(s.name)}) for s in suites if s.name in rag),
    ]
