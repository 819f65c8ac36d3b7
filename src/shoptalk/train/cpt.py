"""Continued pretraining: the SFT recipe on the project's document text alone.

    shoptalk.yaml:  train: {recipe: cpt}

Every token of every document section is a target (`render.encode_text`), so the
model reads the organization's documents the way it read its pretraining data.
It is the SFT recipe, not a copy of it: the same packing, frozen-layer cache,
loss at labelled positions, plan, checkpoints and resume; only the data differs.
The data is a view of the dataset: its `text.jsonl` with no conversations.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shoptalk.artifacts import DatasetArtifact, RunArtifact, write_atomic
from shoptalk.config import ShoptalkConfig
from shoptalk.errors import ConfigError

VIEW = "cpt"


def document_view(dataset: DatasetArtifact) -> DatasetArtifact:
    """`<dataset>/cpt/`: the dataset's document text and empty train/val conversation files."""
    text = dataset.path / "text.jsonl"
    if not text.is_file() or not text.read_text(encoding="utf-8").strip():
        raise ConfigError(
            f"train.recipe 'cpt' trains on document text, but {text} has none: list documents "
            "under sources.docs and keep data.document_text on in shoptalk.yaml."
        )
    view = dataset.path / VIEW
    if not (view / "text.jsonl").is_file():
        tmp = dataset.path / f".{VIEW}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        shutil.copyfile(text, tmp / "text.jsonl")
        for split in ("train", "val"):
            write_atomic(tmp / f"{split}.jsonl", "")
        shutil.rmtree(view, ignore_errors=True)
        tmp.rename(view)
    return DatasetArtifact(path=view, hash=f"{dataset.hash}-{VIEW}")


def run(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    run_dir: Path,
    stop_after: int | None = None,
) -> RunArtifact:
    """Train `base_path` on the dataset's document text into `run_dir`; resumes like SFT."""
    from shoptalk.train import sft

    return sft.run(cfg, document_view(dataset), base_path, run_dir, stop_after=stop_after)
