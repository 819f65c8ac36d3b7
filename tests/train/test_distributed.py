"""Data-parallel training: 2 processes on CPU (gloo) follow the same loss curve as 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.modeling.chat_format import IGNORE
from shoptalk.pipeline import prepare_dataset
from shoptalk.project import Project
from shoptalk.train.distributed import Processes, labelled_count, setup, share
from shoptalk.train.packing import Row

from projects import write_project

CONFIGS = Path(__file__).parents[2] / "configs" / "accelerate"
SETTINGS = {"epochs": 3, "tokens_per_step": 512, "max_seq_len": 128, "checkpoint_every": 3}


def row(n_labels: int) -> Row:
    return Row(list(range(8)), [IGNORE] * (8 - n_labels) + [1] * n_labels, list(range(8)))


def test_each_process_takes_its_share_of_a_steps_rows():
    rows = [row(i) for i in range(5)]
    shares = [share(rows, Processes(rank=r, world_size=2)) for r in range(2)]
    assert shares == [rows[0::2], rows[1::2]]
    assert sorted(id(r) for s in shares for r in s) == sorted(id(r) for r in rows)


def test_labelled_count_matches_what_the_loss_counts():
    # The loss predicts token t+1 from token t: the first position's label is never a target.
    assert labelled_count([Row([1, 2, 3], [5, 6, 7], [0, 1, 2]), row(3)]) == 2 + 3


def metrics(project) -> list[dict]:
    (run,) = (project / ".shoptalk" / "runs").iterdir()
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "shoptalk.cli",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )


def torchrun(*args: str) -> None:
    done = launch(*args)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_follow_the_loss_curve_of_one_and_resume(tmp_path, tiny_model):
    one = write_project(tmp_path / "one", tiny_model, **SETTINGS)
    two = write_project(tmp_path / "two", tiny_model, **SETTINGS)
    result = CliRunner().invoke(app, ["train", str(one)])
    assert result.exit_code == 0, result.output
    # Build the dataset first, so the two processes only read it.
    prepare_dataset(Project.open(two))

    # Two processes stop after step 4 (last checkpoint: step 3), then resume and finish.
    torchrun("build", str(two), "--stop-after", "4")
    torchrun("train", str(two))
    log = (two / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    assert "process 1 of 2" in log and "resumed from step-0000003" in log

    single, double = metrics(one), metrics(two)
    assert len(single) == len(double) > 6, "one line per step, written by rank 0 only"
    for a, b in zip(single, double, strict=True):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) < 2e-4, (a, b)
        assert abs(a.get("val_loss", 0) - b.get("val_loss", 0)) < 2e-4, (a, b)
    (run,) = (two / ".shoptalk" / "runs").iterdir()
    assert (run / "final" / "adapter_config.json").is_file()
    assert json.loads((run / "card.json").read_text())["plan"]["processes"] == 2


def test_a_two_process_dpo_launch_is_refused_and_writes_no_run(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, recipe="dpo")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    for sft_only in ("epochs", "learning_rate"):  # DPO reads train.dpo's
        del config["train"][sft_only]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    done = launch("train", str(root))
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "DPO runs in one process" in said and "WORLD_SIZE=2" in said, said[-3000:]
    assert not (root / ".shoptalk" / "runs").exists()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and config.mixed_precision == "no"


def test_without_a_launcher_it_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup("cpu") == (Processes(), "cpu")
