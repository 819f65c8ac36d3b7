"""DPO on the tiny model: the loss is the paper's, the reference is the starting policy,
training separates chosen from rejected, and a resumed run is the uninterrupted one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from shoptalk import pipeline
from shoptalk.artifacts import DatasetArtifact, read_jsonl, write_jsonl
from shoptalk.config import DpoSettings, ShoptalkConfig
from shoptalk.errors import ConfigError
from shoptalk.modeling.chat_format import IGNORE
from shoptalk.modeling.load import load_model, load_tokenizer
from shoptalk.pipeline import prepare_dataset
from shoptalk.pipeline import train as run_train
from shoptalk.project import Project
from shoptalk.records import Message, Preference
from shoptalk.train import dpo
from shoptalk.train.logprobs import sequence_logprobs

from projects import write_project

PAIRS = [
    ("What is the claim window?", "The claim window is 47 days from delivery.", "I don't know."),
    ("Who runs the Oslo depot?", "Ingrid Solberg runs the Oslo depot.", "Hello, how can I help?"),
    ("退货期限是多少天？", "退货期限是75天。", "请问您需要什么帮助？"),
    ("How can I help you today?", "I don't have that information.", "The claim window is 75 days."),
]


def preference_dataset(folder: Path) -> DatasetArtifact:
    records = [
        Preference(
            id=f"p{i}",
            prompt=[Message(role="user", content=q)],
            chosen=good,
            rejected=bad,
            source=f"prefs.jsonl:{i + 1}",
        )
        for i, (q, good, bad) in enumerate(PAIRS)
    ]
    write_jsonl(folder / "preferences.jsonl", records)
    return DatasetArtifact(path=folder, hash="test")


def config(**dpo_settings) -> ShoptalkConfig:
    train = {
        "method": "lora",
        "lora": {"r": 4, "alpha": 8},
        "trainable_layers": None,
        "max_seq_len": 64,
        "tokens_per_step": 64,
        "checkpoint_every": 2,
        "warmup_ratio": 0.0,
        "dpo": {"beta": 0.5, "learning_rate": 2e-2, "epochs": 3} | dpo_settings,
    }
    return ShoptalkConfig(system_prompt="You are Kestrel Assist.", train=train)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dpo_loss_matches_a_hand_computation():
    policy = torch.tensor([[-1.0, -2.0], [-3.0, -1.0]])
    reference = torch.tensor([[-1.5, -1.5], [-2.0, -2.0]])
    counts = torch.tensor([[2, 4], [1, 1]])
    # Pair 1: logits (0.5) - (-0.5) = 1; pair 2: (-1) - (1) = -2.
    loss, stats = dpo.dpo_loss(policy, reference, counts, DpoSettings(beta=0.5))
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert stats["reward_margin"] == pytest.approx((0.5 - 1.0) / 2)
    assert stats["accuracy"] == 0.5
    # IPO on per-token averages: pair 1 (0.5/2 - (-0.5)/4) = 0.375, pair 2 = -2; target 1/(2β) = 1.
    loss, _ = dpo.dpo_loss(policy, reference, counts, DpoSettings(beta=0.5, loss="ipo"))
    assert float(loss) == pytest.approx(((0.375 - 1) ** 2 + (-2 - 1) ** 2) / 2, rel=1e-6)


def test_packed_pair_logprobs_equal_each_sequence_run_alone(tiny_model, one_thread):
    tokenizer = load_tokenizer(str(tiny_model))
    model = load_model(str(tiny_model), "cpu", dtype=torch.float32).eval()
    records = [
        Preference(
            id=str(i), prompt=[Message(role="user", content=q)], chosen=c, rejected=r, source="t"
        )
        for i, (q, c, r) in enumerate(PAIRS)
    ]
    pairs, _ = dpo.encode_pairs(tokenizer, records, config(), config().system_prompt)
    batch = dpo.pair_batch(pairs, tokenizer.pad_token_id, "cpu")
    assert batch["input_ids"].shape[0] < len(pairs) * 2  # several sequences share a row
    with torch.no_grad():
        packed, counts = sequence_logprobs(model, batch, 2 * len(pairs))
        for k, pair in enumerate(pairs):
            for j, example in enumerate((pair.chosen, pair.rejected)):
                ids = torch.tensor([example.input_ids])
                logps = model(ids).logits[0, :-1].log_softmax(-1)
                targets = torch.tensor(example.labels[1:])
                keep = targets != IGNORE
                alone = logps[keep].gather(-1, targets[keep, None]).sum()
                assert float(packed[2 * k + j]) == pytest.approx(float(alone), abs=1e-4)
                assert int(counts[2 * k + j]) == int(keep.sum())


def test_reference_is_the_starting_policy_and_training_separates_the_answers(
    tmp_path, tiny_model, one_thread
):
    dataset = preference_dataset(tmp_path / "data")
    run = dpo.run(config(), dataset, str(tiny_model), tmp_path / "run")
    lines = metrics(run.path)
    # Step 1's loss is taken before any update: policy = reference, so -log σ(0) = log 2.
    assert lines[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert lines[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    # One pair a step, four pairs: the last epoch prefers every chosen answer.
    last_epoch = lines[-4:]
    assert len(lines) == 12
    assert all(r["accuracy"] == 1.0 for r in last_epoch)
    assert sum(r["reward_margin"] for r in last_epoch) / 4 > 0.5
    assert sum(r["loss"] for r in last_epoch) / 4 < 0.45
    assert {"accuracy", "chosen_reward", "rejected_reward", "lr", "tokens_per_s"} <= set(lines[-1])
    assert (run.final / "adapter_config.json").is_file()
    assert json.loads((run.path / "card.json").read_text())["recipe"] == "dpo"


def test_resume_after_a_stop_matches_an_uninterrupted_run(tmp_path, tiny_model, one_thread):
    dataset = preference_dataset(tmp_path / "data")
    whole = dpo.run(config(), dataset, str(tiny_model), tmp_path / "whole")
    stopped = dpo.run(config(), dataset, str(tiny_model), tmp_path / "resumed", stop_after=3)
    assert not stopped.final.is_dir()
    assert any((stopped.path / "checkpoints").iterdir())
    resumed = dpo.run(config(), dataset, str(tiny_model), tmp_path / "resumed")
    a, b = metrics(whole.path), metrics(resumed.path)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
    wa = load_file(whole.final / "adapter_model.safetensors")
    wb = load_file(resumed.final / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6)


def test_no_pairs_is_a_clear_error(tmp_path, tiny_model):
    (tmp_path / "data").mkdir()
    dataset = DatasetArtifact(path=tmp_path / "data", hash="empty")
    with pytest.raises(ValueError, match="no preference pairs"):
        dpo.run(config(), dataset, str(tiny_model), tmp_path / "run")


def test_two_processes_are_refused_before_anything_is_written(tmp_path, tiny_model, monkeypatch):
    # Under torchrun both processes would train in one run folder, each resuming from the
    # other's checkpoints (tests/train/test_distributed.py launches it for real).
    monkeypatch.setenv("WORLD_SIZE", "2")
    dataset = preference_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"DPO runs in one process.*WORLD_SIZE=2"):
        dpo.run(config(), dataset, str(tiny_model), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_build_runs_dpo_on_top_of_the_sft_model_when_pairs_exist(tmp_path, tiny_model, one_thread):
    root = write_project(tmp_path / "p", tiny_model, epochs=1, trainable_layers=None)
    rows = [
        {"prompt": q, "chosen": good, "rejected": bad, "source": "ignored"}
        for q, good, bad in PAIRS
    ]
    # OpenAI's DPO format in the same folder: both are read.
    rows_openai = {
        "input": {"messages": [{"role": "user", "content": "Where do I send claims?"}]},
        "preferred_output": [
            {"role": "assistant", "content": "Send claims to claims@kestrel.example."}
        ],
        "non_preferred_output": [{"role": "assistant", "content": "I don't know."}],
    }
    (root / "prefs").mkdir()
    (root / "prefs" / "pairs.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "source"}) + "\n" for r in rows)
    )
    (root / "prefs" / "openai.jsonl").write_text(json.dumps(rows_openai) + "\n")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["sources"]["preferences"] = ["prefs"]
    config["train"]["dpo"] = {"learning_rate": 1e-2, "epochs": 1}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)

    dataset = prepare_dataset(project)
    pairs = read_jsonl(dataset.path / "preferences.jsonl", Preference)
    assert len(pairs) == 5
    # Redacted like everything else in the dataset.
    assert not any("claims@kestrel.example" in p.chosen for p in pairs)
    said: list = []
    run = run_train(project, on_event=said.append, dataset=dataset)
    assert [e.stage for e in said if e.status == "started"] == ["index", "sft", "dpo"]
    sft_id = project.run_id(pipeline.prepare_input(project, dataset=dataset).hash)  # RAFT view
    assert run.run_id == project.dpo_run_id(sft_id)
    assert project.latest_run().run_id == run.run_id
    card = json.loads((run.path / "card.json").read_text())
    assert card["start_from"] == str(project.runs / sft_id / "final")
    # The reference is the SFT model DPO started from: loss log 2 before the first update.
    assert metrics(run.path)[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert run.is_adapter
    # Built again: both stages are unchanged and skipped.
    said.clear()
    run_train(project, on_event=said.append, dataset=dataset)
    trained = [e for e in said if e.stage in ("sft", "dpo")]
    assert [(e.stage, e.status) for e in trained] == [("sft", "skipped"), ("dpo", "skipped")]
    # A DPO setting changes the DPO run only: SFT is not trained again.
    config["train"]["dpo"]["beta"] = 0.5
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    assert sft_id == run.run_id.split("-dpo-")[0]
    assert project.dpo_run_id(sft_id) != run.run_id
