"""Continued pretraining: the SFT recipe on the project's document text alone.

    shoptalk.yaml:  train: {recipe: cpt}

Every token of every document section is a target (`render.encode_text`), so the
model reads the organization's documents the way it read its pretraining data.
It is the SFT recipe, not a copy of it: the same packing, frozen-layer cache,
loss at labelled positions, plan, checkpoints and resume; only the data differs.
The data is a view of the dataset: its document text with no conversations. The
pipeline (`pipeline.inputs`) chooses this view and runs `sft.run` on it.
"""

from __future__ import annotations

import shutil

from shoptalk.artifacts import DatasetArtifact, write_atomic
from shoptalk.errors import ConfigError

VIEW = "cpt"


def document_view(dataset: DatasetArtifact) -> DatasetArtifact:
    """`<dataset>/cpt/`: the dataset's document text and empty train/val conversation files."""
    text = dataset.text_file
    if not text.is_file() or not text.read_text(encoding="utf-8").strip():
        raise ConfigError(
            f"train.recipe 'cpt' trains on document text, but {text} has none: list documents "
            "under sources.docs and keep data.document_text on in shoptalk.yaml."
        )
    view = DatasetArtifact(path=dataset.path / VIEW, hash=f"{dataset.hash}-{VIEW}")
    if not view.text_file.is_file():
        tmp = DatasetArtifact(path=dataset.path / f".{VIEW}.tmp", hash=view.hash)
        shutil.rmtree(tmp.path, ignore_errors=True)
        tmp.path.mkdir()
        for split in ("train", "val"):
            write_atomic(tmp.split_file(split), "")
        # The text is copied last: its presence marks a complete view.
        shutil.copyfile(text, tmp.text_file)
        shutil.rmtree(view.path, ignore_errors=True)
        tmp.path.rename(view.path)
    return view
