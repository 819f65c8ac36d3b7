"""A job's checkpoints kept as models: their trainable weights, copied out of the run.

Training deletes its checkpoints once it has saved the final model, so a
checkpoint is kept when it is written: the job's own process keeps every new
one when its step is reported (a step's checkpoint is on disk before the
step's event), however fast the job, and the worker keeps what that process
left behind once it has ended (killed between the checkpoint and the event).
They never write at once: the worker keeps checkpoints only of a process that
is gone. Only the weights file is copied: nothing of training is unpickled.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shoptalk.artifacts import CHECKPOINT_WEIGHTS, JobArtifact, checkpoint_step
from shoptalk.registry import jobs as store
from shoptalk.registry.jobs import JobCheckpointRow, JobRow


def model_name(base: str, job: JobRow) -> str:
    """OpenAI's naming: ft:<base>:<suffix>:<job id>."""
    return f"ft:{base}:{job.suffix or 'shoptalk'}:{job.id}"


def keep_checkpoints(session: Session, job: JobRow, folder: JobArtifact) -> list[int]:
    """Keep every checkpoint of the job's run not kept yet; the steps kept now."""
    kept = set(
        session.scalars(select(JobCheckpointRow.step).where(JobCheckpointRow.job_id == job.id))
    )
    new = [c for c in folder.run.checkpoint_folders() if checkpoint_step(c) not in kept]
    if not new:
        return []
    by_step = {r["step"]: r for r in folder.run.metrics()}
    return [step for c in new if (step := keep_checkpoint(session, job, c, folder, by_step))]


def keep_checkpoint(
    session: Session, job: JobRow, checkpoint: Path, folder: JobArtifact, metrics: dict[int, dict]
) -> int | None:
    """Copy a checkpoint's trainable weights (small for LoRA) and list it as a model of the job."""
    step = checkpoint_step(checkpoint)
    target = folder.kept_checkpoint(step)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{CHECKPOINT_WEIGHTS}.tmp"
    try:
        shutil.copyfile(checkpoint / CHECKPOINT_WEIGHTS, tmp)
    except FileNotFoundError:
        return None  # pruned while we read, or written before weights had a file of their own
    os.replace(tmp, target / CHECKPOINT_WEIGHTS)
    session.add(
        JobCheckpointRow(
            id=store.new_id("ftckpt"),
            job_id=job.id,
            step=step,
            model_name=f"{model_name(job.model, job)}:ckpt-step-{step}",
            path=str(target),
            metrics=metrics.get(step, {}),
        )
    )
    return step
