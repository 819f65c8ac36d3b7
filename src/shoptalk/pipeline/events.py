"""Progress as typed events: what the CLI prints and the console's build page stores.

Every stage says `started`, then `done` (or `skipped` when its output already
exists for the same inputs, or `failed`); training stages say `progress` once
with their plan and then at every step with the step's metrics. A `warning` is
something the user should know before it costs them hours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

Stage = Literal["base", "dataset", "index", "input", "sft", "cpt", "dpo", "eval", "gate"]
STAGES: tuple[Stage, ...] = (
    "base",
    "dataset",
    "index",
    "input",
    "sft",
    "cpt",
    "dpo",
    "eval",
    "gate",
)
TRAINING_STAGES: tuple[Stage, ...] = ("sft", "cpt", "dpo")
Status = Literal["started", "skipped", "progress", "done", "failed", "warning"]


def now() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    """One thing a stage of the pipeline reports."""

    stage: Stage = Field(description="The stage that reports")
    status: Status = Field(description="started, skipped, progress, done, failed or warning")
    run: str | None = Field(None, description="The run folder a training stage writes")
    input_hash: str | None = Field(
        None, description="What names the stage's output: a dataset hash, a run id"
    )
    artifact: str | None = Field(None, description="The folder or file the stage wrote or reused")
    step: int | None = Field(None, description="Training: the step just done")
    total: int | None = Field(None, description="Training: the run's total steps")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Training: the step's metrics record"
    )
    message: str = Field("", description="What happened, for a person")
    time: datetime = Field(default_factory=now)

    def line(self) -> str:
        """The event as one line of `shoptalk build` output."""
        return f"{self.stage:<8} {self.message}".rstrip()


OnEvent = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default listener: events are not needed by every caller."""
