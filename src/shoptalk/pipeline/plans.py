"""What a build would train, stage by stage, before it starts: `shoptalk train --plan` and
the console's plan. It follows the recipe: SFT (then DPO when there are pairs), CPT or DPO."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shoptalk.artifacts import RunArtifact
from shoptalk.config.train import Recipe
from shoptalk.pipeline.events import Stage
from shoptalk.pipeline.inputs import InputKind


class StagePlan(BaseModel):
    """One training stage's plan, with every "auto" setting resolved."""

    stage: Stage
    run_id: str
    trained: bool = Field(description="Already trained: a build skips it")
    method: str
    total_steps: int
    tokens_per_step: int
    learning_rate: float
    epochs: float
    estimated_seconds: float | None = Field(None, description="None: no estimate for DPO")
    peak_memory_bytes: int | None = None
    memory_available_bytes: int | None = None
    text: str = Field(description="The plan as `shoptalk train --plan` prints it")


class BuildPlan(BaseModel):
    recipe: Recipe
    input: InputKind = Field(description="plain, raft or cpt: the view of the dataset trained on")
    dataset_hash: str
    stages: list[StagePlan]

    @property
    def method(self) -> str:
        return self.stages[0].method

    @property
    def total_steps(self) -> int:
        return sum(s.total_steps for s in self.stages if not s.trained)

    @property
    def estimated_seconds(self) -> float:
        """The stages still to train whose time is estimated (DPO's is not)."""
        return sum(s.estimated_seconds or 0.0 for s in self.stages if not s.trained)

    @property
    def peak_memory_bytes(self) -> int:
        return max((s.peak_memory_bytes or 0 for s in self.stages), default=0)

    @property
    def memory_available_bytes(self) -> int:
        return max((s.memory_available_bytes or 0 for s in self.stages), default=0)

    def render(self) -> str:
        lines = [f"input    {self.input} dataset {self.dataset_hash}"]
        for s in self.stages:
            done = "  (trained: a build skips it)" if s.trained else ""
            lines += [f"{s.stage:<8} {s.run_id}{done}", s.text]
        return "\n".join(lines)


def stage_plan(stage: Stage, run: RunArtifact, method: str, plan, **estimates) -> StagePlan:
    """A stage plan for `run` from the SFT loop's `TrainPlan` or DPO's `PairPlan`.

    `estimates`: time and memory (`estimated_seconds`, `peak_memory_bytes`,
    `memory_available_bytes`); SFT's plan has them, DPO's none.
    """
    return StagePlan(
        stage=stage,
        run_id=run.run_id,
        trained=run.done,
        method=method,
        total_steps=plan.total_steps,
        tokens_per_step=plan.tokens_per_step,
        learning_rate=plan.learning_rate,
        epochs=plan.epochs,
        text=plan.render(),
        **estimates,
    )
