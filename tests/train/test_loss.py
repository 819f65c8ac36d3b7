"""The loss path: labelled positions only, fused LoRA, per-example attention: same numbers as stock."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AutoModelForCausalLM, AutoTokenizer

from shoptalk.modeling.chat_format import encode_conversation
from shoptalk.records import Conversation, Message
from shoptalk.train import loss as loss_module
from shoptalk.train.loss import is_plain_linear, labelled_loss
from shoptalk.train.packing import collate, pack
from shoptalk.train.speed import LoraLinear as FusedLoraLinear
from shoptalk.train.speed import fast_forward, segment_lengths

CHATS = [
    ("What is the claim window?", "The claim window is 47 days from delivery."),
    ("退货期限是多少天？", "退货期限是75天。"),
    ("Who runs the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    ("Hello", "How can I help you today?"),
    ("Hello, how can I help you today?", "I don't have that information."),
]


def packed_batch(tokenizer) -> dict[str, torch.Tensor]:
    """Rows of several examples each, of different lengths (so one is padded)."""
    examples = [
        encode_conversation(
            tokenizer,
            Conversation(
                id=str(i),
                messages=[Message(role="user", content=q), Message(role="assistant", content=a)],
                source=f"chats.csv:{i + 2}",
            ),
            "Be brief.",
        )
        for i, (q, a) in enumerate(CHATS)
    ]
    rows = pack(examples, max_len=96)
    assert len(rows) > 1 and len({len(r.input_ids) for r in rows}) > 1
    assert any(sum(p == 0 for p in r.position_ids) > 1 for r in rows)
    return collate(rows, tokenizer.pad_token_id)


def lora_model(path, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        base,
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"),
    )
    # B starts at zero; make the adapters matter so their gradients are compared.
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model.train()


def reference_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers' own path: full logits, block-diagonal mask from the position ids.

    Without `use_cache=False` transformers makes a KV cache and then ignores
    the example borders in the position ids.
    """
    logits = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).logits
    targets = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
    )


def lora_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def test_segments_split_rows_where_positions_restart():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
    assert segment_lengths(positions) == [3, 2, 1, 4, 2]


def test_fast_loss_and_gradients_match_transformers(tiny_model, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    batch = packed_batch(tokenizer)
    model = lora_model(tiny_model)

    reference = reference_loss(model, batch)
    reference.backward()
    expected = lora_grads(model)

    monkeypatch.setattr(loss_module, "CHUNK_TOKENS", 7)  # several chunks, a ragged last one
    total, count = labelled_loss(model, batch)
    total.backward()
    got = lora_grads(model)

    assert count == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(total, reference, rtol=1e-5, atol=1e-4)
    assert got.keys() == expected.keys() and len(got) > 0
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fast_forward_restores_the_model(tiny_model):
    model = lora_model(tiny_model)
    config = model.get_base_model().config
    before = config._attn_implementation
    lora_layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    with fast_forward(model):
        assert config._attn_implementation == "shoptalk_packed"
        assert all("forward" in vars(m) for m in lora_layers)
    assert config._attn_implementation == before
    assert not any("forward" in vars(m) for m in lora_layers)


@pytest.mark.parametrize("dropout", [0.1])
def test_lora_with_dropout_keeps_peft_forward(tiny_model, dropout):
    model = lora_model(tiny_model, dropout=dropout)
    lora_layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    with fast_forward(model):
        assert not any("forward" in vars(m) for m in lora_layers)


def test_head_gradient_matches_when_the_output_layer_trains(tiny_model, monkeypatch):
    """Full fine-tuning trains the (tied) output layer: its gradient comes from the fused loss too."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    batch = packed_batch(tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).train()

    reference_loss(model, batch).backward()
    expected = lora_grads(model)
    monkeypatch.setattr(loss_module, "CHUNK_TOKENS", 5)
    total, _ = labelled_loss(model, batch)
    (total * 0.5).backward()  # the fused gradient follows the scale of what is backpropagated
    got = lora_grads(model)

    assert is_plain_linear(model.get_output_embeddings())
    head = model.get_output_embeddings().weight
    assert head.requires_grad and any(p is head for p in model.parameters())
    for name in expected:
        torch.testing.assert_close(got[name], expected[name] * 0.5, rtol=1e-4, atol=1e-6, msg=name)


def test_loss_without_autograd_matches_transformers(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    batch = packed_batch(tokenizer)
    model = lora_model(tiny_model)
    with torch.no_grad():
        total, _ = labelled_loss(model, batch)
    assert not total.requires_grad
    torch.testing.assert_close(total, reference_loss(model, batch).detach(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_lora_linear_matches_autograd(with_bias):
    """Output and every gradient (input, frozen or trained weight, bias, A, B) as autograd's."""
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True) if with_bias else None
    lora_a = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    lora_b = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    inputs = (x, weight, bias, lora_a, lora_b)
    grad = torch.randn(7, 6, dtype=torch.float64)

    def gradients(f) -> list[torch.Tensor]:
        out = f()
        wanted = [t for t in inputs if t is not None]
        return [out.detach(), *torch.autograd.grad(out, wanted, grad)]

    stock = gradients(
        lambda: torch.nn.functional.linear(x, weight, bias) + 1.5 * (x @ lora_a.t()) @ lora_b.t()
    )
    fused = gradients(lambda: FusedLoraLinear.apply(x, weight, bias, lora_a, lora_b, 1.5))
    for a, b in zip(stock, fused, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *t: FusedLoraLinear.apply(*t, 1.5), inputs)
