"""The same training math, fewer passes over memory: fused LoRA and per-example attention.

Both are our own code because on a CPU they decide the speed of LoRA
training (bench/train_throughput.py measures them), and neither changes what
is computed, only how:

- PEFT's LoRA layer computes `base(x) + B(A(x)) * scaling` as four full-size
  tensors (the base output, B's output, the scaled copy, the sum), each read
  and written once more in the backward pass. `torch.addmm` adds the scaled
  low-rank product straight into the base output inside the matmul, and
  `LoraLinear`'s backward runs each small matmul in its fastest layout.
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


def borders_from_positions(config: object) -> bool:
    """Does the model's attention keep packed examples apart by position ids alone, without a mask?"""
    implementation = config._attn_implementation or "eager"
    return implementation in REPLACEABLE or implementation.startswith("flash_attention")


def segment_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the runs where positions count up by one, row after row: one example each."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    begins = starts.flatten().nonzero().flatten().tolist() + [position_ids.numel()]
    return [end - begin for begin, end in zip(begins[:-1], begins[1:], strict=True)]


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
    """Causal attention inside each example of a packed batch (an AttentionInterface function).

    Shapes follow transformers: query (batch, heads, length, dim), key and
    value (batch, kv_heads, length, dim); returns (batch, length, heads, dim).
    All rows are laid end to end and split into examples with `split`, whose
    backward is one concatenation (slicing would zero-fill a full-size
    gradient per example).
    """
    batch, heads, length, dim = query.shape
    if position_ids is None:
        position_ids = torch.arange(length, device=query.device)[None]
    lengths = segment_lengths(position_ids.expand(batch, -1))

    def examples(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return t.transpose(1, 2).reshape(batch * length, t.shape[1], dim).split(lengths)

    parts = [
        F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            k.transpose(0, 1)[None],
            v.transpose(0, 1)[None],
            is_causal=True,
            scale=scaling,
            enable_gqa=True,
        )[0].transpose(0, 1)
        for q, k, v in zip(examples(query), examples(key), examples(value), strict=True)
    ]
    return torch.cat(parts).view(batch, length, heads, dim), None


def no_mask(*_args: object, **_kwargs: object) -> None:
    """`packed_attention` finds example borders itself; no mask is built."""
    return None


def fused_lora_forward(layer: torch.nn.Module, adapter: str, x: torch.Tensor) -> torch.Tensor:
    """base(x) + scaling * B(A(x)) through `LoraLinear`.

    Weights are looked up at each call: under FSDP the layer's parameters are
    swapped for gathered ones just before its forward (train/sharding.py).
    """
    base = layer.base_layer
    flat = x.reshape(-1, x.shape[-1])
    out = LoraLinear.apply(
        flat,
        base.weight,
        base.bias,
        layer.lora_A[adapter].weight,
        layer.lora_B[adapter].weight,
        layer.scaling[adapter],
    )
    return out.view(*x.shape[:-1], out.shape[-1])


class LoraLinear(torch.autograd.Function):
    """`x @ W.T + b + s * (x @ A.T) @ B.T` with a backward that picks fast matmul layouts.

    Autograd's generic backward makes A's gradient as `x.T @ grad` and then
    transposes it: a (d, tokens) @ (tokens, r) product that MKL runs 4-5x
    slower than the equal `grad.T @ x`, which gives A's layout directly; it
    also adds the input's two gradient parts in a separate pass. Shapes:
    x (tokens, d_in), W (d_out, d_in), A (r, d_in), B (d_out, r).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
    ) -> torch.Tensor:
        low = x @ lora_a.t()
        # In place: out-of-place addmm would first copy the base output.
        out = F.linear(x, weight, bias).addmm_(low, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x, low, weight, lora_a, lora_b)
        ctx.scaling = scaling
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, low, weight, lora_a, lora_b = ctx.saved_tensors
        want_x, want_w, want_bias, want_a, want_b = ctx.needs_input_grad[:5]
        grad = grad.contiguous()
        grad_low = (grad @ lora_b).mul_(ctx.scaling)
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        if want_x:
            grad_x = (grad @ weight).addmm_(grad_low, lora_a)
        if want_w:
            grad_w = grad.t() @ x
        if want_bias:
            grad_bias = grad.sum(0)
        if want_a:
            grad_a = grad_low.t() @ x
        if want_b:
            grad_b = (low.t() @ grad).mul_(ctx.scaling).t()
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None


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
        if module.lora_A[name].weight.dtype != module.base_layer.weight.dtype:
            continue
        yield module, partial(fused_lora_forward, module, name)


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
