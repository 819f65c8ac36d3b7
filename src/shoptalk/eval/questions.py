"""Question suites: the questions of one file, grouped by kind, scored together.

The files are read by `shoptalk.data.questions` (into the question records of
`shoptalk.records`); a suite is one file's questions of one kind, or held-out
FAQ rows (`suite_from_faq`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from shoptalk.data.questions import key_facts, question_kind, read_questions
from shoptalk.data.style import StyleRules, form_lines, form_prefix
from shoptalk.errors import SourceError
from shoptalk.records import DomainQuestion, Question, StyleQuestion, SuiteKind
from shoptalk.text import is_chinese

STYLE_SUITE = "style-rules"
# How many drafting prompts a generated style suite holds: enough for a rate, cheap to answer.
STYLE_PROMPTS = 10


class Suite(BaseModel):
    name: str
    kind: SuiteKind
    questions: list[Question]
    path: str


def load_suite_file(path: Path) -> list[Suite]:
    """One file as one suite named after its stem, or `<stem>-<kind>` suites if kinds mix."""
    by_kind: dict[SuiteKind, list[Question]] = {}
    for question in read_questions(path):
        by_kind.setdefault(question_kind(question), []).append(question)
    mixed = len(by_kind) > 1
    return [
        Suite(
            name=f"{path.stem}-{kind}" if mixed else path.stem,
            kind=kind,
            questions=questions,
            path=str(path),
        )
        for kind, questions in by_kind.items()
    ]


def load_suites(paths: list[Path]) -> list[Suite]:
    """Every file's suites, in order; two suites with one name are an error."""
    suites: list[Suite] = []
    seen: dict[str, str] = {}
    for path in paths:
        for suite in load_suite_file(Path(path)):
            if suite.name in seen:
                raise SourceError(
                    path, None, f"suite name {suite.name!r} is already used by {seen[suite.name]}"
                )
            seen[suite.name] = suite.path
            suites.append(suite)
    return suites


def _split_source(source: str, index: int) -> tuple[str, int]:
    """'faq.csv:12' -> ('faq.csv', 12); a source without a line keeps the row index."""
    file, _, tail = source.rpartition(":")
    if file and tail.isdigit():
        return file, int(tail)
    return source, index


def suite_from_faq(name: str, pairs: list[tuple[str, str, str]]) -> Suite:
    """Held-out FAQ rows (question, answer, source) as a domain suite scored on `key_facts`."""
    questions: list[Question] = []
    for index, (question, answer, source) in enumerate(pairs, start=1):
        file, line = _split_source(source, index)
        facts = key_facts(answer)
        if not facts:
            raise SourceError(file, line, "FAQ answer is empty; no key facts to score it on")
        questions.append(
            DomainQuestion(
                question=question,
                answer=answer,
                must_include=facts,
                source=source,
                file=file,
                line=line,
            )
        )
    files = {q.file for q in questions}
    path = files.pop() if len(files) == 1 else "held-out FAQ"
    return Suite(name=name, kind="domain", questions=questions, path=path)


def suite_from_style(style: dict, asked: list[str], limit: int = STYLE_PROMPTS) -> Suite | None:
    """Drafting prompts made from questions people ask (`asked`), scored on the style rules:
    the guide's greeting and sign-off must appear, its forbidden phrases must not.

    None when the rules say nothing a reply can be checked on, or there is nothing asked.
    """
    rules = StyleRules.model_validate(style)
    must = [p for p in (form_prefix(rules.greeting), *form_lines(rules.sign_off)) if p]
    if not (must or rules.forbidden) or not asked:
        return None
    questions: list[Question] = []
    for line, text in enumerate(asked[:limit], start=1):
        prompt = (
            f"请起草一封回复给客户，客户问：“{text}”"
            if is_chinese(text)
            else f'Draft a reply to a customer who asks: "{text}"'
        )
        questions.append(
            StyleQuestion(
                prompt=prompt,
                must_include=must,
                must_not_include=rules.forbidden,
                file=STYLE_SUITE,
                line=line,
            )
        )
    return Suite(name=STYLE_SUITE, kind="style", questions=questions, path=STYLE_SUITE)
