"""A fine-tuning job (OpenAI's API) through the same stages as a build.

    job's files -> dataset (clean, redact, dedupe) -> sft | dpo (resumes) -> adapter

The job's settings are the project's with the job's hyperparameters applied;
"auto" values are resolved by the recipe's plan, like a build's (`lr_scale`
carries `learning_rate_multiplier` there), and the values used are read back
from the run's plan.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from shoptalk.artifacts import DatasetArtifact, JobArtifact, RunArtifact
from shoptalk.config import ShoptalkConfig
from shoptalk.data.dataset import prepare_sources
from shoptalk.data.sources import Ingested
from shoptalk.pipeline import stages
from shoptalk.pipeline.events import Event, OnEvent, ignore
from shoptalk.pipeline.inputs import TrainingInput
from shoptalk.project import Project

JobKind = Literal["supervised", "dpo"]


class Hyperparameters(BaseModel, extra="ignore"):
    """OpenAI's hyperparameters; "auto" keeps the project's setting."""

    n_epochs: int | str = "auto"
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"
    beta: float | str = "auto"

    @property
    def lr_scale(self) -> float:
        value = self.learning_rate_multiplier
        return float(value) if isinstance(value, int | float) else 1.0


class FineTuneJob(BaseModel):
    """What a job asks for: the kind of training, its hyperparameters and seed."""

    kind: JobKind = "supervised"
    hyperparameters: Hyperparameters = Hyperparameters()
    seed: int = 0

    @classmethod
    def of(cls, method: dict | None, seed: int) -> FineTuneJob:
        """From the API's `method` (`{"type": ..., "<type>": {"hyperparameters": ...}}`)."""
        kind = (method or {}).get("type", "supervised")
        given = ((method or {}).get(kind) or {}).get("hyperparameters") or {}
        return cls(kind=kind, hyperparameters=Hyperparameters.model_validate(given), seed=seed)


def job_config(base: ShoptalkConfig, job: FineTuneJob) -> ShoptalkConfig:
    """The project's settings with the job's hyperparameters applied.

    Jobs train LoRA adapters on all layers: many jobs then share one base model
    in memory when served, each adapter a few megabytes.
    """
    hp = job.hyperparameters
    train = base.train.model_copy(
        update={"method": "lora", "trainable_layers": None, "seed": job.seed}
    )
    if isinstance(hp.n_epochs, int):
        train.epochs = float(hp.n_epochs)
    if isinstance(hp.batch_size, int):
        train.tokens_per_step = hp.batch_size * train.max_seq_len
    if job.kind == "dpo":
        dpo = train.dpo.model_copy()
        if isinstance(hp.beta, int | float):
            dpo.beta = float(hp.beta)
        if isinstance(hp.n_epochs, int):
            dpo.epochs = float(hp.n_epochs)
        train.dpo = dpo
    return base.model_copy(update={"train": train})


def job_dataset(
    cfg: ShoptalkConfig, training: list, validation: list, folder: Path, kind: JobKind
) -> DatasetArtifact:
    """Clean, redact and deduplicate the job's examples (or pairs) into a dataset folder."""
    if kind == "dpo":
        kept, _, report = prepare_sources(Ingested(preferences=training), cfg.data)
        val = Ingested()
    else:
        kept, _, report = prepare_sources(Ingested(conversations=training), cfg.data)
        val, _, _ = prepare_sources(Ingested(conversations=validation), cfg.data)
    records = kept.conversations + kept.preferences + val.conversations
    digest = hashlib.sha256("".join(r.model_dump_json() for r in records).encode()).hexdigest()[:16]
    dataset = DatasetArtifact(path=folder / digest, hash=digest)
    if dataset.complete:
        return dataset
    counts = {
        "train": len(kept.conversations),
        "val": len(val.conversations),
        "preferences": len(kept.preferences),
    }
    splits = {"train": kept.conversations, "val": val.conversations}
    manifest = {"hash": digest, "counts": counts, **report}
    return dataset.write(splits, [], kept.preferences, manifest)


def fine_tune(
    project: Project,
    job: FineTuneJob,
    training: list,
    validation: list,
    folder: JobArtifact,
    on_event: OnEvent = ignore,
) -> RunArtifact:
    """Train the job's adapter in the job's run folder (resuming it if it was stopped)."""
    cfg = job_config(project.config, job)
    base_path = stages.base_model(Project(project.root, cfg), on_event)
    dataset = job_dataset(cfg, training, validation, folder.datasets, job.kind)
    message = (
        f"{len(training)} training and {len(validation)} validation examples  ({dataset.hash})"
    )
    on_event(
        Event(
            stage="dataset",
            status="done",
            input_hash=dataset.hash,
            artifact=str(dataset.path),
            message=message,
        )
    )
    data = TrainingInput(kind="plain", dataset=dataset, hash=dataset.hash)
    run = folder.run
    stage = "dpo" if job.kind == "dpo" else "sft"
    lr_scale = job.hyperparameters.lr_scale
    fit = stages.fit_recipe(stage, cfg, data, base_path, run, lr_scale=lr_scale)
    return stages.train_stage(stage, run, on_event, fit)


def hyperparameters_used(job: FineTuneJob, run: RunArtifact, max_seq_len: int) -> dict | None:
    """The values training used, in OpenAI's names, from the run's plan (None before it)."""
    plan = run.plan()
    if plan is None:
        return None
    used = {
        "n_epochs": plan.get("epochs"),
        "learning_rate_multiplier": job.hyperparameters.lr_scale,
        "learning_rate": plan.get("learning_rate"),
    }
    if job.kind == "dpo":
        return used | {"batch_size": plan.get("pairs_per_step"), "beta": plan.get("beta")}
    return used | {"batch_size": max(1, plan["tokens_per_step"] // max_seq_len)}
