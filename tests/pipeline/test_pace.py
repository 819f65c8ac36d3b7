"""The plan's time estimate is corrected once, from the pace the first steps really took."""

from __future__ import annotations

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
