"""The same training math, fewer passes over memory: fused LoRA and per-example attention.

Both are our own code because on a CPU they decide the speed of LoRA
training (bench/train_throughput.py measures them), and neither changes what
is computed, only how:

- PEFT's LoRA layer computes `base(x) + B(A(x)) * scaling` as four full-size
  tensors (the base output, B's output, the scaled copy, the sum), each read
  and written once more in the backward pass. `torch.addmm` adds the scaled
  low-rank product straight into the base output inside the matmul.
- Packed rows reach transformers' SDPA path as a block-diagonal mask over the
  whole row: every query is scored against every key of the row and the
  key/value heads are copied for grouped-query attention. Attending within
  each example, causally, computes only the blocks on the diagonal and lets
  the kernel share key/value heads.

`fast_forward` switches both on for the length of a forward pass and restores
the model afterwards, so saving, generation and evaluation see stock modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F

ATTENTION = "shoptalk_packed"
# Implementations whose masks we replace; flash attention on a GPU already
# reads segment borders from position ids, so it is left alone.
REPLACEABLE = {"sdpa", "eager"}


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the [start, end) spans where positions count up by one: one example each."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    spans = []
    for row in starts.tolist():
        begins = [i for i, s in enumerate(row) if s] + [len(row)]
        spans.append(list(zip(begins[:-1], begins[1:], strict=True)))
    return spans


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **_kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Causal attention inside each example of a packed row (an AttentionInterface function).

    Shapes follow transformers: query (batch, heads, length, dim), key and
    value (batch, kv_heads, length, dim); returns (batch, length, heads, dim).
    """
    spans = segments(position_ids.expand(query.shape[0], -1))
    rows = []
    for b, row in enumerate(spans):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                is_causal=True,
                scale=scaling,
                enable_gqa=True,
            )
            for s, e in row
        ]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def no_mask(*_args: object, **_kwargs: object) -> None:
    """`packed_attention` finds example borders itself; no mask is built."""
    return None


def fused_lora_forward(
    layer: torch.nn.Module,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    x: torch.Tensor,
) -> torch.Tensor:
    """base(x) + scaling * B(A(x)), the sum done by the matmul that makes B's output."""
    base = layer.base_layer
    flat = x.reshape(-1, x.shape[-1])
    out = F.linear(flat, base.weight, base.bias)
    out = torch.addmm(out, flat @ lora_a.t(), lora_b.t(), alpha=scaling)
    return out.view(*x.shape[:-1], out.shape[-1])


def plain_lora_layers(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, partial]]:
    """Each PEFT LoRA linear layer with one plain adapter (no dropout, DoRA or merge), and its fused forward."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if not isinstance(module, Linear) or module.merged or module.disable_adapters:
            continue
        adapters = [a for a in module.active_adapters if a in module.lora_A]
        if len(adapters) != 1 or adapters[0] in module.lora_variant:
            continue
        name = adapters[0]
        if not isinstance(module.lora_dropout[name], torch.nn.Identity):
            continue
        weight_a, weight_b = module.lora_A[name].weight, module.lora_B[name].weight
        if weight_a.dtype != module.base_layer.weight.dtype:
            continue
        yield module, partial(fused_lora_forward, module, weight_a, weight_b, module.scaling[name])


@contextmanager
def fast_forward(model: torch.nn.Module) -> Iterator[None]:
    """While inside, LoRA layers run fused and packed rows attend per example."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    previous = config._attn_implementation
    swap_attention = previous in REPLACEABLE
    if swap_attention:
        AttentionInterface.register(ATTENTION, packed_attention)
        AttentionMaskInterface.register(ATTENTION, no_mask)
        config._attn_implementation = ATTENTION
    fused = list(plain_lora_layers(model))
    for module, forward in fused:
        module.forward = forward
    try:
        yield
    finally:
        for module, _ in fused:
            del module.forward
        if swap_attention:
            config._attn_implementation = previous
