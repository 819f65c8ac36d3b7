"""Monitoring: memory in metrics.jsonl, validation every eval_every steps, early stopping, trackers."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from peft import PeftModel

from shoptalk.errors import MissingExtraError
from shoptalk.modeling.load import load_model, load_tokenizer
from shoptalk.pipeline import prepare_dataset
from shoptalk.pipeline import train as run_train
from shoptalk.project import Project
from shoptalk.train import checkpoint, monitor, sft
from shoptalk.train.trackers import open_trackers

from projects import write_project


def test_early_stopping_counts_evaluations_without_improvement_by_min_delta():
    stopper = monitor.EarlyStopping(patience=2, min_delta=0.1)
    assert stopper.update(1, 2.0)
    assert not stopper.update(2, 1.95), "better, but not by min_delta"
    assert not stopper.should_stop
    assert stopper.update(3, 1.8)
    assert not stopper.update(4, 1.85)
    assert not stopper.update(5, 1.75)
    assert stopper.should_stop
    assert (stopper.best_step, stopper.best_loss) == (3, 1.8)


def test_early_stopping_state_is_rebuilt_from_the_metrics_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    losses = {2: 3.0, 4: 2.5, 6: 2.6}
    path.write_text(
        "".join(
            json.dumps({"step": s, "loss": 1.0} | ({"val_loss": losses[s]} if s in losses else {}))
            + "\n"
            for s in range(1, 7)
        )
    )
    stopper = monitor.EarlyStopping(patience=3, min_delta=0.0)
    stopper.replay(path)
    assert (stopper.best_step, stopper.best_loss, stopper.bad_evals) == (4, 2.5, 1)


def test_a_run_stops_early_and_keeps_the_best_weights(tmp_path, tiny_model, one_thread):
    # min_delta is huge, so no evaluation after the first counts as better:
    # the run stops at the second evaluation and its final weights are the first's.
    root = write_project(
        tmp_path / "p",
        tiny_model,
        epochs=10,
        eval_every=1,
        early_stopping_patience=1,
        early_stopping_min_delta=100.0,
    )
    project = Project.open(root)
    dataset = prepare_dataset(project)
    run = run_train(project, dataset=dataset)

    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2], "stopped at the second evaluation"
    assert all("val_loss" in r and r["rss_mb"] > 0 and r["peak_rss_mb"] > 0 for r in records)
    card = json.loads((run.path / "card.json").read_text())
    assert (
        card["early_stopping"].items()
        >= {
            "stopped_at_step": 2,
            "best_step": 1,
            "final_weights_step": 1,
        }.items()
    )
    assert card["final_val_loss"] == records[0]["val_loss"]
    assert (run.path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run.path / monitor.BEST).exists() and not (run.path / "checkpoints").exists()

    # The saved model really is step 1's: its validation loss is step 1's, not step 2's.
    tokenizer = load_tokenizer(str(tiny_model))
    model = PeftModel.from_pretrained(load_model(str(tiny_model), "cpu", torch.float32), run.final)
    val_rows = sft.prepare_rows(tokenizer, dataset, project.config, "val", with_text=False)
    settings = project.config.train.model_copy(update={"tokens_per_step": 256})
    val_loss = sft.evaluate(model, val_rows, tokenizer, settings, "cpu")
    assert val_loss == pytest.approx(records[0]["val_loss"], abs=1e-4)
    assert abs(val_loss - records[1]["val_loss"]) > 1e-3


def test_early_stopping_continues_correctly_after_a_resume(tmp_path, tiny_model, one_thread):
    # Crash after step 1; the resumed run must remember step 1 was the best and stop at 2.
    root = write_project(
        tmp_path / "p",
        tiny_model,
        epochs=10,
        eval_every=1,
        checkpoint_every=1,
        early_stopping_patience=1,
        early_stopping_min_delta=100.0,
    )
    project = Project.open(root)
    dataset = prepare_dataset(project)
    crashed = run_train(project, dataset=dataset, stop_after=1)
    assert not crashed.final.exists()
    run = run_train(project, dataset=dataset)
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    card = json.loads((run.path / "card.json").read_text())
    assert card["early_stopping"]["final_weights_step"] == 1


class Killed(Exception):
    """A SIGTERM at the worst moment: right after a checkpoint was written."""


def test_a_kill_right_after_a_checkpoint_loses_no_step_record(
    tmp_path, tiny_model, one_thread, monkeypatch
):
    root = write_project(tmp_path / "p", tiny_model, epochs=1, checkpoint_every=1)
    project = Project.open(root)
    dataset = prepare_dataset(project)
    save = checkpoint.save

    def save_then_die(ckpt_dir, step, *args, **kwargs):
        save(ckpt_dir, step, *args, **kwargs)
        if step == 2:
            raise Killed

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run_train(project, dataset=dataset)
    monkeypatch.undo()
    run = run_train(project, dataset=dataset)
    steps = [
        json.loads(line)["step"] for line in (run.path / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(steps) > 2 and steps == list(range(1, len(steps) + 1)), "no step lost or repeated"


def test_validation_runs_every_eval_every_steps_not_only_at_checkpoints(
    tmp_path, tiny_model, one_thread
):
    root = write_project(tmp_path / "p", tiny_model, epochs=2, eval_every=1, checkpoint_every=50)
    project = Project.open(root)
    run = run_train(project, dataset=prepare_dataset(project))
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) > 2 and all("val_loss" in r for r in records)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)
def test_tensorboard_gets_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tracker,) = open_trackers(["tensorboard"], tmp_path, {})
    tracker.log({"step": 1, "loss": 2.5, "lr": 1e-3})
    tracker.log({"step": 2, "loss": 2.0, "val_loss": 2.2})
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("loss")] == [2.5, 2.0]
    assert [e.step for e in events.Scalars("val_loss")] == [2]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_a_missing_tracker_names_the_package_to_install(tmp_path):
    with pytest.raises(MissingExtraError, match=r"pip install 'shoptalk\[mlflow\]'"):
        open_trackers(["mlflow"], tmp_path, {})


def test_peak_memory_is_the_runs_own_not_its_parents():
    """Linux carries ru_maxrss across exec; a run started by a big parent must not report it."""
    import subprocess
    import sys

    ballast = b"\x01" * (800 * 2**20)  # this process (the "parent") grows by 800 MB
    code = "from shoptalk.train.monitor import peak_rss_mb; print(peak_rss_mb())"
    child = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert child < 800 and len(ballast) == 800 * 2**20
