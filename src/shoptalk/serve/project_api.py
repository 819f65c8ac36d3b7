"""A project, for the web console: sources, data check and report, builds,
scorecard, a playground and feedback.

The project is the served one, or the one made in the console that the
`X-Shoptalk-Project` header names (see `projects_api`). The console has no
backend of its own: it calls these routes, the admin routes (keys, usage) and
the OpenAI routes, with the signed-in user's key. Reading the project needs
`chat` or `editor`; asking its models (playground) and rating answers need
`chat`; changing it or starting pipeline work (data check, report, plan,
builds, uploads) needs `editor`. Plans and builds are queued and run by the
worker, never in a request (admin implies every scope; see
`serve.auth`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from fastapi import APIRouter, Depends, File, Form, Header, Request, Response, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, sessionmaker

from shoptalk.artifacts import RunArtifact, private_dir, write_atomic
from shoptalk.config import CONFIG_NAME
from shoptalk.data.pii import redact
from shoptalk.errors import ShoptalkError
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.jobs import BuildRow, JobEventRow
from shoptalk.serve.auth import Admin, Chat, Editor, Principal, Reader, held_groups
from shoptalk.serve.calls import Ledger
from shoptalk.serve.errors import ApiError
from shoptalk.serve.uploads import save_upload, upload_name

router = APIRouter(prefix="/v1/project", tags=["console"])
SourceKind = Literal["docs", "faq", "conversations"]
UPLOAD_DIRS = {"docs": "uploads/docs", "faq": "uploads/faq", "conversations": "uploads/chats"}


@dataclass
class ProjectState:
    """One request's project, and what the console's routes keep between requests.

    The registry and the lock are the server's, shared by every project.
    """

    root: Path
    served: bool
    sessions: sessionmaker[Session]
    lock: threading.Lock

    def project(self) -> Project:
        return Project.open(self.root)


def state(
    request: Request,
    project: Annotated[
        str | None,
        Header(
            alias="X-Shoptalk-Project",
            description="Slug of a project made in the console (GET /v1/projects); "
            "none = the served project",
        ),
    ] = None,
) -> ProjectState:
    return request.app.state.workspace.state_for(project)


State = Annotated[ProjectState, Depends(state)]


# --- the project and its sources


class SourceFile(BaseModel):
    kind: SourceKind
    path: str
    bytes: int


class ProjectInfo(BaseModel):
    name: str
    system_prompt: str
    base_model: str
    sources: list[SourceFile]
    latest_run: str | None
    promoted_run: str | None


class ProjectUpdate(BaseModel, extra="forbid"):
    name: str | None = Field(None, min_length=1, max_length=200)
    system_prompt: str | None = Field(None, min_length=1, max_length=4000)


@router.get("", response_model=ProjectInfo)
def get_project(principal: Reader, st: State) -> ProjectInfo:
    project = st.project()
    cfg = project.config
    return ProjectInfo(
        name=cfg.name,
        system_prompt=cfg.system_prompt,
        base_model=cfg.base_model,
        sources=list_sources(project, principal),
        latest_run=pointer(project.latest_run_file),
        promoted_run=pointer(project.promoted_run_file),
    )


@router.patch("", response_model=ProjectInfo)
def update_project(body: ProjectUpdate, principal: Editor, st: State) -> ProjectInfo:
    changes = body.model_dump(exclude_none=True)
    with st.lock:
        edit_config(st.root, lambda raw: raw.update(changes))
    return get_project(principal, st)


@router.post("/sources", response_model=SourceFile)
def upload_source(
    principal: Editor,
    st: State,
    file: Annotated[UploadFile, File()],
    kind: Annotated[SourceKind, Form()],
) -> SourceFile:
    """Save an uploaded document, FAQ sheet or chat export and list its folder as a source."""
    folder = private_dir(st.root / UPLOAD_DIRS[kind])
    name = upload_name(file.filename, "upload")
    target = save_upload(folder, name, file.file)
    entry = UPLOAD_DIRS[kind]
    with st.lock:
        edit_config(st.root, lambda raw: add_source(raw, kind, entry))
    return SourceFile(kind=kind, path=str(target.relative_to(st.root)), bytes=target.stat().st_size)


def add_source(raw: dict, kind: str, entry: str) -> None:
    entries = raw.setdefault("sources", {}).setdefault(kind, [])
    if entry not in entries:
        entries.append(entry)


def edit_config(root: Path, change) -> None:
    """Apply `change` to shoptalk.yaml, keeping the previous version as shoptalk.yaml.bak."""
    path = root / CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    change(raw)
    write_atomic(path.with_name(CONFIG_NAME + ".bak"), text)
    write_atomic(path, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def list_sources(project: Project, principal: Principal) -> list[SourceFile]:
    """The project's source files the key may read: a restricted file's name is restricted too.

    Only the owner's scope (admin) sees every file; an editor sees those its groups may read.
    """
    from shoptalk.data.dataset import source_files
    from shoptalk.data.sources import may_read, source_groups

    found = []
    every = held_groups(principal) is None
    for kind in ("docs", "faq", "conversations"):
        for path in source_files(project.root, getattr(project.config.sources, kind)):
            groups = source_groups(path, project.root, project.config.rag)
            if not every and not may_read(groups, principal.groups):
                continue
            rel = path.relative_to(project.root) if path.is_relative_to(project.root) else path
            found.append(SourceFile(kind=kind, path=str(rel), bytes=path.stat().st_size))
    return found


def pointer(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() or None if path.is_file() else None


# --- data check and report


class Problem(BaseModel):
    where: str
    message: str


class CheckResponse(BaseModel):
    counts: dict[str, int]
    problems: list[Problem]


@router.get("/check", response_model=CheckResponse)
def check(principal: Editor, st: State) -> CheckResponse:
    """Every problem in the sources; those in files the key's groups may not read are counted,
    not shown (a problem names its file and may quote it)."""
    from shoptalk.data.check import check_sources

    project = st.project()
    result = check_sources(project, render=False)
    shown = [p for p in result.problems if may_see_file(project, principal, p.path)]
    problems = [
        Problem(where=f"{p.path}:{p.line}" if p.line else p.path, message=redact(p.detail).text)
        for p in shown
    ]
    hidden = len(result.problems) - len(shown)
    if hidden:
        message = "problems in files this key's groups may not read; an admin key sees them"
        problems.append(Problem(where="(restricted)", message=f"{hidden} {message}"))
    return CheckResponse(counts=result.counts, problems=problems)


def may_see_file(project: Project, principal: Principal, path: str) -> bool:
    """Whether the key may see a file's name and what is said of it (docs/permissions.md).

    A file whose own groups cannot be told (broken front matter) is bound by the
    project's groups for it (`rag.access`, its folder), and with none it is
    restricted: never shown to a key without the owner's scope by accident.
    """
    from shoptalk.data.documents import document_groups, folder_acl, source_path
    from shoptalk.data.sources import may_read, source_groups

    groups = held_groups(principal)
    file = Path(path) if Path(path).is_absolute() else project.root / path
    if groups is None or not file.is_file():
        return True
    rag = project.config.rag
    try:
        return may_read(source_groups(file, project.root, rag), groups)
    except ShoptalkError:
        name, folder = source_path(file, project.root), folder_acl(file, project.root)
        bound = document_groups(None, name, folder, rag.access, rag.folder_groups)
        return bool(bound) and may_read(bound, groups)


Shown = TypeVar("Shown", bound=BaseModel)
RESTRICTED_MESSAGE = "(a message about a file this key's groups may not read; an admin key sees it)"


def hidden_files(project: Project, principal: Principal) -> list[str]:
    """The names (relative and absolute) of the project's source files the key may not see."""
    from shoptalk.data.dataset import source_files

    if held_groups(principal) is None:
        return []
    names = []
    for kind in ("docs", "faq", "conversations"):
        for path in source_files(project.root, getattr(project.config.sources, kind)):
            if not may_see_file(project, principal, str(path)):
                names += [str(path), str(path.resolve())]
                if path.is_relative_to(project.root):
                    names.append(str(path.relative_to(project.root)))
    return names


def scrubbed(info: Shown, st: ProjectState, principal: Principal) -> Shown:
    """A build's or queued job's error and events as the key may see them: a message naming
    a file its groups may not read (a source error quotes the file and its line) is replaced."""
    hidden = hidden_files(st.project(), principal)
    if not hidden:
        return info

    def clean(text: str) -> str:
        return RESTRICTED_MESSAGE if any(name in text for name in hidden) else text

    if info.error and isinstance(info.error.get("message"), str):
        info.error = info.error | {"message": clean(info.error["message"])}
    for event in getattr(info, "events", []):
        event["message"] = clean(event["message"])
    return info


# --- pipeline work for the console, queued for the worker: the data report and the plan


class PlanResponse(BaseModel):
    text: str
    recipe: str
    input: str = Field(description="plain, raft or cpt: the view of the dataset trained on")
    method: str
    total_steps: int
    estimated_seconds: float
    peak_memory_bytes: int
    memory_available_bytes: int
    stages: list[dict] = Field(description="One entry per training stage of the recipe")


class QueuedJob(BaseModel):
    """A queued plan or data report: `plan` once a plan succeeded, `error` if it failed."""

    id: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    error: dict | None
    plan: PlanResponse | None = None


def queue(st: ProjectState, principal: Principal, kind: str) -> BuildRow:
    """A new row of `kind` for the worker, or the project's active one (one at a time)."""
    with st.sessions() as session:
        active = session.scalar(
            select(BuildRow).where(BuildRow.status.in_(store.ACTIVE), rows_of(st, kind))
        )
        if active is not None:
            return active
        row = BuildRow(
            id=store.new_id(kind), key_id=principal.key_id, project_root=str(st.root), kind=kind
        )
        session.add(row)
        store.add_event(session, row.id, f"{kind.capitalize()} queued")
        session.commit()
        session.refresh(row)
        return row


def latest(st: ProjectState, kind: str) -> BuildRow:
    with st.sessions() as session:
        row = session.scalar(
            select(BuildRow).where(rows_of(st, kind)).order_by(BuildRow.created_at.desc())
        )
    if row is None:
        raise ApiError(404, f"No {kind} yet: POST /v1/project/{kind} first.", code="not_found")
    return row


def rows_of(st: ProjectState, kind: str) -> ColumnElement[bool]:
    return store.builds_of(str(st.root), st.served, kind=kind)


QUEUED = {202: {"model": QueuedJob, "description": "Queued or running"}}


@router.post("/report", response_model=QueuedJob, status_code=202)
def start_data_report(principal: Editor, st: State) -> QueuedJob:
    """Queue the data report of the current sources (it builds the dataset: the worker's work)."""
    return scrubbed(queued_job(queue(st, principal, "report")), st, principal)


@router.get("/report", response_model=None, responses=QUEUED)
def data_report(
    principal: Editor, st: State, response: Response
) -> FileResponse | HTMLResponse | QueuedJob:
    """The latest data report (HTML); 202 while it is queued or running, 409 if it failed.

    It names source files and quotes records: a key without the owner's scope gets it
    without the files its groups may not read (`data.report.report_for`).
    """
    row = latest(st, "report")
    if row.status in store.ACTIVE:
        response.status_code = 202
        return scrubbed(queued_job(row), st, principal)
    if row.status != "succeeded":
        message = (scrubbed(queued_job(row), st, principal).error or {}).get("message", row.status)
        raise ApiError(409, f"The data report {row.id} {row.status}: {message}")
    if held_groups(principal) is None:
        return FileResponse(row.result["html"], media_type="text/html")
    from shoptalk.artifacts import REPORT_JSON
    from shoptalk.data.report import render_html, report_for

    data = Path(row.result["html"]).with_name(REPORT_JSON)
    if not data.is_file():
        raise ApiError(
            409,
            f"The data report {row.id} has no {REPORT_JSON} to show it by this key's groups: "
            "POST /v1/project/report to write it again.",
        )
    report = json.loads(data.read_text(encoding="utf-8"))
    project = st.project()
    shown = report_for(report, lambda name: may_see_file(project, principal, name))
    return HTMLResponse(render_html(shown))


@router.post("/plan", response_model=QueuedJob, status_code=202)
def start_plan(principal: Editor, st: State) -> QueuedJob:
    """Queue a plan of what a build would train, with its estimated time and peak memory.

    Planning builds the dataset and loads the base model, so the worker runs it like
    a build; one plan per project at a time (a second request returns the active one).
    """
    return scrubbed(queued_job(queue(st, principal, "plan")), st, principal)


@router.get("/plan", response_model=QueuedJob, responses=QUEUED)
def latest_plan(principal: Editor, st: State, response: Response) -> QueuedJob:
    """The project's latest plan: 200 once it finished (its plan, or its error), 202 while
    it is queued or running, 404 before the first `POST /v1/project/plan`."""
    row = latest(st, "plan")
    if row.status in store.ACTIVE:
        response.status_code = 202
    return scrubbed(queued_job(row), st, principal)


def queued_job(row: BuildRow) -> QueuedJob:
    job = QueuedJob(
        id=row.id,
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
    )
    if row.kind == "plan" and row.status == "succeeded" and row.result:
        from shoptalk.pipeline import BuildPlan

        plan = BuildPlan.model_validate(row.result)
        job.plan = PlanResponse(
            text=plan.render(),
            recipe=plan.recipe,
            input=plan.input,
            method=plan.method,
            total_steps=plan.total_steps,
            estimated_seconds=plan.estimated_seconds,
            peak_memory_bytes=plan.peak_memory_bytes,
            memory_available_bytes=plan.memory_available_bytes,
            stages=row.result["stages"],
        )
    return job


# --- builds


class BuildInfo(BaseModel):
    id: str
    status: str
    stage: str | None
    created_at: datetime
    finished_at: datetime | None
    error: dict | None
    events: list[dict] = Field(default_factory=list)
    metrics: list[dict] = Field(default_factory=list)
    eta_seconds: float | None = None


@router.post("/builds", response_model=BuildInfo)
def start_build(principal: Editor, st: State) -> BuildInfo:
    """Queue a build of the project; the worker runs builds and jobs one at a time."""
    with st.sessions() as session:
        active = session.scalar(
            select(BuildRow).where(BuildRow.status.in_(store.ACTIVE), builds_of(st))
        )
        if active is not None:
            raise ApiError(
                409, f"Build {active.id} is already {active.status}", code="build_active"
            )
        row = BuildRow(id=store.new_id("build"), key_id=principal.key_id, project_root=str(st.root))
        session.add(row)
        store.add_event(session, row.id, "Build queued")
        session.commit()
        return scrubbed(build_info(session, row), st, principal)


@router.get("/builds", response_model=list[BuildInfo])
def list_builds(principal: Editor, st: State) -> list[BuildInfo]:
    with st.sessions() as session:
        rows = session.scalars(
            select(BuildRow).where(builds_of(st)).order_by(BuildRow.created_at.desc()).limit(20)
        )
        return [scrubbed(build_info(session, r, details=False), st, principal) for r in rows]


@router.get("/builds/{build_id}", response_model=BuildInfo)
def get_build(build_id: str, principal: Editor, st: State) -> BuildInfo:
    with st.sessions() as session:
        return scrubbed(build_info(session, find_build(session, st, build_id)), st, principal)


@router.post("/builds/{build_id}/{action}", response_model=BuildInfo)
def change_build(
    build_id: str, action: Literal["cancel", "pause", "resume"], principal: Editor, st: State
) -> BuildInfo:
    with st.sessions() as session:
        row = find_build(session, st, build_id)
        if action == "resume":
            if row.status != "paused":
                raise ApiError(409, f"Build {build_id} is {row.status}, not paused")
            store.set_status(session, build_id, "queued", requested=None)
        elif row.status in store.FINISHED:
            raise ApiError(409, f"Build {build_id} has already {row.status}")
        elif row.status == "running":
            row.requested = action
        else:
            store.set_status(session, build_id, "cancelled" if action == "cancel" else "paused")
        store.add_event(session, build_id, f"{action.capitalize()} requested")
        session.commit()
        session.refresh(row)
        return scrubbed(build_info(session, row), st, principal)


def builds_of(st: ProjectState) -> ColumnElement[bool]:
    return store.builds_of(str(st.root), st.served)


def find_build(session: Session, st: ProjectState, build_id: str) -> BuildRow:
    """The project's build; another project's is as unknown as a made-up id."""
    row = session.scalar(select(BuildRow).where(BuildRow.id == build_id, builds_of(st)))
    if row is None:
        raise ApiError(404, f"No such build in this project: {build_id}", code="not_found")
    return row


def build_info(session: Session, row: BuildRow, details: bool = True) -> BuildInfo:
    info = BuildInfo(
        id=row.id,
        status=row.status,
        stage=row.stage,
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
    )
    if not details:
        return info
    events = session.scalars(
        select(JobEventRow)
        .where(JobEventRow.job_id == row.id, JobEventRow.type == "message")
        .order_by(JobEventRow.seq)
    )
    info.events = [
        {"time": e.created_at.isoformat(), "level": e.level, "message": e.message} for e in events
    ]
    # The run the build's training stage really writes (the DPO run once DPO runs).
    run = RunArtifact.at(Path(row.run_path)) if row.run_path else None
    if run is not None:
        info.metrics = run.metrics()
        info.eta_seconds = run.seconds_left(info.metrics)
    return info


# --- scorecard


@router.get("/scorecard")
def scorecard(principal: Reader, st: State) -> dict:
    """The latest run's scorecard (base vs tuned per suite and per question), gate, and the
    groups whose documents the model may reveal (`groups`, [] = documents open to all).

    Per-question rows (questions, reference answers, quotes, file names) may come
    from restricted documents: only the owner's scope (admin) gets them; other keys, editors
    included, get the suites' numbers.
    """
    from shoptalk.serve.catalog import card_groups

    project = st.project()
    run_id = pointer(project.latest_run_file)
    path = project.eval_of(run_id).scorecard if run_id else None
    if path is None or not path.is_file():
        raise ApiError(404, "No scorecard yet: run a build first.", code="not_found")
    card = json.loads(path.read_text(encoding="utf-8"))
    card["run_id"] = run_id
    card["promoted"] = pointer(project.promoted_run_file) == run_id
    # Which groups' documents the model learnt, so may reveal (its card; train.groups).
    card["groups"] = card_groups(project.runs / run_id)
    if held_groups(principal) is not None:
        card["questions"] = []  # the console reads the key: an empty table, not an error
    return card


@router.get("/scorecard/report")
def scorecard_report(_: Admin, st: State) -> FileResponse:
    """The HTML report: every question and answer, so for the owner's scope only (see `scorecard`)."""
    project = st.project()
    run_id = pointer(project.latest_run_file)
    path = project.eval_of(run_id).report if run_id else None
    if path is None or not path.is_file():
        raise ApiError(404, "No scorecard yet: run a build first.", code="not_found")
    return FileResponse(path, media_type="text/html")


# --- playground and feedback


class PlaygroundRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    rag: bool = False
    max_tokens: int = Field(128, ge=1, le=1024)


class PlaygroundAnswer(BaseModel):
    model: str
    answer: str
    citations: list[dict] = Field(default_factory=list)


class PlaygroundResponse(BaseModel):
    base: PlaygroundAnswer
    tuned: PlaygroundAnswer | None


@router.post("/playground", response_model=PlaygroundResponse)
async def playground(
    body: PlaygroundRequest, principal: Chat, request: Request, st: State
) -> PlaygroundResponse:
    """The same question to the base and the promoted tuned model, as the chat API answers it."""
    # Through the chat API's own path (`serve.calls`): the same engine, catalog,
    # adapter memory cap and queue, the key's limits and model allow-list, and
    # retrieval filtered by the key's groups. One question is one request: one
    # admission by the key's limiter (both models' tokens), one retrieval, one audit row.
    project = await asyncio.to_thread(st.project)
    base, tuned = "base", pointer(project.promoted_run_file)
    if not st.served:
        base = await asyncio.to_thread(console_project_base, request, project)
        tuned = f"{st.root.name}/{tuned}" if tuned else None  # as the catalog names it
    async with Ledger(request, principal, calls=2 if tuned else 1).opened() as ledger:
        base_answer = await ask(request, principal, base, body, project, st.served, ledger)
        tuned_answer = (
            await ask(request, principal, tuned, body, project, st.served, ledger)
            if tuned
            else None
        )
    return PlaygroundResponse(base=base_answer, tuned=tuned_answer)


def console_project_base(request: Request, project: Project) -> str:
    """The served name of a console-made project's base model: this server's base, or a 409."""
    from shoptalk.modeling.load import resolve_base_model

    catalog = getattr(request.app.state.engine, "catalog", None)
    own = Path(resolve_base_model(project.config.base_model, project.root)).resolve()
    if catalog is None or own != Path(catalog.base_path).resolve():
        raise ApiError(
            409,
            f"This project's base model ({project.config.base_model}) is not the one this "
            "server's models run on; serve this project (`shoptalk serve FOLDER`) to try it.",
            code="project_not_served",
        )
    return "base"


async def ask(
    request: Request,
    principal: Principal,
    model: str,
    body: PlaygroundRequest,
    project: Project,
    served: bool,
    ledger: Ledger,
) -> PlaygroundAnswer:
    """One model's greedy answer, under the project's own system prompt and documents."""
    from shoptalk.modeling.chat_format import with_system_dicts
    from shoptalk.serve.calls import chat_completion
    from shoptalk.serve.schemas import ChatCompletionRequest

    system_prompt = project.system_prompt
    chat = ChatCompletionRequest(
        model=model,
        messages=with_system_dicts([{"role": "user", "content": body.question}], system_prompt),
        max_tokens=body.max_tokens,
        temperature=0,
        rag=body.rag,
    )
    documents = None if served else project.root
    answer = await chat_completion(request, principal, chat, documents, system_prompt, ledger)
    return PlaygroundAnswer(
        model=model,
        answer=answer.choices[0].message.content.strip(),
        citations=answer.citations or [],
    )
