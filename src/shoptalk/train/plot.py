"""`loss.png`: training and validation loss against the step, redrawn at each evaluation."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shoptalk.artifacts import read_metrics


def plot_losses(metrics_path: Path, target: Path) -> Path:
    """Draw `metrics.jsonl` into a PNG at `target` (written atomically)."""
    # The object API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_metrics(metrics_path)
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([r["step"] for r in records], [r["loss"] for r in records], label="train loss")
    val = [r for r in records if "val_loss" in r]
    if val:
        axes.plot(
            [r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss"
        )
    axes.set_xlabel("step")
    axes.set_ylabel("loss (per labelled token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    tmp = target.with_name(f".{target.name}.tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, target)
    return target


class LossPlot:
    """Redraws the plot at evaluations, but at most every `interval` seconds.

    Drawing takes a few tenths of a second: nothing beside a real model's step,
    but more than a tiny model's, which may evaluate every few steps.
    """

    def __init__(self, metrics_path: Path, target: Path, interval: float = 10.0) -> None:
        self.metrics_path, self.target, self.interval = metrics_path, target, interval
        self.last = float("-inf")

    def update(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.interval:
            plot_losses(self.metrics_path, self.target)
            self.last = time.monotonic()
