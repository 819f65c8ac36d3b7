"""A project, for the web console: sources, data check and report, builds,
scorecard, a playground and feedback.

The project is the served one, or the one made in the console that the
`X-Shoptalk-Project` header names (see `projects_api`). The console has no
backend of its own: it calls these routes, the admin routes (keys, usage) and
the OpenAI routes, with the signed-in user's key. Reading the project needs
`chat` or `editor`; asking its models (playground) and rating answers need
`chat`; changing it or starting pipeline work (data check, report, plan,
builds, uploads) needs `editor` (admin implies every scope; see
`serve.auth`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from fastapi import APIRouter, Depends, File, Form, Header, Request, UploadFile
from fastapi.responses import FileResponse
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
from shoptalk.serve.auth import Chat, Editor, Principal, Reader
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

    Editors see every file: they change the sources and read the data report.
    """
    from shoptalk.data.dataset import source_files
    from shoptalk.data.sources import may_read, source_groups

    found = []
    every = principal.allows("editor")
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
def check(_: Editor, st: State) -> CheckResponse:
    from shoptalk.data.check import check_sources

    result = check_sources(st.project(), render=False)
    return CheckResponse(
        counts=result.counts,
        problems=[
            Problem(
                where=f"{p.path}:{p.line}" if p.line else p.path,
                message=redact(p.detail).text,
            )
            for p in result.problems
        ],
    )


@router.get("/report")
def data_report(_: Editor, st: State) -> FileResponse:
    """The data report (HTML) of the current sources, written if missing."""
    from shoptalk.data.dataset import build_dataset
    from shoptalk.data.report import write_report

    try:
        project = st.project()
        dataset = build_dataset(project.config, project.root, project.datasets)
        _, html = write_report(project, dataset)
    except ShoptalkError as exc:
        raise ApiError(409, str(exc)) from exc
    return FileResponse(html, media_type="text/html")


# --- the training plan: time and memory before a build starts


class PlanResponse(BaseModel):
    text: str
    method: str
    total_steps: int
    estimated_seconds: float
    peak_memory_bytes: int
    memory_available_bytes: int


@router.get("/plan", response_model=PlanResponse)
def training_plan(_: Editor, st: State) -> PlanResponse:
    """What a build would train, with its estimated time and peak memory on this machine."""
    from shoptalk.pipeline import plan as training_plan_of

    # A plain `def` route: FastAPI runs it in its thread pool, off the event loop.
    with st.lock:
        plan = training_plan_of(st.project())
    return PlanResponse(
        text=plan.render(),
        method=plan.method,
        total_steps=plan.total_steps,
        estimated_seconds=plan.estimated_seconds,
        peak_memory_bytes=plan.peak_memory_bytes,
        memory_available_bytes=plan.memory_available_bytes,
    )


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
        return build_info(session, row)


@router.get("/builds", response_model=list[BuildInfo])
def list_builds(_: Editor, st: State) -> list[BuildInfo]:
    with st.sessions() as session:
        rows = session.scalars(
            select(BuildRow).where(builds_of(st)).order_by(BuildRow.created_at.desc()).limit(20)
        )
        return [build_info(session, r, details=False) for r in rows]


@router.get("/builds/{build_id}", response_model=BuildInfo)
def get_build(build_id: str, _: Editor, st: State) -> BuildInfo:
    with st.sessions() as session:
        return build_info(session, find_build(session, st, build_id))


@router.post("/builds/{build_id}/{action}", response_model=BuildInfo)
def change_build(
    build_id: str, action: Literal["cancel", "pause", "resume"], _: Editor, st: State
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
        return build_info(session, row)


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
    from restricted documents: only editors get them; other keys get the suites' numbers.
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
    if not principal.allows("editor"):
        card["questions"] = []  # the console reads the key: an empty table, not an error
    return card


@router.get("/scorecard/report")
def scorecard_report(_: Editor, st: State) -> FileResponse:
    """The HTML report: every question and answer, so for editors only (see `scorecard`)."""
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
    # adapter memory cap and queue, the key's limits and model allow-list, one
    # audit row per model asked, and retrieval filtered by the key's groups.
    project = await asyncio.to_thread(st.project)
    base, tuned = "base", pointer(project.promoted_run_file)
    if not st.served:
        base = await asyncio.to_thread(console_project_base, request, project)
        tuned = f"{st.root.name}/{tuned}" if tuned else None  # as the catalog names it
    base_answer = await ask(request, principal, base, body, project, st.served)
    tuned_answer = await ask(request, principal, tuned, body, project, st.served) if tuned else None
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
) -> PlaygroundAnswer:
    """One model's greedy answer, under the project's own system prompt and documents."""
    from shoptalk.serve.calls import chat_completion
    from shoptalk.serve.schemas import ChatCompletionRequest

    system_prompt = project.system_prompt
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    chat = ChatCompletionRequest(
        model=model,
        messages=[*system, {"role": "user", "content": body.question}],
        max_tokens=body.max_tokens,
        temperature=0,
        rag=body.rag,
    )
    documents = None if served else project.root
    answer = await chat_completion(request, principal, chat, documents, system_prompt)
    return PlaygroundAnswer(
        model=model,
        answer=answer.choices[0].message.content.strip(),
        citations=answer.citations or [],
    )
