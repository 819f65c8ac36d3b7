"""The plan's time estimate is corrected once, from the pace the first steps really took,
and what a build shows from then on stays within 1.5x of the real time (issue 19)."""

from __future__ import annotations

import functools
import io
import itertools
import random
import re

from rich.console import Console

from shoptalk import progress
from shoptalk.artifacts import RunArtifact
from shoptalk.cli import ShowEvents
from shoptalk.pipeline import stages
from shoptalk.pipeline.pace import CHECK_SECONDS, CHECK_STEPS, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_plans_hours_become_the_measured_minutes_after_a_few_steps():
    clock = Clock()
    pace = Pace(planned_seconds=3.8 * 3600, total=100, clock=clock)
    said = []
    for step, seconds in enumerate([40.0, 11.0, 12.0, 11.5, 50.0, 11.0], start=1):
        clock.now += seconds
        said.append(pace.step(step))

    # The first step (warm-up) is not timed; three steps after it are.
    assert said[:CHECK_STEPS] == [None] * CHECK_STEPS
    assert said[CHECK_STEPS] == (
        "time     ~18 min left (steps 2-4 took 11.5 s each; the plan estimated ~3.8 h, "
        "this pace ~19 min)"
    )
    assert said[CHECK_STEPS + 1 :] == [None, None], "said once"


def test_slow_steps_are_corrected_after_the_seconds_limit_and_a_resumed_run_counts_from_its_step():
    clock = Clock()
    pace = Pace(planned_seconds=60.0, total=50, clock=clock)
    clock.now += 5
    assert pace.step(21) is None
    clock.now += CHECK_SECONDS
    said = pace.step(22)
    assert said is not None and said.startswith("time     ~14 min left (step 22 took 30 s;")
    assert "the plan estimated ~60 s" in said


def test_a_run_without_a_planned_time_is_still_given_one_and_the_last_step_says_nothing():
    clock = Clock()
    pace = Pace(planned_seconds=None, total=2, clock=clock)
    clock.now += 1
    assert pace.step(1) is None
    clock.now += 100
    assert pace.step(2) is None, "nothing left to estimate"
    pace = Pace(planned_seconds=None, total=9, clock=clock)
    for step in range(1, 5):
        clock.now += 2
        note = pace.step(step)
    assert note == "time     ~10 s left (steps 2-4 took 2 s each)"


class Plan:
    """What the training stage reads of a plan: its steps, its time estimate, its text."""

    def __init__(self, total_steps: int, estimated_seconds: float) -> None:
        self.total_steps, self.estimated_seconds = total_steps, estimated_seconds

    def render(self) -> str:
        return f"plan     {self.total_steps} steps, time ~{self.estimated_seconds / 3600:.1f} h"


def step_seconds(total: int) -> list[float]:
    """A real run's step times, in the shape a build sees them (seeded).

    A slow first step (threads, caches, allocator), ~11 s steps with +-10% noise,
    an evaluation and a checkpoint every 25 steps (+23 s), and from the middle on
    another job on the same cores (+20%).
    """
    rng = random.Random(7)
    times = []
    for step in range(1, total + 1):
        seconds = 11.0 * rng.uniform(0.9, 1.1) * (1.2 if step > total // 2 else 1.0)
        if step == 1:
            seconds += 30.0
        if step % 25 == 0:
            seconds += 23.0
        times.append(seconds)
    return times


def as_seconds(clock_text: str) -> float:
    parts = [int(p) for p in clock_text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def test_the_training_estimate_shown_from_the_correction_on_stays_within_1_5x_of_the_real_time(
    tmp_path, monkeypatch, capsys
):
    """Issue 19's bar, through the training stage and the CLI's lines as a build shows them."""
    clock = Clock()
    monkeypatch.setattr(stages, "Pace", functools.partial(Pace, clock=clock))
    monkeypatch.setattr(progress.time, "monotonic", clock)
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")  # a line at every step
    total = 100
    # The plan's matmul rate was measured while another job ran: 3.8 h for a ~22 min run.
    plan = Plan(total, 3.8 * 3600)
    durations = step_seconds(total)
    real = sum(durations)
    assert not real / 1.5 <= plan.estimated_seconds <= real * 1.5, "the case the bar is about"
    run = RunArtifact.at(tmp_path / "run")

    def fit(on_plan, on_step) -> RunArtifact:
        on_plan(plan)
        for step, seconds in enumerate(durations, start=1):
            clock.now += seconds
            on_step(step, total, {"loss": 1.0, "tokens_per_s": 300.0})
        run.final.mkdir(parents=True)
        return run

    console = Console(file=io.StringIO(), width=200)
    with ShowEvents(console) as show:
        stages.train_stage("sft", run, show, fit)

    printed = console.file.getvalue()
    (correction,) = re.findall(r"steps 2-4 took ([\d.]+) s each; the plan estimated", printed)
    assert real / 1.5 <= float(correction) * total <= real * 1.5, (correction, real)
    # Every line from the correction on: the time it says the whole run takes.
    elapsed = list(itertools.accumulate(durations))
    said = []
    for line in capsys.readouterr().err.splitlines():
        found = re.match(r"sft: training: (\d+)/\d+, .*, ETA ([\d:]+),", line)
        if found and int(found[1]) >= 4:
            step = int(found[1])
            said.append(elapsed[step - 1] + as_seconds(found[2]))
    assert len(said) == total - 4, "a line at every step until the last"
    worst = max(max(s / real, real / s) for s in said)
    assert worst <= 1.5, f"an estimate {worst:.2f}x off the real {real:.0f} s"
