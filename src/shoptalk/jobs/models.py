"""The models jobs produce, by their OpenAI names, as folders a server can load.

A finished job's model is its run's `final/` folder (a LoRA adapter). A
checkpoint is kept as its trainable weights only; it becomes an adapter folder
the first time someone asks for it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shoptalk.project import Project
from shoptalk.registry.jobs import JobCheckpointRow, JobRow


def job_models(session: Session) -> dict[str, Path]:
    """Every servable job model: finished jobs' final adapters and their checkpoints."""
    found: dict[str, Path] = {}
    for job in session.scalars(select(JobRow).where(JobRow.fine_tuned_model.is_not(None))):
        found[job.fine_tuned_model] = Path(job.run_path) / "final"
    for ckpt in session.scalars(select(JobCheckpointRow)):
        found[ckpt.model_name] = Path(ckpt.path) / "adapter"
    return found


def materialize_checkpoint(project: Project, session: Session, name: str) -> Path:
    """The adapter folder of checkpoint `name`, written on first use."""
    ckpt = session.scalar(select(JobCheckpointRow).where(JobCheckpointRow.model_name == name))
    target = Path(ckpt.path) / "adapter"
    if (target / "adapter_config.json").is_file():
        return target
    import torch

    from shoptalk.jobs.runner import job_config
    from shoptalk.models import load_model, resolve_base_model
    from shoptalk.train.methods import attach_method

    job = session.get(JobRow, ckpt.job_id)
    cfg = job_config(project.config, job)
    base = load_model(resolve_base_model(cfg.base_model, project.root), "cpu", dtype=torch.float32)
    model, _ = attach_method(base, cfg.train)
    params = dict(model.named_parameters())
    trainable = torch.load(Path(ckpt.path) / "trainable.pt", map_location="cpu")
    with torch.no_grad():
        for param_name, value in trainable.items():
            params[param_name].copy_(value)
    tmp = target.with_name("adapter.tmp")
    model.save_pretrained(tmp)
    tmp.rename(target)
    return target
