"""The models jobs produce, by their OpenAI names, as folders a server can load.

A finished job's model is its run's `final/` folder (a LoRA adapter). A
checkpoint is kept as its trainable weights only; it becomes an adapter folder
the first time someone asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shoptalk.artifacts import CHECKPOINT_WEIGHTS, RunArtifact
from shoptalk.project import Project
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import JobCheckpointRow, JobRow, add_missing_columns


@dataclass(frozen=True)
class JobModel:
    """A LoRA adapter a job produced: its folder, its run folder (None for a checkpoint),
    and the groups a key must hold to be served it (None: the owner's scope only)."""

    path: Path
    run_dir: Path | None = None
    groups: tuple[str, ...] | None = None


def job_models(project: Project, wanted: str = "") -> dict[str, JobModel]:
    """Finished jobs' adapters and their checkpoints, by their OpenAI names.

    A checkpoint is listed once its adapter folder exists; naming it (`wanted`)
    writes that folder.
    """
    models = {}
    sessions = open_registry(project.config.serve.database_url, project.state)
    add_missing_columns(sessions)  # a registry made before jobs recorded their groups
    with sessions() as session:
        # What a job's model learnt is its training file: served as the job's groups say
        # (`JobRow.model_groups`), whatever the project's train.groups.
        groups = {
            job_id: tuple(found) if found is not None else None
            for job_id, found in session.execute(select(JobRow.id, JobRow.model_groups))
        }
        for job in session.scalars(select(JobRow).where(JobRow.fine_tuned_model.is_not(None))):
            run_dir = Path(job.run_path)
            final = RunArtifact.at(run_dir).final
            models[job.fine_tuned_model] = JobModel(final, run_dir, groups[job.id])
        for ckpt in session.scalars(select(JobCheckpointRow)):
            folder = Path(ckpt.path) / "adapter"
            if ckpt.model_name == wanted and not folder.is_dir():
                folder = materialize_checkpoint(project, session, wanted)
            if folder.is_dir():
                models[ckpt.model_name] = JobModel(folder, groups=groups.get(ckpt.job_id))
    return models


def materialize_checkpoint(project: Project, session: Session, name: str) -> Path:
    """The adapter folder of checkpoint `name`, written on first use."""
    ckpt = session.scalar(select(JobCheckpointRow).where(JobCheckpointRow.model_name == name))
    target = Path(ckpt.path) / "adapter"
    if (target / "adapter_config.json").is_file():
        return target
    import torch

    from shoptalk.jobs.runner import job_spec
    from shoptalk.modeling.load import load_model, resolve_base_model
    from shoptalk.pipeline.jobs import job_config
    from shoptalk.train.methods import attach_method

    job = session.get(JobRow, ckpt.job_id)
    cfg = job_config(project.config, job_spec(job))
    base = load_model(resolve_base_model(cfg.base_model, project.root), "cpu", dtype=torch.float32)
    model, _ = attach_method(base, cfg.train)
    params = dict(model.named_parameters())
    weights = Path(ckpt.path) / CHECKPOINT_WEIGHTS
    trainable = torch.load(weights, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for param_name, value in trainable.items():
            params[param_name].copy_(value)
    tmp = target.with_name("adapter.tmp")
    model.save_pretrained(tmp)
    tmp.rename(target)
    return target
