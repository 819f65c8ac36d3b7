"""Sharded training (FSDP2): 2 CPU processes (gloo) follow the loss curve of 1, resume, and save a model that loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.config import TrainSettings
from shoptalk.errors import ConfigError, ShoptalkError
from shoptalk.pipeline import prepare_dataset
from shoptalk.project import Project
from shoptalk.train import checkpoint
from shoptalk.train.distributed import Processes
from shoptalk.train.sharding import choose, from_launcher

from projects import write_project

CONFIGS = Path(__file__).parents[2] / "configs" / "accelerate"
TWO = Processes(rank=0, world_size=2)
# A step's 4 rows split 2 + 2; the epoch's last step has fewer rows than processes.
SETTINGS = {"epochs": 2, "tokens_per_step": 512, "max_seq_len": 128, "checkpoint_every": 3}


FSDP = {"ACCELERATE_USE_FSDP": "true"}
DEEPSPEED = {"ACCELERATE_USE_DEEPSPEED": "true"}


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "none"),
        (FSDP | {"FSDP_RESHARD_AFTER_FORWARD": "true"}, "fsdp"),
        (FSDP | {"FSDP_RESHARD_AFTER_FORWARD": "false"}, "fsdp-grad-op"),
        (FSDP | {"FSDP_VERSION": "1", "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP"}, "fsdp-grad-op"),
        (FSDP | {"FSDP_VERSION": "1", "FSDP_SHARDING_STRATEGY": "NO_SHARD"}, "none"),
        (DEEPSPEED | {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "fsdp"),
        (DEEPSPEED | {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "fsdp-grad-op"),
        (DEEPSPEED | {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "1"}, "none"),
    ],
)
def test_the_launcher_picks_the_mode(env, mode):
    assert from_launcher(env) == mode


def test_a_launcher_value_we_cannot_map_names_it():
    env = FSDP | {"FSDP_RESHARD_AFTER_FORWARD": "sometimes"}
    with pytest.raises(ConfigError, match="FSDP_RESHARD_AFTER_FORWARD='sometimes'"):
        from_launcher(env)


def test_the_setting_wins_over_the_launcher_and_one_process_shards_nothing():
    fsdp_launch = FSDP | {"FSDP_RESHARD_AFTER_FORWARD": "true"}
    assert choose(TrainSettings(), TWO, fsdp_launch) == "fsdp"
    assert choose(TrainSettings(sharding="none"), TWO, fsdp_launch) == "none"
    assert choose(TrainSettings(sharding="fsdp-grad-op"), TWO, {}) == "fsdp-grad-op"
    assert choose(TrainSettings(sharding="fsdp"), Processes(), {}) == "none"
    with pytest.raises(ConfigError, match="qlora.*cannot be sharded"):
        choose(TrainSettings(sharding="fsdp", method="qlora"), TWO, {})


def test_a_sharded_checkpoint_is_not_resumed_unsharded(tmp_path):
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    trainable = checkpoint.Trainable(dict(layer.named_parameters()), optimizer)
    saved = checkpoint.save(tmp_path, 3, trainable, scheduler, keep=1)
    assert checkpoint.restore(saved, trainable, scheduler) == 3
    state = torch.load(saved / "state.pt", weights_only=False)
    torch.save(state | {"sharded": True}, saved / "state.pt")
    with pytest.raises(ShoptalkError, match="written by a sharded .FSDP. run.*same train.sharding"):
        checkpoint.restore(saved, trainable, scheduler)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_accelerate_config_launches_a_mode_we_train(path):
    """The environment `accelerate launch` would give the processes maps to a sharding mode."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, *_ = _validate_launch_command(args)
    expected = {"fsdp.yaml": "fsdp", "fsdp_shard_grad_op.yaml": "fsdp-grad-op"}
    assert from_launcher(prepare_multi_gpu_env(args)) == expected.get(path.name, "none")


# Run by 1 and by 2 processes: the gradients of one step, gathered to full tensors. Adam
# hides a gradient scaled by a constant (say a mean where a sum was due) from the loss
# curve, so the gradients themselves are compared.
GRADIENTS = """
import sys

import torch

from shoptalk.config import TrainSettings
from shoptalk.modeling.load import load_model, load_tokenizer
from shoptalk.train import distributed, sft, sharding
from shoptalk.train.loss import LabelledLoss
from shoptalk.train.methods import attach_method
from shoptalk.train.packing import Row

model_dir, out = sys.argv[1:3]
procs, device = distributed.setup("cpu")
tokenizer = load_tokenizer(model_dir)
torch.manual_seed(0)
ids = torch.randint(4, 300, (3, 24)).tolist()
# Rows with different numbers of labels: the processes' shares weigh differently.
rows = [Row(r, [-100] * (4 + 6 * i) + r[4 + 6 * i :], list(range(24))) for i, r in enumerate(ids)]
result = {}
for method in ("full", "lora"):
    settings = TrainSettings(method=method, trainable_layers=None, lora={"r": 4, "alpha": 8})
    model, _ = attach_method(load_model(model_dir, "cpu", dtype=torch.float32), settings)
    with torch.no_grad():  # LoRA's B starts at zero, which would leave A without a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    sharded = procs.distributed
    loss_fn = sharding.shard(model, "fsdp", procs, device) if sharded else LabelledLoss(model)
    params = [p for p in model.parameters() if p.requires_grad]
    # Three rows split 2 + 1, then one row: the second process runs an idle step.
    for step, batch in enumerate((rows, rows[:1])):
        loss, _ = sft.shared_step(loss_fn, batch, tokenizer, device, params, procs)
        grads = {
            n: p.grad.full_tensor() if sharded else p.grad.clone()
            for n, p in model.named_parameters()
            if p.requires_grad
        }
        result[method, step] = (loss, grads)
        model.zero_grad(set_to_none=True)
if procs.is_main:
    torch.save(result, out)
distributed.teardown(procs)
"""


def test_sharded_gradients_are_the_one_process_gradients(tmp_path, tiny_model):
    script = tmp_path / "gradients.py"
    script.write_text(GRADIENTS)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for launcher, out in (
        (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"], "two.pt"),
        ([], "one.pt"),
    ):
        done = subprocess.run(
            [sys.executable, *launcher, str(script), str(tiny_model), str(tmp_path / out)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() == {(m, s) for m in ("full", "lora") for s in (0, 1)}
    for key, (loss, grads) in one.items():
        assert two[key][0] == pytest.approx(loss, abs=1e-5), key
        assert grads.keys() == two[key][1].keys()
        for name, grad in grads.items():
            assert grad.abs().sum() > 0, (key, name)
            torch.testing.assert_close(two[key][1][name], grad, atol=1e-6, rtol=1e-4)


def torchrun(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "shoptalk.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"} | (env or {}),
    )
    assert done.returncode == 0, done.stderr[-3000:]


def run_folder(project: Path) -> Path:
    (run,) = (project / ".shoptalk" / "runs").iterdir()
    return run


def metrics(project: Path) -> list[dict]:
    lines = (run_folder(project) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_same_curve(one: Path, two: Path) -> None:
    single, double = metrics(one), metrics(two)
    assert len(single) == len(double) >= 4, "one line per step, written by rank 0 only"
    for a, b in zip(single, double, strict=True):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) < 2e-4, (a, b)
        assert abs(a.get("val_loss", 0) - b.get("val_loss", 0)) < 2e-4, (a, b)


def train_one_process(project: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(project)])
    assert result.exit_code == 0, result.output


def test_lora_sharded_over_two_processes_follows_one_resumes_and_loads(tmp_path, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    one = write_project(tmp_path / "one", tiny_model, **SETTINGS)
    two = write_project(tmp_path / "two", tiny_model, sharding="fsdp", **SETTINGS)
    train_one_process(one)
    prepare_dataset(Project.open(two))

    # Stop after step 4 (last checkpoint: step 3, full weights gathered), resume, finish.
    torchrun("build", str(two), "--stop-after", "4")
    torchrun("train", str(two))
    log = (two / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    assert "FSDP2 'fsdp': 2 decoder layers" in log and "resumed from step-0000003" in log
    assert_same_curve(one, two)

    # The final adapter holds full (gathered) weights and loads in one process.
    final = run_folder(two) / "final"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), final)
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    reference = load_file(run_folder(one) / "final" / "adapter_model.safetensors")
    assert len(loaded) == len(reference) > 0
    for name, value in reference.items():
        mine = loaded[name.replace(".weight", ".default.weight")]
        assert mine.shape == value.shape
        torch.testing.assert_close(mine, value, atol=2e-4, rtol=1e-3)
    card = json.loads((run_folder(two) / "card.json").read_text())
    assert card["plan"]["sharding"] == "fsdp" and card["train"]["sharding"] == "fsdp"


def test_full_fine_tuning_sharded_by_an_accelerate_launch_follows_one(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    settings = SETTINGS | {"method": "full", "learning_rate": 1e-3}
    one = write_project(tmp_path / "one", tiny_model, **settings)
    two = write_project(tmp_path / "two", tiny_model, **settings)
    train_one_process(one)
    prepare_dataset(Project.open(two))

    # What `accelerate launch --config_file configs/accelerate/fsdp_shard_grad_op.yaml` sets.
    torchrun(
        "train",
        str(two),
        env=FSDP | {"FSDP_RESHARD_AFTER_FORWARD": "false"},
    )
    log = (two / ".shoptalk" / "logs" / "shoptalk.log").read_text()
    assert "FSDP2 'fsdp-grad-op'" in log
    assert_same_curve(one, two)

    single = AutoModelForCausalLM.from_pretrained(run_folder(one) / "final").state_dict()
    double = AutoModelForCausalLM.from_pretrained(run_folder(two) / "final").state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    assert single.keys() == double.keys()
    for name, value in single.items():
        torch.testing.assert_close(double[name], value, atol=2e-4, rtol=1e-3)
    name = "model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(double[name], base[name]), "the sharded run trained"
