"""One fine-tuning job, start to finish, in its own process.

    validate files → dataset (clean, redact, dedupe) → train (resumes) → model

It runs as `python -m shoptalk.jobs.runner PROJECT JOB_ID`, so pausing or
cancelling a job is stopping a process, and resuming it is starting the
process again: the training run continues from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from shoptalk.artifacts import DatasetArtifact, write_json, write_jsonl
from shoptalk.config import ShoptalkConfig
from shoptalk.data.dataset import prepare_sources
from shoptalk.data.formats import read_conversations
from shoptalk.data.pii import redact
from shoptalk.data.preferences import read_preferences
from shoptalk.data.sources import Ingested
from shoptalk.errors import SourceError
from shoptalk.jobs import log_to
from shoptalk.project import Project
from shoptalk.registry import jobs as store
from shoptalk.registry.db import open_registry
from shoptalk.registry.jobs import FileRow, JobRow

log = logging.getLogger(__name__)


class Hyperparameters(BaseModel, extra="ignore"):
    """OpenAI's hyperparameters; "auto" keeps the project's setting."""

    n_epochs: int | str = "auto"
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"
    beta: float | str = "auto"


class JobError(Exception):
    """A job that cannot run, with OpenAI's error fields."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param}


class JobFiles(BaseModel):
    training: list = Field(default_factory=list)
    validation: list = Field(default_factory=list)


def method_type(method: dict) -> str:
    return (method or {}).get("type", "supervised")


def hyperparameters(method: dict) -> Hyperparameters:
    kind = method_type(method)
    return Hyperparameters.model_validate((method.get(kind) or {}).get("hyperparameters") or {})


def job_config(base: ShoptalkConfig, job: JobRow) -> ShoptalkConfig:
    """The project's settings with the job's hyperparameters applied.

    Jobs train LoRA adapters on all layers: many jobs then share one base model
    in memory when served, each adapter a few megabytes.
    """
    hp = hyperparameters(job.method)
    train = base.train.model_copy(
        update={"method": "lora", "trainable_layers": None, "seed": job.seed}
    )
    if isinstance(hp.n_epochs, int):
        train.epochs = float(hp.n_epochs)
    if isinstance(hp.batch_size, int):
        train.tokens_per_step = hp.batch_size * train.max_seq_len
    if method_type(job.method) == "dpo":
        dpo = train.dpo.model_copy()
        if isinstance(hp.beta, int | float):
            dpo.beta = float(hp.beta)
        if isinstance(hp.n_epochs, int):
            dpo.epochs = float(hp.n_epochs)
        if isinstance(hp.learning_rate_multiplier, int | float):
            dpo.learning_rate *= float(hp.learning_rate_multiplier)
        train.dpo = dpo
    return base.model_copy(update={"train": train})


def scaled_learning_rate(cfg: ShoptalkConfig, job: JobRow, base_path: str) -> ShoptalkConfig:
    """Apply `learning_rate_multiplier` to the project's (or the automatic) learning rate."""
    multiplier = hyperparameters(job.method).learning_rate_multiplier
    if not isinstance(multiplier, int | float) or method_type(job.method) == "dpo":
        return cfg  # DPO's own rate was scaled in job_config
    rate = cfg.train.learning_rate
    if rate == "auto":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from shoptalk.train.plan import auto_learning_rate

        # Counted on the meta device: no weights are loaded for a parameter count.
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_path))
        rate = auto_learning_rate(cfg.train.method, sum(p.numel() for p in model.parameters()))
    train = cfg.train.model_copy(update={"learning_rate": rate * float(multiplier)})
    return cfg.model_copy(update={"train": train})


def read_job_file(row: FileRow, param: str, kind: str = "supervised") -> list:
    """The file's conversations (or preference pairs for DPO); a bad row fails the job
    naming the file and line."""
    path = Path(row.path)
    try:
        if kind == "dpo":
            return read_preferences(path, path.parent)
        return read_conversations(path, path.parent)
    except SourceError as err:
        where = f"{row.filename}, line {err.line}" if err.line else row.filename
        # The detail may quote the user's data: it is redacted like any log line.
        raise JobError("invalid_file", f"{where}: {redact(err.detail).text}", param) from err


def validate(session, job: JobRow) -> JobFiles:
    files = JobFiles()
    for param, file_id in (
        ("training_file", job.training_file),
        ("validation_file", job.validation_file),
    ):
        if file_id is None:
            continue
        row = session.get(FileRow, file_id)
        if row is None:
            raise JobError("file_not_found", f"No file with id {file_id}", param)
        records = read_job_file(row, param, method_type(job.method))
        if param == "training_file" and not records:
            raise JobError("invalid_file", f"{row.filename}: no training examples", param)
        setattr(files, "training" if param == "training_file" else "validation", records)
    return files


def write_dataset(
    cfg: ShoptalkConfig, files: JobFiles, folder: Path, kind: str = "supervised"
) -> DatasetArtifact:
    """Clean, redact and deduplicate the job's examples (or pairs) into a dataset folder."""
    if kind == "dpo":
        kept, _, report = prepare_sources(Ingested(preferences=files.training), cfg.data)
        val = Ingested()
    else:
        kept, _, report = prepare_sources(Ingested(conversations=files.training), cfg.data)
        val, _, _ = prepare_sources(Ingested(conversations=files.validation), cfg.data)
    records = kept.conversations + kept.preferences + val.conversations
    digest = hashlib.sha256("".join(r.model_dump_json() for r in records).encode()).hexdigest()[:16]
    target = folder / digest
    if not (target / "manifest.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        write_jsonl(target / "train.jsonl", kept.conversations)
        write_jsonl(target / "val.jsonl", val.conversations)
        write_jsonl(target / "text.jsonl", [])
        write_jsonl(target / "preferences.jsonl", kept.preferences)
        write_json(
            target / "manifest.json",
            {
                "hash": digest,
                "counts": {
                    "train": len(kept.conversations),
                    "val": len(val.conversations),
                    "preferences": len(kept.preferences),
                },
                **report,
            },
        )
    return DatasetArtifact(path=target, hash=digest)


def model_name(base: str, job: JobRow) -> str:
    """OpenAI's naming: ft:<base>:<suffix>:<job id>."""
    return f"ft:{base}:{job.suffix or 'shoptalk'}:{job.id}"


def run_job(project: Project, job_id: str) -> None:
    sessions = open_registry(project.config.serve.database_url, project.state)
    with sessions() as session:
        job = session.get(JobRow, job_id)
        cfg = job_config(project.config, job)
        folder = project.state / "jobs" / job_id
        try:
            # --- validate
            files = validate(session, job)
            # --- dataset
            kind = method_type(job.method)
            dataset = write_dataset(cfg, files, folder / "datasets", kind)
            store.add_event(
                session,
                job_id,
                f"Dataset ready: {len(files.training)} training and {len(files.validation)} "
                f"validation examples ({dataset.hash})",
            )
            session.commit()
            # --- train (continues from the last checkpoint if there is one)
            from shoptalk.modeling.load import resolve_base_model
            from shoptalk.train import dpo, sft

            base_path = resolve_base_model(cfg.base_model, project.root)
            cfg = scaled_learning_rate(cfg, job, base_path)
            store.add_event(session, job_id, "Fine-tuning started")
            session.commit()
            recipe = dpo.run if kind == "dpo" else sft.run
            run = recipe(cfg, dataset, base_path, folder / "run")
        except JobError as err:
            store.add_event(session, job_id, err.message, level="error")
            store.set_status(session, job_id, "failed", error=err.as_dict())
            session.commit()
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            message = f"{type(exc).__name__}: {redact(str(exc)).text}"
            store.add_event(session, job_id, message, level="error")
            store.set_status(
                session,
                job_id,
                "failed",
                error={"code": "server_error", "message": message, "param": None},
            )
            session.commit()
            return
        # --- done
        store.add_event(session, job_id, "The job has successfully completed")
        store.set_status(
            session,
            job_id,
            "succeeded",
            fine_tuned_model=model_name(job.model, job),
            run_path=str(run.path),
            trained_tokens=trained_tokens(run.path / "metrics.jsonl"),
        )
        session.commit()


def trained_tokens(metrics: Path) -> int:
    lines = metrics.read_text(encoding="utf-8").splitlines()
    return sum(json.loads(line).get("tokens", 0) for line in lines if line.strip())


def main() -> None:
    project = Project.open(sys.argv[1])
    log_to(project.state / "logs" / "jobs.log")
    run_job(project, sys.argv[2])


if __name__ == "__main__":
    main()
