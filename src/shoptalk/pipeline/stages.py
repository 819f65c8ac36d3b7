"""The stages of a build, each a typed function from artifacts to an artifact, with events.

    base -> dataset -> index -> input -> sft | cpt | dpo (then dpo on sft) -> eval -> gate

Each stage's output is named by a hash of its inputs and settings, so "has it
changed?" is "does the artifact exist and is it complete?". A training run that
was killed has checkpoints but no `final/`; training it again resumes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from shoptalk.artifacts import DatasetArtifact, PromotedMode, RunArtifact, write_atomic, write_json
from shoptalk.config import ShoptalkConfig
from shoptalk.eval.gate import GateResult, check_gate, render_checks
from shoptalk.eval.promote import choose_mode
from shoptalk.eval.questions import Suite
from shoptalk.eval.scorecard import Scorecard
from shoptalk.pipeline.events import Event, OnEvent, Stage
from shoptalk.pipeline.inputs import TrainingInput
from shoptalk.pipeline.pace import Pace
from shoptalk.project import Project
from shoptalk.registry.models import promote_run, register_run

log = logging.getLogger(__name__)

# A recipe run, given where to report its plan and its steps.
Fit = Callable[[Callable[[object], None], Callable[[int, int, dict], None]], RunArtifact]


def base_model(project: Project, on_event: OnEvent) -> str:
    """The base model's local path, after checking it can be had and trained here."""
    from shoptalk.modeling.load import check_base_model, pick_device, resolve_base_model
    from shoptalk.train.methods import check_method

    cfg = project.config
    check_base_model(cfg.base_model, project.root)
    check_method(cfg.train, pick_device(cfg.train.device))  # e.g. QLoRA without a GPU
    path = resolve_base_model(cfg.base_model, project.root)
    on_event(
        Event(stage="base", status="done", artifact=path, message=f"{cfg.base_model}  ({path})")
    )
    return path


def dataset(project: Project, on_event: OnEvent) -> DatasetArtifact:
    """`.shoptalk/datasets/<hash>/`, built unless a complete one has the same hash."""
    from shoptalk.data.dataset import build_dataset

    built = build_dataset(project.config, project.root, project.datasets)
    # The project's system prompt follows the rules of the dataset just built (or reused).
    write_json(project.style_file, built.style())
    on_event(
        Event(
            stage="dataset",
            status="done",
            input_hash=built.hash,
            artifact=str(built.path),
            message=f"{built.hash}  ({built.path})",
        )
    )
    return built


def train_stage(stage: Stage, run: RunArtifact, on_event: OnEvent, fit: Fit) -> RunArtifact:
    """Run one recipe into `run`, unless its `final/` exists; its plan and steps become events."""
    where = {"run": str(run.path), "input_hash": run.run_id}
    if run.done:
        message = f"{run.run_id}  unchanged, skipped"
        on_event(
            Event(stage=stage, status="skipped", artifact=str(run.final), message=message, **where)
        )
        return run
    on_event(Event(stage=stage, status="started", message=f"{run.run_id}  ({run.path})", **where))
    paces: list[Pace] = []

    def on_plan(plan) -> None:
        text = plan.render()
        on_event(
            Event(stage=stage, status="progress", total=plan.total_steps, message=text, **where)
        )
        paces.append(Pace(getattr(plan, "estimated_seconds", None), plan.total_steps))

    def on_step(step: int, total: int, record: dict) -> None:
        metrics = {k: v for k, v in record.items() if isinstance(v, int | float)}
        event = Event(
            stage=stage, status="progress", step=step, total=total, metrics=metrics, **where
        )
        on_event(event)
        if not paces:
            paces.append(Pace(None, total))
        corrected = paces[-1].step(step)
        if corrected:
            log.info("%s: %s", stage, corrected)
            on_event(Event(stage=stage, status="progress", message=corrected, **where))

    try:
        trained = fit(on_plan, on_step)
    except Exception as exc:
        on_event(
            Event(stage=stage, status="failed", message=f"{type(exc).__name__}: {exc}", **where)
        )
        raise
    if not trained.done:
        message = f"{run.run_id}  stopped before the last step; train again to resume"
        on_event(Event(stage=stage, status="warning", message=message, **where))
        return trained
    message = f"{run.run_id}  done  ({trained.final})"
    on_event(
        Event(stage=stage, status="done", artifact=str(trained.final), message=message, **where)
    )
    return trained


def fit_recipe(
    stage: Stage,
    project_cfg: ShoptalkConfig,
    data: TrainingInput,
    base_path: str,
    run: RunArtifact,
    stop_after: int | None = None,
    start_from: Path | None = None,
    lr_scale: float = 1.0,
) -> Fit:
    """The recipe of `stage` on the training input, as a `Fit` for `train_stage`."""
    from shoptalk.train import dpo, sft

    def fit(on_plan, on_step) -> RunArtifact:
        hooks = {"on_plan": on_plan, "on_step": on_step, "lr_scale": lr_scale}
        if stage == "dpo":
            return dpo.run(
                project_cfg, data.dataset, base_path, run.path, start_from, stop_after, **hooks
            )
        # CPT is the SFT loop on the document view the training input chose.
        return sft.run(project_cfg, data.dataset, base_path, run.path, stop_after, **hooks)

    return fit


def train(
    project: Project,
    data: TrainingInput,
    base_path: str,
    on_event: OnEvent,
    stop_after: int | None = None,
) -> list[RunArtifact]:
    """The recipe's runs: SFT, then DPO on top of it when the dataset has preference pairs;
    continued pretraining (`cpt`); or DPO alone from the base (`dpo`). The last is the model."""
    from shoptalk.train import dpo

    cfg = project.config
    run = project.run(project.run_id(data.hash))
    if not run.done:
        warn_if_not_gguf_exportable(base_path, on_event)
    stage: Stage = cfg.train.recipe
    fit = fit_recipe(stage, cfg, data, base_path, run, stop_after)
    runs = [train_stage(stage, run, on_event, fit)]
    if stage == "sft" and runs[0].done and dpo.has_pairs(data.dataset):
        on_sft = project.run(project.dpo_run_id(run.run_id))
        fit = fit_recipe("dpo", cfg, data, base_path, on_sft, stop_after, start_from=run.final)
        runs.append(train_stage("dpo", on_sft, on_event, fit))
    if runs[-1].done:
        write_atomic(project.latest_run_file, runs[-1].run_id + "\n")
    return runs


def run_ids(project: Project, data: TrainingInput) -> list[str]:
    """The runs `train` writes for this input (SFT's DPO stage too, whether or not it runs)."""
    run_id = project.run_id(data.hash)
    if project.config.train.recipe == "sft":
        return [run_id, project.dpo_run_id(run_id)]
    return [run_id]


def warn_if_not_gguf_exportable(base_path: str, on_event: OnEvent) -> None:
    """Said before training starts: learning it from `shoptalk export` hours later is too late."""
    from shoptalk.export.gguf import gguf_warning

    warning = gguf_warning(base_path)
    if warning:
        log.warning(warning)
        on_event(Event(stage="base", status="warning", message=f"warning: {warning}"))


def evaluate(
    project: Project, run: RunArtifact, base_path: str, suites: list[Suite], on_event: OnEvent
) -> Scorecard | None:
    """Base vs tuned on the question suites: `.shoptalk/evals/<run-id>/`."""
    from shoptalk.eval.run import evaluate as score

    if not suites:
        message = "no question files and no held-out FAQ rows: scorecard skipped"
        on_event(Event(stage="eval", status="skipped", input_hash=run.run_id, message=message))
        return None
    folder = project.eval_of(run.run_id)
    message = f"base and {run.run_id} on {len(suites)} question suite(s)"
    where = {"input_hash": run.run_id, "artifact": str(folder.path)}
    on_event(Event(stage="eval", status="started", message=message, **where))
    card = score(project, run, base_path, suites)
    register_run(project, run)
    on_event(Event(stage="eval", status="done", message=str(folder.report), **where))
    return card


def coverage(
    project: Project, run: RunArtifact, base_path: str, data: DatasetArtifact, on_event: OnEvent
) -> None:
    """Which facts the tuned model recalls (`eval.coverage`): coverage.json and the report."""
    from shoptalk.eval.coverage import coverage_section, measure_coverage
    from shoptalk.eval.report import write_report
    from shoptalk.eval.scorecard import read_scorecard

    files = project.eval_of(run.run_id)
    found = measure_coverage(project, run, base_path, data) if files.scorecard.is_file() else None
    if found is not None:
        write_report(read_scorecard(files.scorecard), files.report, coverage_section(found))
        message = f"coverage: {len(found.facts)} facts in {found.seconds:g} s ({files.coverage})"
        on_event(Event(stage="eval", status="progress", input_hash=run.run_id, message=message))


def gate(
    project: Project, run: RunArtifact, card: Scorecard | None, on_event: OnEvent
) -> GateResult | None:
    """Promote the run if its scorecard passes `eval.gate` (or if there is no scorecard)."""
    where = {"input_hash": run.run_id, "artifact": str(run.path)}
    if card is None:
        PromotedMode.clear(project.state)
        promote_run(project, run)
        message = f"no scorecard to check; promoted {run.run_id}"
        on_event(Event(stage="gate", status="skipped", message=message, **where))
        return None
    result = check_gate(card, project.config.eval.gate)
    checks = "".join(f"\n  {line}" for line in render_checks(result))
    mode, why = choose_mode(card, project.config.eval.promote, result.passed)
    if mode is not None:
        PromotedMode(mode=mode, run_id=promoted_with(project, run, mode), reason=why).write(
            project.state
        )
        checks += f"\n  serving {mode}: {why}"
    if not result.passed:
        message = "FAILED, the model is not promoted:\n  " + "\n  ".join(result.failures)
        on_event(Event(stage="gate", status="failed", message=message + checks, **where))
        return result
    promote_run(project, run)
    message = f"passed ({len(result.checks)} checks); promoted {run.run_id}{checks}"
    on_event(Event(stage="gate", status="done", message=message, **where))
    return result


def promoted_with(project: Project, run: RunArtifact, mode: str) -> str | None:
    """The promoted run a mode goes with: this run for a tuned mode, else the one promoted
    before (the mode no longer applies once `shoptalk models promote` changes it)."""
    if mode.startswith("tuned"):
        return run.run_id
    pointer = project.promoted_run_file
    return (pointer.read_text(encoding="utf-8").strip() or None) if pointer.is_file() else None
