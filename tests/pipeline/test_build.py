"""The backbone: `shoptalk build` on a tiny model, caching, and resume after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from shoptalk.cli import app

from projects import write_project

runner = CliRunner()


def metrics(project: Path) -> list[dict]:
    (run,) = (project / ".shoptalk" / "runs").iterdir()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_build_writes_scorecard_and_skips_unchanged_stages(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    first = runner.invoke(app, ["build", str(project)])
    assert first.exit_code == 0, first.output
    (run_dir,) = (project / ".shoptalk" / "runs").iterdir()
    card = json.loads(
        (project / ".shoptalk" / "evals" / run_dir.name / "scorecard.json").read_text()
    )
    assert card["run_id"] == run_dir.name
    assert card["suites"]["domain"]["n"] == 2
    assert set(card["suites"]["domain"]["base"]) >= {
        "key_fact_recall",
        "strict_accuracy",
        "rouge_l",
    }
    assert "refusal_rate" in card["suites"]["unanswerable"]["tuned"]
    assert (run_dir / "final" / "adapter_config.json").is_file()
    run_card = json.loads((run_dir / "card.json").read_text())
    assert run_card["dataset_hash"] and run_card["versions"]["torch"]

    second = runner.invoke(app, ["build", str(project)])
    assert second.exit_code == 0, second.output
    assert "unchanged, skipped" in second.output
    assert len(list((project / ".shoptalk" / "runs").iterdir())) == 1

    faq = project / "faq.csv"
    faq.write_text(faq.read_text() + "Is there parking?,Yes: 12 spaces behind depot B.\n")
    third = runner.invoke(app, ["build", str(project), "--stop-after", "1"])
    assert third.exit_code == 0, third.output
    assert len(list((project / ".shoptalk" / "runs").iterdir())) == 2, (
        "an edited FAQ trains a new run"
    )


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, tiny_model):
    straight = write_project(tmp_path / "straight", tiny_model)
    assert runner.invoke(app, ["train", str(straight)]).exit_code == 0

    crashed = write_project(tmp_path / "crashed", tiny_model)
    stopped = runner.invoke(app, ["build", str(crashed), "--stop-after", "3"])
    assert stopped.exit_code == 0, stopped.output
    resumed = runner.invoke(app, ["train", str(crashed)])
    assert resumed.exit_code == 0, resumed.output
    log = (crashed / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    assert "resumed from step-0000002" in log

    a, b = metrics(straight), metrics(crashed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=False):
        assert abs(x["loss"] - y["loss"]) < 1e-4, (x, y)


def test_kill_9_during_training_then_build_resumes(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model, epochs=30, checkpoint_every=3)
    paths = [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    cmd = [sys.executable, "-m", "shoptalk.cli", "build", str(project)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = project / ".shoptalk" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(checkpoints.glob("*/checkpoints/step-*/state.pt")):
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (ckpt,) = sorted(checkpoints.glob("*/checkpoints/step-*"))[-1:]
    saved_step = int(ckpt.name.split("-")[1])

    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 0, result.output
    log = (project / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    assert "resumed from step-" in log
    resumed_at = int(log.split("resumed from step-")[1].split(" ")[0])
    assert resumed_at >= saved_step
    steps = [r["step"] for r in metrics(project)]
    assert steps == list(range(1, len(steps) + 1)), (
        "no step is missing or repeated after the resume"
    )


def test_a_build_that_fails_its_gate_is_not_promoted(tmp_path, tiny_model):
    import yaml

    project = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text())
    config["eval"]["gate"] = {
        "rules": [{"suite": "domain", "metric": "key_fact_recall", "min_tuned": 0.99}]
    }
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config))

    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "gate FAILED" in output and "key_fact_recall" in output and "0.99" in output
    assert not (project / ".shoptalk" / "promoted-run").exists()
    ask = runner.invoke(app, ["ask", str(project), "Hi?"])
    assert ask.exit_code == 2 and "No promoted model" in ask.output
    gated = runner.invoke(app, ["eval", str(project), "--gate"])
    assert gated.exit_code == 1
