"""loss.png: drawn from metrics.jsonl, written atomically, redrawn as the run goes."""

from __future__ import annotations

import json

from matplotlib.image import imread

from shoptalk.train.plot import LossPlot, plot_losses


def write_metrics(path, steps: int) -> None:
    path.write_text(
        "".join(
            json.dumps({"step": s, "loss": 3.0 / s} | ({"val_loss": 3.2 / s} if s % 2 == 0 else {}))
            + "\n"
            for s in range(1, steps + 1)
        )
    )


def test_the_plot_is_a_png_of_the_losses_and_is_redrawn(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    write_metrics(metrics, 4)
    target = plot_losses(metrics, tmp_path / "loss.png")
    first = target.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(target).shape[:2] == (400, 700)
    write_metrics(metrics, 8)
    plot_losses(metrics, target)
    assert target.read_bytes() != first, "a longer run draws a different curve"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "metrics.jsonl"]


def test_a_run_without_validation_plots_the_training_loss(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    assert plot_losses(metrics, tmp_path / "loss.png").stat().st_size > 1000


def test_redrawing_is_throttled_but_the_last_drawing_is_forced(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    write_metrics(metrics, 2)
    plot = LossPlot(metrics, tmp_path / "loss.png", interval=3600)
    plot.update()
    first = (tmp_path / "loss.png").read_bytes()
    write_metrics(metrics, 8)
    plot.update()
    assert (tmp_path / "loss.png").read_bytes() == first, "within the interval: not redrawn"
    plot.update(force=True)
    assert (tmp_path / "loss.png").read_bytes() != first
