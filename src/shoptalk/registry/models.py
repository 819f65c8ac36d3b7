"""The models table: every trained model, its lineage, scorecard and exports.

A model's id is its run id (`run-<hash>`), so the registry, `.shoptalk/runs/`
and `.shoptalk/evals/` all name a model the same way. At most one model is
promoted: the one `ask`, `chat` and the server use by default. Deleting an
entry removes the registry row only; files on disk are never deleted here.

    db = open_registry(project)
    register_model(db, ModelInfo(id=run.run_id, base_model="default", ...))
    promote(db, run.run_id)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from sqlalchemy import Boolean, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shoptalk.errors import ShoptalkError
from shoptalk.registry.db import Base, connect, default_url

if TYPE_CHECKING:
    from shoptalk.artifacts import RunArtifact
    from shoptalk.project import Project

Registry = sessionmaker[Session]


class ExportInfo(BaseModel):
    """One exported artifact: where it is, what is in it, and whether parity held."""

    format: str = Field(description="'hf', 'gguf' or 'ollama'")
    quant: str | None = Field(None, description="GGUF quantization, e.g. 'f16'")
    path: str = Field(description="The export folder")
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    parity_passed: bool
    report: str = Field(description="The parity report's path")
    created: str = ""


class ModelInfo(BaseModel):
    """A trained model as the rest of shoptalk sees it."""

    id: str
    base_model: str = Field(description="base_model as written in shoptalk.yaml")
    base_path: str = Field("", description="The resolved local folder or hub id")
    dataset_hash: str = ""
    run_path: str = ""
    config: dict = Field(default_factory=dict, description="Training settings of the run")
    scorecard_path: str | None = None
    headline: dict[str, float] = Field(
        default_factory=dict, description="'suite.metric' -> tuned score"
    )
    exports: list[ExportInfo] = Field(default_factory=list)
    promoted: bool = False
    created: str = ""


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created: Mapped[str] = mapped_column(String(40))
    # Lineage and exports change shape more often than they are queried: JSON text.
    info: Mapped[str] = mapped_column(Text)


def open_registry(project: Project) -> Registry:
    """The project's registry: `serve.database_url`, or SQLite in `.shoptalk/`."""
    return connect(project.config.serve.database_url or default_url(project.state))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def register_model(db: Registry, info: ModelInfo) -> ModelInfo:
    """Insert or update a model's lineage; its exports and promotion are kept."""
    with db.begin() as session:
        row = session.get(ModelRow, info.id)
        if row is None:
            info = info.model_copy(update={"created": info.created or now(), "promoted": False})
            session.add(ModelRow(id=info.id, promoted=False, created=info.created, info=""))
            row = session.get(ModelRow, info.id)
        else:
            old = _info(row)
            info = info.model_copy(
                update={"created": old.created, "exports": old.exports, "promoted": row.promoted}
            )
        row.info = info.model_dump_json(exclude={"promoted"})
    return info


def add_export(db: Registry, model_id: str, export: ExportInfo) -> ModelInfo:
    """Record an export; a new export of the same format and quant replaces the old entry."""
    with db.begin() as session:
        row = _row(session, model_id)
        info = _info(row)
        kept = [e for e in info.exports if (e.format, e.quant) != (export.format, export.quant)]
        stamped = export.model_copy(update={"created": export.created or now()})
        info = info.model_copy(update={"exports": [*kept, stamped]})
        row.info = info.model_dump_json(exclude={"promoted"})
    return info


def list_models(db: Registry) -> list[ModelInfo]:
    """Every registered model, newest first."""
    with db() as session:
        rows = session.scalars(select(ModelRow).order_by(ModelRow.created.desc())).all()
        return [_info(row) for row in rows]


def get_model(db: Registry, model_id: str) -> ModelInfo:
    with db() as session:
        return _info(_row(session, model_id))


def promoted_model(db: Registry) -> ModelInfo | None:
    with db() as session:
        row = session.scalars(select(ModelRow).where(ModelRow.promoted)).first()
        return _info(row) if row is not None else None


def promote(db: Registry, model_id: str) -> ModelInfo:
    """Make `model_id` the one promoted model."""
    with db.begin() as session:
        row = _row(session, model_id)
        session.execute(update(ModelRow).where(ModelRow.id != model_id).values(promoted=False))
        row.promoted = True
        return _info(row)


def delete(db: Registry, model_id: str, force: bool = False) -> ModelInfo:
    """Remove the registry entry (never files); the promoted model only with `force`."""
    with db.begin() as session:
        row = _row(session, model_id)
        if row.promoted and not force:
            raise ShoptalkError(
                f"{model_id} is the promoted model; promote another one first, "
                "or pass --force to delete it anyway."
            )
        info = _info(row)
        session.delete(row)
    return info


def _row(session: Session, model_id: str) -> ModelRow:
    row = session.get(ModelRow, model_id)
    if row is None:
        known = session.scalars(select(ModelRow.id)).all()
        raise ShoptalkError(
            f"No model {model_id!r} in the registry; known: {', '.join(known) or 'none'}. "
            "See `shoptalk models list`."
        )
    return row


def _info(row: ModelRow) -> ModelInfo:
    return ModelInfo.model_validate(json.loads(row.info) | {"promoted": row.promoted})


def run_info(project: Project, run: RunArtifact) -> ModelInfo:
    """A run's lineage from its card (written by training) and scorecard, if evaluated."""
    card = run.card()
    scorecard = project.eval_of(run.run_id).scorecard
    return ModelInfo(
        id=run.run_id,
        base_model=card.get("base_model", project.config.base_model),
        base_path=card.get("base_path", ""),
        dataset_hash=card.get("dataset_hash", ""),
        run_path=str(run.path),
        config={"train": card.get("train", {}), "system_prompt": card.get("system_prompt")},
        scorecard_path=str(scorecard) if scorecard.is_file() else None,
        headline=headline(scorecard) if scorecard.is_file() else {},
    )


def headline(scorecard_path) -> dict[str, float]:
    """The tuned model's mean score on every suite metric, e.g. 'domain.key_fact_recall'."""
    card = json.loads(scorecard_path.read_text(encoding="utf-8"))
    return {
        f"{suite}.{metric}": round(float(value), 4)
        for suite, scores in card.get("suites", {}).items()
        for metric, value in (scores.get("tuned") or {}).items()
        if isinstance(value, int | float)
    }


def register_run(project: Project, run: RunArtifact) -> ModelInfo:
    """Register a run; if `.shoptalk/promoted-run` names it, the registry agrees."""
    db = open_registry(project)
    info = register_model(db, run_info(project, run))
    pointer = project.promoted_run_file
    if pointer.is_file() and pointer.read_text(encoding="utf-8").strip() == run.run_id:
        info = promote(db, run.run_id)
    return info


def promote_run(project: Project, run: RunArtifact) -> None:
    """Promote in the registry and in `.shoptalk/promoted-run`, which `ask`/`chat` read."""
    db = open_registry(project)
    if not _exists(db, run.run_id):
        register_model(db, run_info(project, run))
    promote(db, run.run_id)
    project.promote(run)


def delete_model(project: Project, model_id: str, force: bool = False) -> ModelInfo:
    """`delete`, and if the promoted model goes, `.shoptalk/promoted-run` goes with it."""
    info = delete(open_registry(project), model_id, force)
    if info.promoted:
        project.promoted_run_file.unlink(missing_ok=True)
    return info


def _exists(db: Registry, model_id: str) -> bool:
    with db() as session:
        return session.get(ModelRow, model_id) is not None
