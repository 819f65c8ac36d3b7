"""Training methods: LoRA switches reach peft, full fine-tuning freezes the bottom,
QLoRA fails early and clearly without a GPU and never imports bitsandbytes here."""

from __future__ import annotations

import sys

import pytest
import torch

from shoptalk.config import TrainSettings
from shoptalk.errors import ConfigError
from shoptalk.modeling.load import load_model
from shoptalk.pipeline import train as run_train
from shoptalk.project import Project
from shoptalk.train.methods import (
    attach_method,
    check_method,
    load_for_method,
    quantization_config,
)

from projects import write_project


def settings(**overrides) -> TrainSettings:
    return TrainSettings.model_validate({"method": "lora", "trainable_layers": None} | overrides)


@pytest.mark.parametrize("switch", ["use_rslora", "use_dora"])
def test_lora_switches_reach_the_peft_config(tiny_model, switch):
    model = load_model(str(tiny_model), "cpu", dtype=torch.float32)
    tuned, first = attach_method(model, settings(lora={"r": 4, "alpha": 8, switch: True}))
    config = tuned.peft_config["default"]
    assert getattr(config, switch) is True
    other = ({"use_rslora", "use_dora"} - {switch}).pop()
    assert getattr(config, other) is False
    assert first == 0
    # All linear layers by default: attention and MLP projections of every layer.
    adapted = {n.rsplit(".", 1)[-1] for n, m in tuned.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    if switch == "use_rslora":  # scale = alpha / sqrt(r) instead of alpha / r
        layer = tuned.base_model.model.model.layers[0].self_attn.q_proj
        assert layer.scaling["default"] == pytest.approx(8 / 4**0.5)
    else:
        names = [n for n, _ in tuned.named_parameters()]
        assert any("lora_magnitude_vector" in n for n in names)


def test_top_layers_only(tiny_model):
    model = load_model(str(tiny_model), "cpu", dtype=torch.float32)
    tuned, first = attach_method(model, settings(trainable_layers=1, lora={"r": 4, "alpha": 8}))
    assert first == 1
    trained = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trained and all(".layers.1." in n for n in trained)

    full = load_model(str(tiny_model), "cpu", dtype=torch.float32)
    full, first = attach_method(full, settings(method="full", trainable_layers=1))
    trained = {n for n, p in full.named_parameters() if p.requires_grad}
    assert any(".layers.1." in n for n in trained)
    assert not any(".layers.0." in n for n in trained)


def test_qlora_on_cpu_is_a_clear_error_before_any_work(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="CUDA GPU.*method: lora"):
        check_method(settings(method="qlora"), "cpu")
    check_method(settings(method="lora"), "cpu")  # the others run anywhere

    project = Project.open(write_project(tmp_path / "p", tiny_model, method="qlora"))
    dataset_dir = tmp_path / "nowhere"
    from shoptalk.artifacts import DatasetArtifact

    with pytest.raises(ConfigError, match="qlora"):
        run_train(project, dataset=DatasetArtifact(path=dataset_dir, hash="x"))
    assert not project.runs.exists()
    assert "bitsandbytes" not in sys.modules


def test_qlora_quantization_config_is_nf4_with_double_quantization():
    config = quantization_config("cpu")
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16  # no bf16 on this hardware
    assert "bitsandbytes" not in sys.modules


def test_lora_freezes_the_base_in_bf16_where_the_device_has_it_and_full_trains_fp32(
    tiny_model, monkeypatch
):
    assert load_for_method(str(tiny_model), settings(), "cpu").dtype == torch.float32, (
        "never bf16 on a CPU"
    )
    # A GPU with bf16 units, as `pick_dtype` sees one (the model itself stays on the CPU).
    monkeypatch.setattr("shoptalk.modeling.load.pick_dtype", lambda device: torch.bfloat16)
    base = load_for_method(str(tiny_model), settings(), "cpu")
    tuned, _ = attach_method(base, settings(lora={"r": 4, "alpha": 8}))
    frozen = {p.dtype for p in tuned.parameters() if not p.requires_grad}
    trained = {p.dtype for p in tuned.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    ids = torch.tensor([[1, 2, 3, 4]])
    tuned(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in tuned.parameters() if p.requires_grad)
    full = load_for_method(str(tiny_model), settings(method="full"), "cpu")
    assert full.dtype == torch.float32, "trained weights keep fp32"
