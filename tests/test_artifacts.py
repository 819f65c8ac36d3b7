"""artifacts.py: one reader and writer per file of `.shoptalk/`, every write atomic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from shoptalk import artifacts
from shoptalk.artifacts import (
    DatasetArtifact,
    MetricsLog,
    RunArtifact,
    keep_metrics_until,
    read_metrics,
)
from shoptalk.train import checkpoint


def test_metrics_are_appended_read_and_cut_back_atomically(tmp_path, monkeypatch):
    run = RunArtifact.at(tmp_path / "run-x")
    with MetricsLog(run.metrics_file) as log:
        for step in range(1, 5):
            log.write({"step": step, "loss": 1.0 / step, "tokens": 10, "tokens_per_s": 10.0})
    # A line being appended while a reader reads is not a record yet.
    with run.metrics_file.open("a") as f:
        f.write('{"step": 5, "lo')
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4]

    # A resume cuts the records after its checkpoint; a crash while rewriting keeps the old file.
    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.os, "replace", crash)
    with pytest.raises(OSError):
        keep_metrics_until(run.metrics_file, 2)
    assert [r["step"] for r in read_metrics(run.metrics_file)] == [1, 2, 3, 4]
    monkeypatch.undo()
    keep_metrics_until(run.metrics_file, 2)
    assert run.metrics_file.read_text().splitlines() == [json.dumps(r) for r in run.metrics()] and [
        r["step"] for r in run.metrics()
    ] == [1, 2]
    assert list(tmp_path.glob("run-x/.*")) == [], "no temporary file left behind"


def test_time_left_comes_from_the_plan_and_the_recent_pace(tmp_path):
    run = RunArtifact.at(tmp_path / "run-x")
    records = [{"step": s, "tokens": 100, "tokens_per_s": 50.0} for s in (1, 2)]
    assert run.seconds_left(records) is None, "no plan yet"
    run.write_plan({"total_steps": 5})
    assert run.seconds_left(records) == pytest.approx(3 * 2.0)


def test_a_checkpoints_weights_are_a_file_of_their_own(tmp_path):
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    trainable = checkpoint.Trainable(dict(layer.named_parameters()), optimizer)
    run = RunArtifact.at(tmp_path / "run-x")
    saved = checkpoint.save(run.checkpoints, 3, trainable, scheduler, keep=1)
    assert run.checkpoint_folders() == [saved] and artifacts.checkpoint_step(saved) == 3
    # Plain tensors: loadable without unpickling the optimizer's or RNG's state.
    weights = torch.load(saved / artifacts.CHECKPOINT_WEIGHTS, weights_only=True)
    assert weights.keys() == {"weight", "bias"}
    with torch.no_grad():
        layer.weight.zero_()
    assert checkpoint.restore(saved, trainable, scheduler) == 3
    assert torch.equal(layer.weight, weights["weight"])


def test_the_jobs_worker_imports_no_training_code():
    code = "import sys, shoptalk.jobs.worker; print(sorted(m for m in sys.modules if m in "
    code += "('torch', 'shoptalk.train.checkpoint', 'shoptalk.train')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "named", ["0123456789abcdef", "0123456789abcdef-raft-1a2b3c4d", "0123456789abcdef-cpt"]
)
def test_a_run_trained_on_a_view_finds_the_dataset_the_view_was_made_from(tmp_path, named):
    dataset = DatasetArtifact.of_run(tmp_path, named)
    assert dataset.path == tmp_path / "0123456789abcdef" and dataset.hash == "0123456789abcdef"
    assert DatasetArtifact.of_run(tmp_path, "").path == tmp_path / "none", "no dataset recorded"
