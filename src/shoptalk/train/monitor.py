"""What a run records while it trains: memory beside each step, and early stopping.

Early stopping keeps its state in `metrics.jsonl` (the validation losses) and
the best weights in `best.pt`, so a resumed run rebuilds the same decisions
from what it already wrote instead of needing new fields in checkpoints.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from pathlib import Path

import torch

from shoptalk.artifacts import read_metrics
from shoptalk.train.checkpoint import Trainable

log = logging.getLogger(__name__)

BEST = "best.pt"


def memory_record(device: str) -> dict[str, float]:
    """Current and peak resident memory of this process (and CUDA's peak), in MB."""
    import psutil

    record = {
        "rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if device.startswith("cuda"):
        record["cuda_max_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return record


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    On Linux, VmHWM: Linux carries ru_maxrss across exec, so a run started by a
    big parent (a test runner, a server) would report the parent's size.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class EarlyStopping:
    """Stop after `patience` evaluations without a validation loss lower than the best by `min_delta`."""

    def __init__(self, patience: int | None, min_delta: float) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = float("inf")
        self.best_step: int | None = None
        self.bad_evals = 0

    @property
    def enabled(self) -> bool:
        return self.patience is not None

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.bad_evals >= self.patience

    def update(self, step: int, val_loss: float) -> bool:
        """Record an evaluation; True if it is the new best."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.bad_evals = val_loss, step, 0
            return True
        self.bad_evals += 1
        return False

    def replay(self, metrics_path: Path) -> None:
        """Rebuild the state from the validation losses a resumed run already logged."""
        for record in read_metrics(metrics_path):
            if "val_loss" in record:
                self.update(record["step"], record["val_loss"])

    def summary(self, stopped_at: int | None) -> dict:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "stopped_at_step": stopped_at,
            "best_step": self.best_step,
            "best_val_loss": None if self.best_step is None else round(self.best_loss, 5),
        }


def save_best(run_dir: Path, step: int, trainable: Trainable, write: bool = True) -> None:
    """Keep the trainable weights of the best evaluation (temp file + rename).

    Only where `write`, but sharded weights are gathered by every process.
    """
    if not (write or trainable.sharded):
        return
    state = {"step": step, "trainable": trainable.weights()}
    if not write:
        return
    tmp = run_dir / f".{BEST}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run_dir / BEST)


def restore_best(run_dir: Path, trainable: Trainable) -> int | None:
    """Load the best weights back into the model; returns their step (None if there are none)."""
    path = run_dir / BEST
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    trainable.load_weights(state["trainable"])
    log.info("final weights are the best evaluation's, from step %d", state["step"])
    return int(state["step"])
