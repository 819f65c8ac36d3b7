"""Progress lines: count, rate and ETA at most every `every` seconds, and one at the end."""

from __future__ import annotations

from shoptalk.export.progress import Progress, duration


def test_lines_say_count_rate_and_eta_then_the_total_time() -> None:
    now = [0.0]
    said: list[str] = []
    progress = Progress(said.append, "parity   gguf q8_0", 100, every=10.0, clock=lambda: now[0])

    for _ in range(100):
        now[0] += 0.5  # two prompts a second
        progress.advance()

    assert said[0] == "parity   gguf q8_0: 20/100 prompts, 2 prompts/s, ETA 40s"
    assert said[1] == "parity   gguf q8_0: 40/100 prompts, 2 prompts/s, ETA 30s"
    assert said[-1] == "parity   gguf q8_0: 100/100 prompts in 50s (2 prompts/s)"
    assert len(said) == 5  # every 10 s of 50, the last one being the total


def test_durations_read_as_people_write_them() -> None:
    assert [duration(s) for s in (4.4, 75, 3600 + 125)] == ["4s", "1m 15s", "1h 02m"]
