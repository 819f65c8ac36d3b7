"""Progress off a terminal: a plain line with count, rate and ETA every interval, then the total."""

from __future__ import annotations

import logging

import pytest

from shoptalk import progress
from shoptalk.errors import ShoptalkError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    return fake


def test_a_line_every_interval_with_count_rate_and_eta_then_the_total(clock, capsys, caplog):
    caplog.set_level(logging.INFO, logger="shoptalk.progress")
    with progress.Task("eval: base answers", total=100) as task:
        for _ in range(100):
            clock.now += 0.5  # two answers a second
            task.advance()

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "eval: base answers: 20/100, 2/s, ETA 00:40"
    assert lines[1] == "eval: base answers: 40/100, 2/s, ETA 00:30"
    assert lines[-1] == "eval: base answers: 100/100, 2/s, in 00:50"
    assert len(lines) == 5, "every 10 s of 50; the last one is the total"
    assert [r.getMessage() for r in caplog.records] == lines, "the log has every line too"


def test_a_phase_shorter_than_the_interval_says_nothing(clock, capsys):
    for _ in progress.track(range(50), "index: embedding chunks"):
        clock.now += 0.1
    assert capsys.readouterr().err == ""


def test_track_counts_an_item_by_its_size_and_the_interval_comes_from_the_environment(
    clock, capsys, monkeypatch
):
    monkeypatch.setenv(progress.INTERVAL_ENV, "2")
    batches = [list(range(32))] * 3 + [list(range(4))]
    for _ in progress.track(batches, "index: embedding chunks", total=100, size=len):
        clock.now += 1.0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "index: embedding chunks: 64/100, 32/s, ETA 00:01",
        "index: embedding chunks: 100/100, 25/s, in 00:04",
    ]


def test_no_phase_no_lines_and_hours_read_as_hours(clock, capsys):
    for _ in progress.track(range(3), None):
        clock.now += 100
    assert capsys.readouterr().err == ""
    assert (
        progress.line("sft: training", 1, 1001, 10.0) == "sft: training: 1/1001, 0.1/s, ETA 2:46:40"
    )


def test_fields_follow_and_a_failed_phase_has_no_total_line(clock, capsys):
    with pytest.raises(RuntimeError), progress.Task("sft: training", total=10) as task:
        clock.now += 11
        task.update(3, "loss 2.100, 900 tok/s")
        raise RuntimeError("stopped")
    assert capsys.readouterr().err.splitlines() == [
        "sft: training: 3/10, 0.273/s, ETA 00:26, loss 2.100, 900 tok/s"
    ]


def test_a_bad_interval_names_the_variable(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    with pytest.raises(ShoptalkError, match="SHOPTALK_PROGRESS_SECONDS"):
        progress.interval()
