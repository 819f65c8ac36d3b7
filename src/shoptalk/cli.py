"""The `shoptalk` command. Thin: it parses, calls a stage, prints."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from typer.core import TyperCommand

from shoptalk import progress
from shoptalk.errors import ShoptalkError
from shoptalk.memory import keep_freed_memory
from shoptalk.modeling.load import check_base_model

if TYPE_CHECKING:
    from rich.table import Table

    from shoptalk.rag.answer import RagAnswer


def spread_values(command: TyperCommand, args: list[str]) -> list[str]:
    """`--questions A B C` as `--questions A --questions B --questions C`.

    Values of a repeatable option run until the next option. When they run to
    the end, the last ones go back to the command's arguments not given yet
    (`eval --questions A B DIR` keeps DIR as the project folder).
    """
    # Typer bundles its own click: tell options from arguments by their type name.
    options = {n: p for p in command.params if p.param_type_name == "option" for n in p.opts}
    wanted = sum(1 for p in command.params if p.param_type_name == "argument")
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return out + args[i:]
        option = options.get(token)
        if option is None:
            wanted -= not token.startswith("-")
            out.append(token)
            i += 1
        elif option.multiple:
            end = i + 1
            while end < len(args) and not args[end].startswith("-"):
                end += 1
            if end == len(args) and wanted > 0:
                end = max(i + 2, end - wanted)
            for value in args[i + 1 : end]:
                out += [token, value]
            if end == i + 1:  # no value: let click say so
                out.append(token)
            i = end
        else:
            taken = 0 if option.is_flag or option.count else option.nargs
            out += args[i : i + 1 + taken]
            i += 1 + taken
    return out


class ManyValuesCommand(TyperCommand):
    """A command whose repeatable options take several values after one flag, as documented."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(self, args))


app = typer.Typer(
    help="Turn an open LLM into a private assistant for your organization.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"shoptalk {version('shoptalk')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    keep_freed_memory()


data_app = typer.Typer(help="Check and inspect the project's data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

# A log has no width: this only bounds a pathological table.
LOG_WIDTH = 400
ProjectDir = Annotated[Path, typer.Argument(help="The project folder (holds shoptalk.yaml)")]


def open_project(project_dir: Path):
    from shoptalk.project import Project

    project = Project.open(project_dir)
    setup_logging(project.state / "logs")
    return project


def setup_logging(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "shoptalk.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("shoptalk")
    root.setLevel(logging.INFO)
    root.handlers = [handler]


def fail(exc: ShoptalkError, project=None) -> None:
    from shoptalk.data.pii import redact

    # An error may quote a source's cell or field: never print personal data (with
    # the project's own detectors, names included, once its config has been read).
    settings = project.config.data.pii if project is not None else None
    # Errors about the tool itself (the server's own address) carry none; say them as they are.
    message = redact(str(exc), settings).text if getattr(exc, "personal_data", True) else str(exc)
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command(cls=ManyValuesCommand)
def init(
    project_dir: ProjectDir,
    docs: Annotated[list[str], typer.Option(help="Document file or folder (repeatable)")] = None,
    faq: Annotated[list[str], typer.Option(help="FAQ sheet, CSV or JSONL (repeatable)")] = None,
    conversations: Annotated[list[str], typer.Option(help="Chat file (repeatable)")] = None,
    questions: Annotated[
        list[str], typer.Option(help="Held-out question file (repeatable)")
    ] = None,
    name: Annotated[str, typer.Option(help="The organization's name")] = "My organization",
    base_model: Annotated[
        str, typer.Option(help="'default', a folder, a .gguf or a hub id")
    ] = "default",
) -> None:
    """Write a shoptalk.yaml that works as is."""
    from shoptalk.data.pii import own_contacts
    from shoptalk.project import init_project

    if questions is None:
        questions = []
    if conversations is None:
        conversations = []
    if faq is None:
        faq = []
    if docs is None:
        docs = []
    listed = [Path(p).expanduser() for p in [*docs, *faq]]
    try:
        allow = own_contacts(listed)
        path = init_project(
            project_dir, docs, faq, conversations, questions, name, base_model, allow
        )
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"wrote {path}\nnext: shoptalk build {project_dir}")


def print_table(out: Console, table: Table) -> None:
    """A table as wide as it needs in a log file or a pipe (rich would wrap it at 80
    columns there); on a terminal, or with COLUMNS set, as wide as that allows."""
    import os

    from rich.measure import Measurement

    if not out.is_terminal and not os.environ.get("COLUMNS"):
        needed = Measurement.get(out, out.options.update_width(LOG_WIDTH), table).maximum
        out = Console(file=out.file, width=max(out.width, needed), color_system=None)
    out.print(table)


class ShowEvents:
    """Prints the pipeline's events: a line per stage event, training's progress by step."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar: progress.Task | None = None

    def __enter__(self) -> ShowEvents:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close_bar()

    def __call__(self, event) -> None:
        if event.status == "progress" and event.step is not None:
            self.show_step(event)
            return
        if event.status != "progress":  # a progress note (the corrected ETA) keeps the bar
            self.close_bar()
        text = event.message if event.status == "progress" else event.line()
        style = {"failed": "red", "warning": "yellow"}.get(event.status)
        self.out.print(text, style=style, highlight=False, soft_wrap=True, markup=False)

    def show_step(self, event) -> None:
        if self.bar is None:
            # Timed from the first step on: it also warms up threads and caches.
            label = "training (resumed)" if event.step > 1 else "training"
            self.bar = progress.Task(f"{event.stage}: {label}", event.total, event.step)
        loss, rate = event.metrics.get("loss", 0.0), event.metrics.get("tokens_per_s", 0.0)
        self.bar.update(event.step, f"loss {loss:.3f}, {rate:.0f} tok/s")

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@app.command()
def build(
    project_dir: ProjectDir,
    stop_after: Annotated[
        int | None, typer.Option(hidden=True, help="Stop training after N steps")
    ] = None,
) -> None:
    """Run dataset -> index -> train -> eval -> gate, skipping stages whose inputs did not change."""
    from shoptalk import pipeline
    from shoptalk.eval.scorecard import render_table

    project = None
    try:
        project = open_project(project_dir)
        with ShowEvents(console) as show:
            result = pipeline.build(project, on_event=show, stop_after=stop_after)
    except ShoptalkError as exc:
        fail(exc, project)
    if result.scorecard is not None:
        print_table(console, render_table(result.scorecard))
    if result.gate is not None and not result.gate.passed:
        raise typer.Exit(1)


@app.command()
def train(
    project_dir: ProjectDir,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last checkpoint if there is one")
    ] = True,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan", help="Only print the plan: auto settings, steps, time and memory estimate"
        ),
    ] = False,
) -> None:
    """Build the dataset if needed and train (the run `build` trains); a killed run resumes."""
    from shoptalk import pipeline

    try:
        project = open_project(project_dir)
        with ShowEvents(console) as show:
            if plan:
                plan_text = pipeline.plan(project, on_event=show).render()
                console.print(plan_text, highlight=False, soft_wrap=True, markup=False)
                return
            run = pipeline.train(project, on_event=show, resume=resume)
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"model: {run.final}", highlight=False, markup=False)


@app.command("eval", cls=ManyValuesCommand)
def eval_(
    project_dir: ProjectDir,
    questions: Annotated[
        list[str],
        typer.Option(
            help="Question files (several after one flag, or repeated); default: the config's"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scorecard JSON on stdout")
    ] = False,
    gate: Annotated[
        bool, typer.Option("--gate", help="Exit 1 if the scorecard fails eval.gate")
    ] = False,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(metavar="A B", help="Compare two models instead: 'base' or run ids"),
    ] = None,
    judge_url: Annotated[
        str | None,
        typer.Option(help="Also judge with the model at this OpenAI-compatible URL (eval.judge)"),
    ] = None,
    judge_model: Annotated[str, typer.Option(help="The judge's model name")] = "default",
) -> None:
    """Score the base and the tuned model (or any two) on the same questions."""
    from shoptalk.artifacts import EvalArtifact
    from shoptalk.eval.run import compare as compare_models
    from shoptalk.eval.run import eval_folder, evaluate, question_suites
    from shoptalk.eval.scorecard import render_table
    from shoptalk.modeling.load import resolve_base_model
    from shoptalk.pipeline import prepare_dataset

    if questions is None:
        questions = []
    try:
        project = open_project(project_dir)
        check_base_model(project.config.base_model, project.root)
        if judge_url:
            from shoptalk.eval.judge import JudgeSettings

            project.config.eval.judge = JudgeSettings(url=judge_url, model=judge_model)
        dataset = prepare_dataset(project, ShowEvents(err_console if as_json else console))
        suites = question_suites(project, dataset, questions)
        if not suites:
            raise ShoptalkError(
                "No questions to score: pass --questions FILE or list sources.questions."
            )
        base_path = resolve_base_model(project.config.base_model, project.root)
        # Other questions than the project's: their own folder, the build's scorecard stays.
        own = bool(questions)
        if compare:
            card = compare_models(project, *compare, base_path, suites, own_folder=own)
        else:
            card = evaluate(project, project.latest_run(), base_path, suites, own_folder=own)
    except ShoptalkError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(card.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        print_table(console, render_table(card))
        report = EvalArtifact(path=eval_folder(project, card.run_id, suites, own)).report
        console.print(f"report: {report}", highlight=False, soft_wrap=True)
    if gate:
        from shoptalk.eval.gate import check_gate, render_checks

        result = check_gate(card, project.config.eval.gate)
        for line in render_checks(result):
            err_console.print(f"gate: {line}", highlight=False, soft_wrap=True)
        for line in result.failures:
            err_console.print(f"[red]gate:[/] {line}", highlight=False)
        if not result.passed:
            raise typer.Exit(1)
        err_console.print("gate: passed")


RagOption = Annotated[
    bool | None,
    typer.Option(
        "--rag/--no-rag",
        help="Answer from the indexed documents, with citations (default: whenever an index "
        "exists)",
    ),
]


@app.command()
def ask(
    project_dir: ProjectDir,
    question: Annotated[str, typer.Argument(help="The question")],
    base: Annotated[bool, typer.Option("--base", help="Ask the untuned base model")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens")] = 128,
    rag: RagOption = None,
) -> None:
    """Ask the tuned assistant (or the base model) one question."""
    from shoptalk.rag.session import Session

    try:
        project = open_project(project_dir)
        check_base_model(project.config.base_model, project.root)
        session = Session.open(project, base=base, rag=rag)
        result = session.grounded(question, max_new_tokens) if session.index else None
    except ShoptalkError as exc:
        fail(exc)
    if result is None:
        console.print(session.reply(question, max_new_tokens), highlight=False)
        return
    print_grounded(result)


def print_grounded(result: RagAnswer, prefix: str = "") -> None:
    """The verified (or repaired) answer, then its citations, each with its quote."""
    console.print(f"{prefix}{result.message}", highlight=False, markup=False)
    for citation in result.citations:
        mark = f"[{citation.number}]" if citation.number else "support"
        console.print(
            f'  {mark} {citation.source}: "{citation.quote}"', highlight=False, markup=False
        )
    if result.status == "repaired" and result.retrieved:
        values = ", ".join(result.unsupported) or "nothing the documents say"
        console.print(
            f"  (the model's answer stated {values}, which the documents do not say: "
            "the passage is quoted instead)",
            highlight=False,
            markup=False,
        )
    elif result.status == "repaired":  # about the assistant itself (rag.persona)
        values = f" ({', '.join(result.unsupported)})" if result.unsupported else ""
        console.print(
            f"  (the model's reply said more than the system prompt does{values}: "
            "only what the system prompt says is shown)",
            highlight=False,
            markup=False,
        )
    if result.dropped_citations:
        console.print(
            f"  ({result.dropped_citations} citation(s) dropped: not in the cited document)"
        )


@app.command()
def index(project_dir: ProjectDir) -> None:
    """Chunk and embed the documents for retrieval; only what changed since the last run."""
    from shoptalk.rag.index import index_project

    try:
        report = index_project(open_project(project_dir))
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"index    {report.summary()}  ({report.folder})", highlight=False)
    for problem in report.skipped:
        console.print(f"[yellow]skipped:[/] {problem}", highlight=False, soft_wrap=True)


@app.command()
def chat(
    project_dir: ProjectDir,
    base: Annotated[bool, typer.Option("--base", help="Talk to the untuned base model")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens")] = 256,
    rag: RagOption = None,
) -> None:
    """Talk to the tuned assistant in the terminal (empty line or Ctrl-D to quit)."""
    from shoptalk.rag.session import Session

    try:
        project = open_project(project_dir)
        check_base_model(project.config.base_model, project.root)
        session = Session.open(project, base=base, rag=rag)
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"[dim]talking to {session.label}; empty line to quit[/]")
    lines = typed_lines(sys.stdin)
    while True:
        console.print("[bold]you>[/] ", end="")
        text, typed_ahead = next(lines)
        if text is None or not text.strip():
            break
        # The terminal echoed a line typed during the last answer there, not here: show it
        # again, so the transcript says what is answered (and piped lines were never shown).
        if typed_ahead or not sys.stdin.isatty():
            console.print(text, highlight=False, markup=False)
        if session.index is not None:
            # Each question is retrieved for on its own: the documents, not the history, answer.
            print_grounded(session.grounded(text, max_new_tokens), prefix="assistant> ")
            continue
        console.print(
            f"[bold]assistant>[/] {session.reply(text, max_new_tokens, keep=True)}", highlight=False
        )


def typed_lines(stream: TextIO) -> Iterator[tuple[str | None, bool]]:
    """Each line of `stream` (None at its end), and whether it was there before it was asked for.

    A thread reads from the start, so every line typed while an answer is
    being generated is kept, in order, and answered in its turn.
    """
    waiting: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            waiting.put(line.rstrip("\r\n"))
        waiting.put(None)

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()
    while True:
        try:
            yield waiting.get_nowait(), True
        except queue.Empty:
            yield waiting.get(), False


@data_app.command("check")
def data_check(
    project_dir: ProjectDir,
    samples: Annotated[int, typer.Option(help="Training examples to show rendered")] = 3,
) -> None:
    """List every problem in every source at once; show examples as the model sees them."""
    from shoptalk.data.check import check_sources

    project = None
    try:
        project = open_project(project_dir)
        result = check_sources(project, samples, render=samples > 0)
    except ShoptalkError as exc:
        fail(exc, project)
    for name, count in result.counts.items():
        console.print(f"{count:>7}  {name}")
    for text in result.samples:
        console.rule()
        console.print(text)
    if result.problems:
        console.rule(f"[red]{len(result.problems)} problem(s)")
        from shoptalk.data.pii import redact

        for problem in result.problems:
            shown = redact(str(problem), project.config.data.pii).text  # with the project's NER
            console.print(f"[red]-[/] {shown}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("[green]no problems found")


@data_app.command("report")
def data_report(project_dir: ProjectDir) -> None:
    """Write the data report (HTML + JSON): what went in, what was filtered and why, what changed."""
    from shoptalk.data.report import write_report
    from shoptalk.pipeline import prepare_dataset

    project = None
    try:
        project = open_project(project_dir)
        json_path, html_path = write_report(project, prepare_dataset(project, ShowEvents(console)))
    except ShoptalkError as exc:
        fail(exc, project)
    console.print(f"wrote {html_path}\nwrote {json_path}", highlight=False, soft_wrap=True)


keys_app = typer.Typer(
    help="API keys for `shoptalk serve`: one per person or tool.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
KeyId = Annotated[str, typer.Argument(help="The key's id (key_...), from `shoptalk keys list`")]


def open_key_store(project_dir: Path):
    from shoptalk.registry.keys import KeyStore
    from shoptalk.serve.services import registry

    project = open_project(project_dir)
    return KeyStore(registry(project.config.serve, project.state))


def print_new_key(new) -> None:
    from shoptalk.serve.admin import keys_table

    # The secret alone on stdout, so `KEY=$(shoptalk keys create ...)` works.
    print_table(err_console, keys_table([new.key]))
    err_console.print("[yellow]The secret below is shown only this once; store it safely.")
    typer.echo(new.secret)


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


@keys_app.command("create")
def keys_create(
    project_dir: ProjectDir,
    name: Annotated[str, typer.Option(help="Who or what the key is for")],
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: chat,embeddings,editor,admin; admin (or its other name, "
            "owner) is the owner's scope: every scope, and it reads every document whatever "
            "--groups"
        ),
    ] = "chat,embeddings",
    models: Annotated[str | None, typer.Option(help="Comma-separated models; default: all")] = None,
    groups: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated document groups the key may read, editors too "
            "(retrieval, source list); default: none, only documents open to all"
        ),
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute")] = None,
    quota_tokens_per_day: Annotated[int | None, typer.Option(help="Tokens per UTC day")] = None,
    quota_tokens_per_month: Annotated[int | None, typer.Option(help="Tokens per month")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="Default: never expires")] = None,
) -> None:
    """Create a key; its secret is printed once, only its hash is stored."""
    from shoptalk.registry.keys import KeyLimits

    limits = KeyLimits(
        scopes=split_list(scopes),
        models=split_list(models),
        groups=split_list(groups) or [],
        rpm=rpm,
        tpm=tpm,
        tokens_per_day=quota_tokens_per_day,
        tokens_per_month=quota_tokens_per_month,
    )
    try:
        new = open_key_store(project_dir).create(name, limits, expires_in_days)
    except ShoptalkError as exc:
        fail(exc)
    print_new_key(new)


@keys_app.command("list")
def keys_list(
    project_dir: ProjectDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON")] = False,
) -> None:
    """Every key with its limits, expiry and last use (never the secrets)."""
    from shoptalk.serve.admin import keys_table

    try:
        keys = open_key_store(project_dir).list()
    except ShoptalkError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
    else:
        print_table(console, keys_table(keys))


@keys_app.command("revoke")
def keys_revoke(project_dir: ProjectDir, key_id: KeyId) -> None:
    """Revoke a key: every request with it is refused from now on."""
    try:
        key = open_key_store(project_dir).revoke(key_id)
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"revoked {key.id} ({key.name})", highlight=False)


@keys_app.command("rotate")
def keys_rotate(project_dir: ProjectDir, key_id: KeyId) -> None:
    """A new secret for a key (same id and limits); the old secret stops working."""
    try:
        new = open_key_store(project_dir).rotate(key_id)
    except ShoptalkError as exc:
        fail(exc)
    print_new_key(new)


@app.command()
def usage(
    project_dir: ProjectDir,
    since: Annotated[
        str | None, typer.Option(help="A date/time (2026-05-01) or a span back (7d, 24h)")
    ] = None,
) -> None:
    """Requests and tokens per key and per model, from the audit log."""
    from shoptalk.serve.admin import parse_since, usage_tables
    from shoptalk.serve.audit import AuditLog

    try:
        sessions = open_key_store(project_dir).sessions
        totals = AuditLog(sessions).usage(parse_since(since) if since else None)
    except ShoptalkError as exc:
        fail(exc)
    for table in usage_tables(totals):
        print_table(console, table)


@app.command()
def export(
    project_dir: ProjectDir,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="hf (safetensors folder), gguf, or ollama (GGUF + Modelfile)"
        ),
    ] = "hf",
    quant: Annotated[
        str,
        typer.Option(
            help="GGUF type: f16, q8_0 (embeddings and output at f16), f32, bf16, or a k-quant "
            "written by llama.cpp: q4_k_m, q4_k_s, q5_k_m, q5_k_s, q6_k"
        ),
    ] = "f16",
    model: Annotated[
        str | None,
        typer.Option(help="Model id from `shoptalk models list`; default: the promoted one"),
    ] = None,
    scorecard: Annotated[
        bool,
        typer.Option(
            "--scorecard",
            help="gguf/ollama: then score the exported file on the project's suites in "
            "llama.cpp and compare it with the model it was exported from",
        ),
    ] = False,
) -> None:
    """Export a trained model and check it answers like the model that was evaluated."""
    from shoptalk.export.run import export_model

    try:
        project = open_project(project_dir)
        check_base_model(project.config.base_model, project.root)
        info = export_model(project, fmt, quant, model, say=console.print, scorecard=scorecard)
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"exported {info.path}\nparity report: {info.report}", highlight=False)


feedback_app = typer.Typer(
    help="Ratings given in the console: review those from chat keys.", no_args_is_help=True
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("review")
def feedback_review(
    project_dir: ProjectDir,
    accept: Annotated[
        list[str] | None, typer.Option(help="Make this rating training data (repeatable)")
    ] = None,
    reject: Annotated[list[str] | None, typer.Option(help="Drop this rating (repeatable)")] = None,
) -> None:
    """List the ratings from chat keys that wait for review; accept or reject them by id."""
    from shoptalk.data.feedback import may_train
    from shoptalk.serve.feedback_api import pending_feedback, review_feedback

    project = open_project(project_dir)
    try:
        for feedback_id in accept or []:
            item = review_feedback(project.root, feedback_id, accept=True)
            if may_train(item, project.config.train.groups):
                said = "the next build trains on it"
            elif item.groups is None:
                said = "its groups were never recorded: no build trains on it"
            else:
                # Like a restricted document: only a model trained for its groups learns it.
                said = f"trained only by builds whose train.groups hold {', '.join(item.groups)}"
            console.print(f"accepted {feedback_id}: {said}", highlight=False, markup=False)
        for feedback_id in reject or []:
            review_feedback(project.root, feedback_id, accept=False)
            console.print(f"rejected {feedback_id}", highlight=False)
    except ShoptalkError as exc:
        fail(exc, project)
    waiting = pending_feedback(project.root)
    for item in waiting:
        said = item.correction or item.answer
        groups = "?" if item.groups is None else ",".join(item.groups) or "-"
        console.print(
            f"{item.id}  {item.rating:>4}  [{groups}]  {item.prompt[-1].content!r} -> {said!r}",
            highlight=False,
            markup=False,
        )
    console.print(f"{len(waiting)} waiting for review", highlight=False)


models_app = typer.Typer(
    help="Trained models: lineage, scorecards, exports, promotion.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
ModelId = Annotated[
    str, typer.Argument(help="The model's id (run-...), from `shoptalk models list`")
]


@models_app.command("list")
def models_list(project_dir: ProjectDir) -> None:
    """Every registered model; * marks the promoted one."""
    from rich.table import Table

    from shoptalk.registry.models import list_models, open_registry

    try:
        models = list_models(open_registry(open_project(project_dir)))
    except ShoptalkError as exc:
        fail(exc)
    table = Table("", "id", "base", "dataset", "created", "scores", "exports")
    table.columns[1].no_wrap = True
    for m in models:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in list(m.headline.items())[:2])
        exports = ", ".join(f"{e.format}{'-' + e.quant if e.quant else ''}" for e in m.exports)
        table.add_row(
            "*" if m.promoted else "",
            m.id,
            m.base_model,
            m.dataset_hash[:12],
            m.created[:16],
            scores,
            exports,
        )
    print_table(console, table)


@models_app.command("show")
def models_show(project_dir: ProjectDir, model_id: ModelId) -> None:
    """A model's lineage, scorecard headline and exports (with sha256), as JSON."""
    from shoptalk.registry.models import get_model, open_registry

    try:
        info = get_model(open_registry(open_project(project_dir)), model_id)
    except ShoptalkError as exc:
        fail(exc)
    typer.echo(info.model_dump_json(indent=2))


@models_app.command("promote")
def models_promote(project_dir: ProjectDir, model_id: ModelId) -> None:
    """Make this model the one `ask`, `chat` and `serve` use."""
    from shoptalk.registry.models import promote_run

    try:
        project = open_project(project_dir)
        run = project.run(model_id)
        if not run.done:
            raise ShoptalkError(f"{model_id}: no finished run in {run.path}.")
        promote_run(project, run)
    except ShoptalkError as exc:
        fail(exc)
    console.print(f"promoted {model_id}", highlight=False)


@models_app.command("delete")
def models_delete(
    project_dir: ProjectDir,
    model_id: ModelId,
    force: Annotated[bool, typer.Option(help="Also delete the promoted model")] = False,
) -> None:
    """Remove a model from the registry. Files on disk are left alone."""
    from shoptalk.registry.models import delete_model

    try:
        info = delete_model(open_project(project_dir), model_id, force)
    except ShoptalkError as exc:
        fail(exc)
    console.print(
        f"deleted {info.id} from the registry; files kept in {info.run_path}", highlight=False
    )


@app.command()
def serve(
    project_dir: ProjectDir,
    host: Annotated[str, typer.Option(help="Address to bind (default: serve.host)")] = None,
    port: Annotated[int, typer.Option(help="Port (default: serve.port)")] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address without TLS")
    ] = False,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Start `shoptalk worker` beside the server (default: serve.worker)",
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (keys from `shoptalk keys create`)."""
    from shoptalk.serve.server import serve as run_server

    try:
        open_project(project_dir)
        run_server(project_dir, host, port, insecure, worker)
    except ShoptalkError as exc:
        fail(exc)


@app.command()
def worker(
    project_dir: ProjectDir,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="Stop when this process (the server) is gone")
    ] = None,
) -> None:
    """Run queued fine-tuning jobs and console builds (`serve` starts one unless --no-worker)."""
    import os
    import signal
    import threading

    from shoptalk.jobs.worker import run_worker

    project = open_project(project_dir)
    os.umask(0o077)  # as `serve`: what the worker writes is private
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        run_worker(project, stop, parent_pid=parent_pid)
    except ShoptalkError as exc:
        fail(exc, project)


if __name__ == "__main__":
    app()
