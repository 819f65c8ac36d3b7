"""The plan: automatic settings for a few model/dataset sizes, and estimates against a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tiny_model import build_tiny_model

from shoptalk.config import TrainSettings
from shoptalk.train.plan import DataShape, Hardware, ModelShape, make_plan

from projects import write_project

GB = 2**30
CPU = Hardware(device="cpu", memory_bytes=24 * GB, flops_per_s=186e9)
GPU = Hardware(device="cuda", memory_bytes=80 * GB, flops_per_s=300e12)


def smollm2_135m(first_trainable: int = 14) -> ModelShape:
    """The default model with the top 16 of 30 layers fully trained (the example's run)."""
    layer = 3_540_096
    head = 49_152 * 576
    return ModelShape(
        total_params=30 * layer + head + 576,
        weight_bytes=(30 * layer + head + 576) * 4,
        trainable_params=(30 - first_trainable) * layer,
        layer_params=layer,
        n_layers=30,
        first_trainable=first_trainable,
        head_params=head,
        head_trainable=False,
        hidden=576,
        intermediate=1536,
        lora=False,
    )


def llama_7b() -> ModelShape:
    layer = 202_383_360
    return ModelShape(
        total_params=32 * layer + 2 * 32_000 * 4096,
        weight_bytes=(32 * layer + 2 * 32_000 * 4096) * 4,
        trainable_params=40_000_000,
        layer_params=layer,
        n_layers=32,
        first_trainable=0,
        head_params=32_000 * 4096,
        head_trainable=False,
        hidden=4096,
        intermediate=11008,
        lora=True,
    )


def data(tokens: int, max_seq_len: int = 512, cache: int = 0) -> DataShape:
    return DataShape(
        rows=max(1, tokens // (max_seq_len - 12)),
        tokens=tokens,
        labelled_tokens=tokens // 2,
        cache_bytes=cache,
    )


def test_auto_picks_the_measured_example_settings_for_the_default_model():
    example = data(74_523, cache=74_523 * 576 * 4)
    plan = make_plan(smollm2_135m(), example, TrainSettings(), CPU)
    assert (plan.tokens_per_step, plan.learning_rate, plan.epochs) == (4096, 3e-4, 2.0)
    assert plan.auto == ["tokens_per_step", "learning_rate", "epochs"]
    assert plan.total_steps == 38, "19 steps x 2 epochs"
    assert not plan.gradient_checkpointing
    # Recorded: ~220 real tokens/s on this 2-core CPU, so ~11 min for 2 x 74.5k tokens.
    assert 6 * 60 < plan.estimated_seconds < 20 * 60


def test_auto_scales_with_model_and_dataset_size():
    big = make_plan(llama_7b(), data(50_000_000, 2048), TrainSettings(max_seq_len=2048), GPU)
    assert big.tokens_per_step == 16384 and big.epochs == 1.0
    assert 1e-4 <= big.learning_rate < 3e-4, "LoRA on a big model: a smaller rate"
    full = TrainSettings(method="full", trainable_layers=None)
    full_big = make_plan(llama_7b().model_copy(update={"lora": False}), data(5_000_000), full, GPU)
    assert full_big.learning_rate < 1e-4 and full_big.epochs == 2.0
    tiny_data = make_plan(smollm2_135m(), data(3_000), TrainSettings(), CPU)
    assert tiny_data.tokens_per_step == 512, "few tokens: small steps, so an epoch has several"


def test_explicit_settings_are_kept():
    settings = TrainSettings(tokens_per_step=1024, learning_rate=1e-3, epochs=5)
    plan = make_plan(smollm2_135m(), data(74_523), settings, CPU)
    assert (plan.tokens_per_step, plan.learning_rate, plan.epochs, plan.auto) == (
        1024,
        1e-3,
        5.0,
        [],
    )
    resolved = plan.resolve(settings)
    assert resolved.tokens_per_step == 1024 and resolved.gradient_checkpointing is False


def test_gradient_checkpointing_only_when_memory_is_short():
    settings = TrainSettings(method="full", trainable_layers=None, tokens_per_step=4096)
    roomy = make_plan(smollm2_135m(0), data(10_000_000), settings, CPU)
    assert not roomy.gradient_checkpointing
    short = Hardware(device="cpu", memory_bytes=roomy.memory.total - GB, flops_per_s=186e9)
    tight = make_plan(smollm2_135m(0), data(10_000_000), settings, short)
    assert tight.gradient_checkpointing
    assert tight.memory.activations < roomy.memory.activations / 4
    assert "gradient checkpointing: on" in tight.render()


def test_the_plan_shows_method_steps_and_estimates():
    text = make_plan(smollm2_135m(), data(74_523), TrainSettings(), CPU).render()
    for words in ("full on cpu", "56.6M of 134.5M", "38 steps", "lr 0.0003", "time ~", "GB"):
        assert words in text, words


def test_estimates_match_a_real_run(tmp_path):
    """One epoch of full fine-tuning of a ~21M-parameter random model, in a fresh process."""
    model = build_tiny_model(tmp_path / "model", layers=4, hidden=768)
    root = write_project(
        tmp_path / "p",
        model,
        method="full",
        trainable_layers=None,
        epochs=1,
        tokens_per_step=1024,
        max_seq_len=128,
        learning_rate=1e-4,
    )
    # A fresh process, so its peak RSS is this run's alone.
    done = subprocess.run(
        [sys.executable, "-m", "shoptalk.cli", "train", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "plan     full on cpu" in done.stdout
    log = (root / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    plan = json.loads(log.split("plan: ")[1].splitlines()[0])
    (run,) = (root / ".shoptalk" / "runs").iterdir()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == plan["total_steps"] >= 2

    estimated = sum(plan["memory"].values())
    measured = max(r["peak_rss_mb"] for r in records) * 2**20
    assert measured / 2 < estimated < measured * 2, (plan["memory"], measured)
    # Time per step (the second: the first pays for warming up). The estimate is for the
    # machine's own speed; programs competing for its cores slow the run by about the
    # load average per core, which the lower bound allows for.
    step_seconds = records[1]["tokens"] / records[1]["tokens_per_s"]
    estimated_step = plan["estimated_seconds"] / plan["total_steps"]
    contention = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert step_seconds / (10 * contention) < estimated_step < step_seconds * 5, (
        estimated_step,
        step_seconds,
        contention,
    )


def test_train_plan_prints_the_plan_and_does_not_train(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from shoptalk.cli import app

    root = write_project(tmp_path / "p", tiny_model, tokens_per_step="auto", epochs="auto")
    result = CliRunner().invoke(app, ["train", str(root), "--plan"])
    assert result.exit_code == 0, result.output
    assert "plan     lora on cpu x1" in result.output
    assert "(auto: tokens_per_step, epochs)" in result.output
    assert "gradient checkpointing: off" in result.output
    assert not (root / ".shoptalk" / "runs").exists()


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, tiny_model, one_thread):
    from shoptalk.pipeline import prepare_dataset
    from shoptalk.pipeline import train as run_train
    from shoptalk.project import Project

    losses = {}
    for on in (False, True):
        root = write_project(tmp_path / str(on), tiny_model, epochs=1, gradient_checkpointing=on)
        project = Project.open(root)
        dataset = prepare_dataset(project)
        run = run_train(project, dataset=dataset)
        card = json.loads((run.path / "card.json").read_text())
        assert card["plan"]["gradient_checkpointing"] is on
        lines = (run.path / "metrics.jsonl").read_text().splitlines()
        losses[on] = [json.loads(line)["loss"] for line in lines]
    assert len(losses[True]) > 2
    for a, b in zip(losses[False], losses[True], strict=True):
        assert abs(a - b) < 1e-4
