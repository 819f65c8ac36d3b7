"""A run's final weights: 16 bits for full weights, the adapter as it trained."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from shoptalk.train.sft import as_float16, save_final


def test_full_weights_are_saved_as_the_float16_an_export_holds(tmp_path, tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)  # trained weights: not on float16's grid
    save_final(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path / "final")

    saved = load_file(tmp_path / "final" / "model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float16}
    for name, p in model.named_parameters():
        if name in saved:
            assert torch.equal(saved[name], p.detach().half()), name

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
        ids = torch.tensor([[1, 5, 9, 13, 2]])
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


def test_out_of_range_and_tied_tensors():
    big = torch.tensor([1e6, 1.0])
    tied = torch.randn(4, 3)
    out = as_float16({"big": big, "a": tied, "b": tied.detach(), "half": tied.half()})
    assert out["big"].dtype == torch.float32 and torch.equal(out["big"], big)
    assert out["a"] is out["b"] and out["a"].dtype == torch.float16
    assert out["half"].dtype == torch.float16


def test_an_adapter_is_saved_as_it_trained(tmp_path, tiny_model):
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    save_final(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path / "final")
    saved = load_file(tmp_path / "final" / "adapter_model.safetensors")
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}
