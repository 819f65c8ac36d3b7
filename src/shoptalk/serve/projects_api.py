"""The projects the console works on: the served one, and those made in the console.

`shoptalk serve DIR` serves one project. The console can make more: each is an
ordinary project folder, written by the function behind `shoptalk init`, in
the server's workspace (`serve.workspace`, by default `DIR/.shoptalk/projects`,
so it never mixes with the user's own folders). Every `/v1/project` route works
on the project the `X-Shoptalk-Project` header names, the served one without it.
The OpenAI API (models, chat, fine-tuning jobs) stays the served project's.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from shoptalk.config import CONFIG_NAME
from shoptalk.errors import ModelError, ShoptalkError
from shoptalk.modeling.load import DEFAULT_MODEL, default_gguf_path
from shoptalk.project import Project
from shoptalk.serve.auth import Editor, Reader
from shoptalk.serve.errors import ApiError
from shoptalk.serve.project_api import ProjectState, edit_config, pointer

# Anchored: pydantic's `pattern` searches, so an unanchored one would pass "../x".
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# The served project's slug in listings; no project made in the console can take it.
SERVED = "served"

router = APIRouter(prefix="/v1/projects", tags=["console"])


class Workspace:
    """The served project, the folder of the console's projects, and what they share."""

    def __init__(self, served: Project, folder: Path, sessions: sessionmaker[Session]) -> None:
        self.served = served
        self.folder = folder
        self.sessions = sessions
        self.lock = threading.Lock()
        self.base_models = available_base_models(served)

    @classmethod
    def of(cls, served: Project, setting: str | None, sessions: sessionmaker[Session]) -> Workspace:
        """The workspace that `serve.workspace` names, relative to the served project."""
        return cls(served, workspace_folder(served, setting), sessions)

    def slugs(self) -> list[str]:
        """The projects made in the console (folders of the workspace with a shoptalk.yaml)."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name
            for p in self.folder.iterdir()
            if SLUG.fullmatch(p.name) and p.name != SERVED and (p / CONFIG_NAME).is_file()
        )

    def root_of(self, slug: str | None) -> Path:
        if not slug or slug == SERVED:
            return self.served.root
        known = self.slugs()
        # Only a listed slug becomes a path: nothing a client sends can leave the workspace.
        if slug not in known:
            raise ApiError(
                404,
                f"No project {slug!r} on this server; known: {', '.join([SERVED, *known])}.",
                code="project_not_found",
                param="X-Shoptalk-Project",
            )
        return self.folder / slug

    def state_for(self, slug: str | None) -> ProjectState:
        root = self.root_of(slug)
        served = root == self.served.root
        return ProjectState(root, served, self.sessions, self.lock)

    def free_slug(self, name: str) -> str:
        """A slug from the name (`Kestrel Logistics` → `kestrel-logistics`), else `project-N`."""
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")
        if slug:
            return slug
        n = len(self.slugs()) + 1
        while (self.folder / f"project-{n}").exists():
            n += 1
        return f"project-{n}"


def workspace_folder(served: Project, setting: str | None) -> Path:
    """The folder of the console's projects: `serve.workspace`, relative to the served project."""
    folder = served.root / Path(setting).expanduser() if setting else served.state / "projects"
    return folder.resolve()


def available_base_models(served: Project) -> dict[str, str]:
    """The base models a new project may use, as {name shown: value for base_model}.

    The served project's own (a local folder is written as an absolute path, so
    it resolves from the new project's folder too) and the bundled default.
    """
    models: dict[str, str] = {}
    own = served.config.base_model
    if own != DEFAULT_MODEL:
        local = served.root / Path(own).expanduser()
        models[Path(own).name] = str(local.resolve()) if local.exists() else own
    try:
        default_gguf_path()
        models[DEFAULT_MODEL] = DEFAULT_MODEL
    except ModelError:
        pass  # the default's wheel is not installed on this server
    return models


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


Space = Annotated[Workspace, Depends(workspace)]


class ProjectSummary(BaseModel):
    slug: str = Field(description="Send it as the X-Shoptalk-Project header to work on it")
    name: str
    base_model: str
    served: bool = Field(
        description="The project `shoptalk serve` serves; the chat API uses its models"
    )
    latest_run: str | None
    promoted_run: str | None
    error: str | None = Field(
        None, description="Why its shoptalk.yaml does not load, if it does not"
    )


class ProjectList(BaseModel):
    data: list[ProjectSummary]
    base_models: list[str] = Field(description="What a new project's base_model may be")


class NewProject(BaseModel, extra="forbid"):
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(
        None,
        pattern=SLUG.pattern,
        description="Lowercase letters, digits, - and _ (at most 63); none = from the name",
    )
    base_model: str = Field(min_length=1, description="One of GET /v1/projects' base_models")
    system_prompt: str | None = Field(None, min_length=1, max_length=4000)


def summary(space: Workspace, slug: str) -> ProjectSummary:
    root = space.root_of(slug)
    try:
        project = Project.open(root)
    except ShoptalkError as exc:
        return ProjectSummary(
            slug=slug,
            name=slug,
            base_model="",
            served=False,
            latest_run=None,
            promoted_run=None,
            error=str(exc),
        )
    names = {value: name for name, value in space.base_models.items()}
    return ProjectSummary(
        slug=slug,
        name=project.config.name,
        base_model=names.get(project.config.base_model, project.config.base_model),
        served=root == space.served.root,
        latest_run=pointer(project.latest_run_file),
        promoted_run=pointer(project.promoted_run_file),
    )


@router.get("", response_model=ProjectList)
def list_projects(_: Reader, space: Space) -> ProjectList:
    """The served project first, then those made in the console, by slug."""
    slugs = [SERVED, *space.slugs()]
    return ProjectList(
        data=[summary(space, slug) for slug in slugs], base_models=list(space.base_models)
    )


@router.post("", response_model=ProjectSummary, status_code=201)
def create_project(body: NewProject, _: Editor, space: Space) -> ProjectSummary:
    """Make an empty project in the workspace; sources are uploaded to it afterwards."""
    from shoptalk.project import init_project

    if body.base_model not in space.base_models:
        raise ApiError(
            400,
            f"base_model {body.base_model!r} is not available on this server; "
            f"choose one of: {', '.join(space.base_models)}.",
            code="model_not_available",
            param="base_model",
        )
    slug = body.slug or space.free_slug(body.name)
    root = space.folder / slug
    space.folder.mkdir(parents=True, exist_ok=True)
    try:
        if slug == SERVED:
            raise FileExistsError
        root.mkdir()  # the claim on the slug: of two racing requests, one wins
    except FileExistsError:
        raise ApiError(
            409,
            f"A project {slug!r} already exists; choose another slug.",
            code="project_exists",
            param="slug",
        ) from None
    try:
        init_project(root, [], [], [], [], body.name, space.base_models[body.base_model])
    except ShoptalkError as exc:
        root.rmdir()
        raise ApiError(400, str(exc), param="base_model") from exc
    if body.system_prompt:
        edit_config(root, lambda raw: raw.update(system_prompt=body.system_prompt))
    return summary(space, slug)
