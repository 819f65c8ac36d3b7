"""`shoptalk build`: ingest -> dataset -> index -> train -> eval, skipping what has not changed.

Each stage's output folder is named by a hash of its inputs and settings, so
"has it changed?" is "does the folder exist and is it complete?". A training
run that was killed has checkpoints but no `final/`; building again resumes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.artifacts import DatasetArtifact, RunArtifact, write_atomic
from shoptalk.data.dataset import build_dataset
from shoptalk.eval.gate import GateResult, check_gate
from shoptalk.eval.run import evaluate, question_suites
from shoptalk.eval.scorecard import Scorecard
from shoptalk.modeling.load import pick_device, resolve_base_model
from shoptalk.project import Project
from shoptalk.registry.models import promote_run, register_run

if TYPE_CHECKING:
    from shoptalk.train.plan import TrainPlan

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class BuildResult:
    dataset: DatasetArtifact
    run: RunArtifact
    scorecard: Scorecard | None
    gate: GateResult | None = None


def prepare_dataset(project: Project, say: Say = print) -> DatasetArtifact:
    dataset = build_dataset(project.config, project.root, project.datasets)
    say(f"dataset  {dataset.hash}  ({dataset.path})")
    return dataset


def plan(project: Project, say: Say = print) -> TrainPlan:
    """What a build would train, with its estimated time and peak memory (the console's plan)."""
    from shoptalk.train.sft import plan_run

    dataset = prepare_dataset(project, say)
    return plan_run(
        project.config, dataset, resolve_base_model(project.config.base_model, project.root)
    )


def index_documents(project: Project, say: Say = print) -> None:
    """The retrieval index of `sources.docs`; only changed documents are read and embedded."""
    if not project.config.sources.docs or not project.config.rag.enabled:
        return
    from shoptalk.rag.index import index_project

    say(f"index    {index_project(project).summary()}")


def train(
    project: Project,
    dataset: DatasetArtifact,
    base_path: str,
    say: Say = print,
    stop_after: int | None = None,
) -> RunArtifact:
    """The recipe's run: SFT, then DPO on top of it when the dataset has preference pairs;
    continued pretraining (`cpt`); or DPO alone from the base (`dpo`)."""
    from shoptalk.train import cpt, dpo, sft
    from shoptalk.train.methods import check_method

    cfg = project.config
    check_method(cfg.train, pick_device(cfg.train.device))  # e.g. QLoRA without a GPU
    run_dir = project.runs / project.run_id(dataset.hash)
    if not (run_dir / "final").is_dir():
        warn_if_not_gguf_exportable(base_path, say)
    recipe = {"sft": sft.run, "cpt": cpt.run, "dpo": dpo.run}[cfg.train.recipe]
    name = "train" if cfg.train.recipe == "sft" else cfg.train.recipe
    run = stage(run_dir, name, say, partial(recipe, cfg, dataset, base_path, stop_after=stop_after))
    if cfg.train.recipe == "sft" and run.final.is_dir() and dpo.has_pairs(dataset):
        on_sft = partial(
            dpo.run, cfg, dataset, base_path, start_from=run.final, stop_after=stop_after
        )
        run = stage(project.runs / project.dpo_run_id(run_dir.name), "dpo", say, on_sft)
    if run.final.is_dir():
        write_atomic(project.latest_run_file, run.run_id + "\n")
    return run


def warn_if_not_gguf_exportable(base_path: str, say: Say) -> None:
    """Said before training starts: learning it from `shoptalk export` hours later is too late."""
    from shoptalk.export.gguf import gguf_warning

    warning = gguf_warning(base_path)
    if warning:
        log.warning(warning)
        say(f"warning  {warning}")


def stage(run_dir: Path, name: str, say: Say, train: Callable[[Path], RunArtifact]) -> RunArtifact:
    run = RunArtifact(path=run_dir, run_id=run_dir.name)
    # final/ is renamed into place only when complete, so its presence means done.
    if run.final.is_dir():
        say(f"{name:<8} {run.run_id}  unchanged, skipped")
        return run
    say(f"{name:<8} {run.run_id}  ({run_dir})")
    return train(run_dir)


def with_raft(project: Project, dataset: DatasetArtifact, say: Say) -> DatasetArtifact:
    """The dataset plus retrieval-aware examples when `rag.raft` is set, else as it is."""
    rag = project.config.rag
    if rag.raft is None or not rag.enabled:
        return dataset
    from shoptalk.rag.raft import raft_view
    from shoptalk.rag.retrieve import open_index

    view = raft_view(dataset, open_index(project), project.config.system_prompt, rag)
    say(
        f"raft     {len(view.conversations('train')) - len(dataset.conversations('train'))} "
        f"examples with retrieved chunks  ({view.path})"
    )
    return view


def build(project: Project, say: Say = print, stop_after: int | None = None) -> BuildResult:
    from shoptalk.train.methods import check_method

    check_method(project.config.train, pick_device(project.config.train.device))
    base_path = resolve_base_model(project.config.base_model, project.root)
    say(f"base     {project.config.base_model}  ({base_path})")
    dataset = prepare_dataset(project, say)
    index_documents(project, say)
    # Question files are checked before training, not after it.
    suites = question_suites(project, dataset)
    run = train(project, with_raft(project, dataset, say), base_path, say, stop_after)
    if not run.final.is_dir():
        return BuildResult(dataset, run, None)
    if not suites:
        say("eval     no question files and no held-out FAQ rows: scorecard skipped")
        promote_run(project, run)
        return BuildResult(dataset, run, None)
    card = evaluate(project, run, base_path, suites)
    say(f"eval     {project.evals / run.run_id / 'report.html'}")
    register_run(project, run)
    gate = check_gate(card, project.config.eval.gate)
    if not gate.passed:
        say("gate     FAILED, the model is not promoted:\n  " + "\n  ".join(gate.failures))
        return BuildResult(dataset, run, card, gate)
    promote_run(project, run)
    say(f"gate     passed ({len(project.config.eval.gate.rules)} rules); promoted {run.run_id}")
    return BuildResult(dataset, run, card, gate)
