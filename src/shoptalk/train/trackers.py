"""Optional experiment trackers (TensorBoard, MLflow), fed the same records as metrics.jsonl.

Both are extras: imported only when `train.trackers` names them, with the
install command in the error when they are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shoptalk.errors import MissingExtraError


class Tracker(Protocol):
    def log(self, record: dict) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MissingExtraError(
                "train.trackers lists 'tensorboard', which is not installed: "
                "pip install 'shoptalk[tensorboard]' (or pip install tensorboard)"
            ) from exc
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        for key, value in numbers(record).items():
            self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, run_name: str, params: dict) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise MissingExtraError(
                "train.trackers lists 'mlflow', which is not installed: "
                "pip install 'shoptalk[mlflow]' (or pip install mlflow)"
            ) from exc
        self.mlflow = mlflow
        # The tracking server comes from MLFLOW_TRACKING_URI, as everywhere in MLflow.
        mlflow.set_experiment("shoptalk")
        mlflow.start_run(run_name=run_name)
        mlflow.log_params(params)

    def log(self, record: dict) -> None:
        self.mlflow.log_metrics(numbers(record), step=record["step"])

    def close(self) -> None:
        self.mlflow.end_run()


def numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, int | float)}


def open_trackers(names: list[str], run_dir: Path, params: dict) -> list[Tracker]:
    trackers: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoard(run_dir))
        else:
            flat = {k: v for k, v in params.items() if isinstance(v, str | int | float | bool)}
            trackers.append(MLflow(run_dir.name, flat))
    return trackers
