"""One pipeline: the stages in order, for the CLI, the console and the jobs worker alike.

    from shoptalk import pipeline
    result = pipeline.build(project, on_event=print_event)   # shoptalk build
    run = pipeline.train(project, on_event=print_event)       # shoptalk train
    plan = pipeline.plan(project)                             # train --plan, the console's plan

Stages (`pipeline.stages`): base -> dataset -> index -> input (plain, RAFT or CPT
view, chosen in `pipeline.inputs` only) -> sft | cpt | dpo (then DPO on an SFT
run when the dataset has preference pairs) -> eval -> gate (promote). Each
reports typed `Event`s; a build is also recorded in the registry, so the
console shows builds made from the CLI.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from shoptalk.artifacts import DatasetArtifact, RunArtifact
from shoptalk.eval.gate import GateResult
from shoptalk.eval.scorecard import Scorecard
from shoptalk.pipeline import stages
from shoptalk.pipeline.events import STAGES, Event, OnEvent, Stage, Status, ignore
from shoptalk.pipeline.inputs import TrainingInput, index_documents, training_input, uses_raft
from shoptalk.pipeline.plans import BuildPlan, StagePlan
from shoptalk.project import Project

__all__ = [
    "STAGES",
    "BuildPlan",
    "BuildResult",
    "Event",
    "OnEvent",
    "Stage",
    "StagePlan",
    "Status",
    "TrainingInput",
    "build",
    "ignore",
    "index_documents",
    "plan",
    "prepare_dataset",
    "prepare_input",
    "train",
    "training_input",
]


@dataclass
class BuildResult:
    dataset: DatasetArtifact
    run: RunArtifact  # the model: the last training stage's run
    scorecard: Scorecard | None
    gate: GateResult | None = None
    runs: list[RunArtifact] = field(default_factory=list)  # every training stage's run, in order

    @property
    def finished(self) -> bool:
        return self.run.done


def prepare_dataset(project: Project, on_event: OnEvent = ignore) -> DatasetArtifact:
    """The dataset stage alone: `.shoptalk/datasets/<hash>/`."""
    return stages.dataset(project, on_event)


def prepare_input(
    project: Project, on_event: OnEvent = ignore, dataset: DatasetArtifact | None = None
) -> TrainingInput:
    """The training input of the project's dataset (built unless given), with the
    retrieval index it needs for RAFT examples."""
    dataset = dataset or stages.dataset(project, on_event)
    if uses_raft(project):
        index_documents(project, on_event)
    return training_input(project, dataset, on_event)


def train(
    project: Project,
    on_event: OnEvent = ignore,
    resume: bool = True,
    stop_after: int | None = None,
    dataset: DatasetArtifact | None = None,
) -> RunArtifact:
    """`shoptalk train`: the stages up to the model, the same run a build trains.

    `resume=False` deletes this input's checkpoints first (of its SFT and DPO runs).
    """
    base_path = stages.base_model(project, on_event)
    data = prepare_input(project, on_event, dataset)
    if not resume:
        for run_id in stages.run_ids(project, data):
            shutil.rmtree(project.run(run_id).checkpoints, ignore_errors=True)
    return stages.train(project, data, base_path, on_event, stop_after)[-1]


def build(
    project: Project,
    on_event: OnEvent = ignore,
    stop_after: int | None = None,
    build_id: str | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> BuildResult:
    """`shoptalk build`: every stage in order, skipping those whose inputs did not change.

    Recorded in the registry: in the row `build_id` of `sessions` (a console build),
    or in a new row of the project's registry (origin 'cli').
    """
    from shoptalk.pipeline import record

    if not record.is_main_process():
        return run_build(project, on_event, stop_after)
    if build_id is None:
        sessions = record.project_registry(project)
        build_id = record.start_cli_build(sessions, project)

    def run(emit: OnEvent) -> BuildResult:
        return run_build(project, emit, stop_after)

    return record.recorded(sessions, build_id, run, on_event)


def run_build(project: Project, on_event: OnEvent, stop_after: int | None) -> BuildResult:
    from shoptalk.eval.run import question_suites

    base_path = stages.base_model(project, on_event)
    dataset = stages.dataset(project, on_event)
    index_documents(project, on_event)  # for retrieval at eval and serving, and for RAFT
    data = training_input(project, dataset, on_event)
    # Question files are checked before training, not after it.
    suites = question_suites(project, dataset)
    runs = stages.train(project, data, base_path, on_event, stop_after)
    run = runs[-1]
    if not run.done:
        return BuildResult(dataset, run, None, runs=runs)
    card = stages.evaluate(project, run, base_path, suites, on_event)
    stages.coverage(project, run, base_path, dataset, on_event)
    gate = stages.gate(project, run, card, on_event)
    return BuildResult(dataset, run, card, gate, runs)


def plan(project: Project, on_event: OnEvent = ignore) -> BuildPlan:
    """What a build would train, stage by stage, with time and memory estimates (recipe-aware)."""
    from shoptalk.pipeline.plans import stage_plan
    from shoptalk.train import dpo, sft

    cfg = project.config
    base_path = stages.base_model(project, on_event)
    data = prepare_input(project, on_event)
    run = project.run(project.run_id(data.hash))
    planned: list[StagePlan] = []
    if cfg.train.recipe == "dpo":
        pairs = dpo.plan_run(cfg, data.dataset, base_path)
        planned.append(stage_plan("dpo", run, cfg.train.method, pairs))
    else:
        trains = sft.plan_run(cfg, data.dataset, base_path)
        estimates = {
            "estimated_seconds": trains.estimated_seconds,
            "peak_memory_bytes": trains.memory.total,
            "memory_available_bytes": trains.memory_available,
        }
        planned.append(stage_plan(cfg.train.recipe, run, trains.method, trains, **estimates))
        if cfg.train.recipe == "sft" and dpo.has_pairs(data.dataset):
            on_sft = project.run(project.dpo_run_id(run.run_id))
            start = run.final if run.done else None
            pairs = dpo.plan_run(cfg, data.dataset, base_path, start_from=start)
            planned.append(stage_plan("dpo", on_sft, trains.method, pairs))
    return BuildPlan(
        recipe=cfg.train.recipe, input=data.kind, dataset_hash=data.hash, stages=planned
    )
