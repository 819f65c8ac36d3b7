"""Per-fact coverage: which facts of the organization's knowledge the assistant recalls.

Every fact the data stage made a question for (a fact-carrying document
sentence, kind `doc_qa`; an FAQ answer, kind `faq`) is asked of the tuned
model closed book and, when a retrieval index exists, with retrieval as
`ask` answers (selected sentences, verified and repaired). A fact is
recalled when the answer holds its key facts (numbers, amounts, codes, names:
`data.questions.key_facts`, less those the question itself gives away),
matched like `key_fact_recall`. Written to `evals/<run-id>/coverage.json` and
shown in the report, grouped by document:

    {"run_id", "inputs", "seconds", "rag", "facts_total": {"<document>": n},
     "facts": [{"document", "kind", "sentence", "question", "key_facts",
                "closed_book", "closed_book_recall", "rag", "rag_recall"}]}

Budget: `eval.coverage.max_facts_per_document` facts per document (and per FAQ
file), picked by a seeded hash of the sentence, so the same facts are checked
build after build and the example builds in its time budget.
"""

from __future__ import annotations

import hashlib
import time
from html import escape

from pydantic import BaseModel, Field

from shoptalk.artifacts import DatasetArtifact, EvalArtifact, RunArtifact, read_json, write_json
from shoptalk.eval.metrics import key_fact_recall, normalize
from shoptalk.eval.questions import Suite
from shoptalk.eval.report import highlight
from shoptalk.eval.retrieval import source_file
from shoptalk.eval.run import answer_suites, has_index
from shoptalk.modeling.generate import load_assistant
from shoptalk.project import Project
from shoptalk.records import Conversation, DomainQuestion

SUITE = "coverage"
# The data stage's kinds of the records that carry one fact each (data/augment.py).
FACT_KINDS = {"doc_qa": "document", "faq": "faq"}


class Fact(BaseModel):
    document: str
    kind: str
    sentence: str
    question: str
    key_facts: list[str]


class FactResult(Fact):
    closed_book: str
    closed_book_recall: float
    rag: str | None = None
    rag_recall: float | None = None


class Coverage(BaseModel):
    run_id: str
    inputs: str
    seconds: float
    rag: bool
    facts_total: dict[str, int] = Field(default_factory=dict)
    facts: list[FactResult] = Field(default_factory=list)

    def by_document(self) -> dict[str, list[FactResult]]:
        out: dict[str, list[FactResult]] = {}
        for fact in self.facts:
            out.setdefault(fact.document, []).append(fact)
        return out


# --- which facts ---------------------------------------------------------------


def fact_of(conversation: Conversation) -> Fact | None:
    """The fact a `doc_qa` or `faq` record carries, or None (another kind, no key fact)."""
    from shoptalk.data.questions import key_facts

    kind = FACT_KINDS.get(conversation.kind or "")
    if kind is None or len(conversation.messages) < 2:
        return None
    question, sentence = conversation.messages[0].content, conversation.messages[-1].content
    facts = key_facts(sentence)
    # A key fact the question already says is no proof of recall: an echo would hold it.
    hidden = [f for f in facts if normalize(f) not in normalize(question)]
    if not (hidden or facts):
        return None
    return Fact(
        document=source_file(conversation.source),
        kind=kind,
        sentence=sentence,
        question=question,
        key_facts=hidden or facts,
    )


def collect_facts(dataset: DatasetArtifact) -> list[Fact]:
    """Each fact once (its first question), in the dataset's order."""
    seen: dict[tuple[str, str], Fact] = {}
    for split in ("train", "heldout"):
        for conversation in dataset.conversations(split):
            fact = fact_of(conversation)
            if fact is not None:
                seen.setdefault((fact.document, normalize(fact.sentence)), fact)
    return list(seen.values())


def sample_facts(facts: list[Fact], per_document: int | None, seed: int) -> list[Fact]:
    """At most `per_document` facts of each document, picked by a seeded hash; order kept."""
    if per_document is None:
        return facts

    def rank(fact: Fact) -> str:
        return hashlib.sha256(f"{seed}\x1f{fact.sentence}".encode()).hexdigest()

    picked: set[int] = set()
    by_document: dict[str, list[int]] = {}
    for i, fact in enumerate(facts):
        by_document.setdefault(fact.document, []).append(i)
    for indexes in by_document.values():
        picked.update(sorted(indexes, key=lambda i: rank(facts[i]))[:per_document])
    return [fact for i, fact in enumerate(facts) if i in picked]


def totals(facts: list[Fact]) -> dict[str, int]:
    out: dict[str, int] = {}
    for fact in facts:
        out[fact.document] = out.get(fact.document, 0) + 1
    return out


# --- measuring -------------------------------------------------------------------


def inputs_digest(project: Project, run: RunArtifact, facts: list[Fact], rag: bool) -> str:
    h = hashlib.sha256(run.run_id.encode())
    h.update(project.config.eval.model_dump_json(exclude={"gate"}).encode())
    h.update(project.system_prompt.encode())
    if rag:
        h.update(project.config.rag.model_dump_json().encode())
    for fact in facts:
        h.update(fact.model_dump_json().encode())
    return h.hexdigest()[:16]


def measure_coverage(
    project: Project, run: RunArtifact, base_path: str, dataset: DatasetArtifact
) -> Coverage | None:
    """Ask the tuned model every sampled fact's question; reuse coverage.json if nothing changed.

    None when `eval.coverage.enabled` is off or the dataset carries no fact.
    """
    settings = project.config.eval.coverage
    if not settings.enabled:
        return None
    every = collect_facts(dataset)
    facts = sample_facts(every, settings.max_facts_per_document, project.config.data.seed)
    if not facts:
        return None
    rag_on = settings.rag and has_index(project)
    digest = inputs_digest(project, run, facts, rag_on)
    path = EvalArtifact(path=project.evals / run.run_id).coverage
    cached = read_json(path)
    if cached and cached.get("inputs") == digest:
        return Coverage.model_validate(cached)
    started = time.perf_counter()
    suite = as_suite(facts)
    grounded = {}
    if rag_on:
        from shoptalk.eval.grounded import grounded_prompts
        from shoptalk.rag.retrieve import open_index

        grounded = grounded_prompts(project, open_index(project), [suite])
    assistant = load_assistant(base_path, run, project.config.train.device)
    answers, _ = answer_suites(project, assistant, [suite], grounded, "eval: coverage answers")
    with_rag = answers.get(f"{SUITE}+rag")
    results = [
        result(fact, closed, with_rag[i] if with_rag else None)
        for i, (fact, closed) in enumerate(zip(facts, answers[SUITE], strict=True))
    ]
    coverage = Coverage(
        run_id=run.run_id,
        inputs=digest,
        seconds=round(time.perf_counter() - started, 1),
        rag=rag_on,
        facts_total=totals(every),
        facts=results,
    )
    write_json(path, coverage.model_dump(mode="json"))
    return coverage


def as_suite(facts: list[Fact]) -> Suite:
    questions = [
        DomainQuestion(question=f.question, answer=f.sentence, must_include=f.key_facts)
        for f in facts
    ]
    return Suite(name=SUITE, kind="domain", path=SUITE, questions=questions)


def result(fact: Fact, closed: str, rag: str | None) -> FactResult:
    return FactResult(
        **fact.model_dump(),
        closed_book=closed,
        closed_book_recall=key_fact_recall(closed, fact.key_facts),
        rag=rag,
        rag_recall=None if rag is None else key_fact_recall(rag, fact.key_facts),
    )


# --- the report's section ------------------------------------------------------------


def recalled(values: list[float | None]) -> str:
    scored = [v for v in values if v is not None]
    if not scored:
        return "–"
    return f"{sum(v == 1.0 for v in scored)}/{len(scored)}"


def _mark(value: float | None) -> str:
    if value is None:
        return "<td class=n>–</td>"
    cls, sign = ("up", "✓") if value == 1.0 else ("down", "✗")
    return f'<td class="n {cls}">{sign} {value:.2f}</td>'


def _fact_row(fact: FactResult) -> str:
    cells = [
        highlight(fact.sentence, fact.key_facts),
        escape(fact.question),
        highlight(fact.closed_book, fact.key_facts),
    ]
    row = "".join(f"<td>{c}</td>" for c in cells) + _mark(fact.closed_book_recall)
    rag = highlight(fact.rag, fact.key_facts) if fact.rag is not None else "–"
    return f"<tr>{row}<td>{rag}</td>{_mark(fact.rag_recall)}</tr>"


def coverage_section(coverage: Coverage) -> str:
    """The report's coverage: a summary per document, then each fact with both answers."""
    documents = coverage.by_document()
    summary = "".join(
        f"<tr><td>{escape(doc)}</td><td class=n>{len(facts)} of "
        f"{coverage.facts_total.get(doc, len(facts))}</td>"
        f"<td class=n>{recalled([f.closed_book_recall for f in facts])}</td>"
        f"<td class=n>{recalled([f.rag_recall for f in facts])}</td></tr>"
        for doc, facts in documents.items()
    )
    head = (
        "<tr><th>document</th><th>facts checked</th><th>recalled closed book</th>"
        "<th>recalled with retrieval</th></tr>"
    )
    fact_head = (
        "<tr><th>fact</th><th>question</th><th>closed-book answer</th><th></th>"
        "<th>answer with retrieval</th><th></th></tr>"
    )
    details = "".join(
        f"<details><summary>{escape(doc)}: closed book "
        f"{recalled([f.closed_book_recall for f in facts])}, with retrieval "
        f"{recalled([f.rag_recall for f in facts])}</summary>"
        f"<table>{fact_head}{''.join(_fact_row(f) for f in facts)}</table></details>"
        for doc, facts in documents.items()
    )
    rag = "" if coverage.rag else " (no retrieval index: closed book only)"
    return (
        f"<h2>Coverage: which facts the assistant recalls</h2><p class=meta>The tuned model "
        f"({escape(coverage.run_id)}) asked each fact's question{escape(rag)}; recalled = the "
        f"answer holds the fact's highlighted key facts. {coverage.seconds:g} s. "
        "eval.coverage in shoptalk.yaml</p>"
        f"<table>{head}{summary}</table>{details}"
    )
