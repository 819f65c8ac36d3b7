"""Cross-entropy computed only where there is a label, in chunks.

The output layer of a small model is a large share of its FLOPs (SmolLM2's
49k-word projection is a fifth of them) and its fp32 logits dominate memory.
Running it only at labelled positions skips the prompt and padding tokens, and
chunking bounds the logits held at once. This is why we call the decoder and
the head ourselves instead of `model(..., labels=...)`.

When training, `HeadCrossEntropy` also makes the loss's gradient while each
chunk's logits exist, so no logits outlive their chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shoptalk.modeling.score import CHUNK_TOKENS, decoder_and_head, next_token_targets
from shoptalk.train.packing import Row, collate, end_to_end
from shoptalk.train.speed import borders_from_positions, fast_forward


def model_batch(model: torch.nn.Module, rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows as `labelled_loss` takes them: end to end if attention needs no mask, else padded."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return end_to_end(rows) if borders_from_positions(base.config) else collate(rows, pad_id)


def labelled_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """Sum of token losses over the batch's labelled positions, and their count."""
    decoder, head = decoder_and_head(model)
    # Cached output of frozen bottom layers replaces the token embeddings.
    inputs = (
        {"inputs_embeds": batch["inputs_embeds"]}
        if "inputs_embeds" in batch
        else {"input_ids": batch["input_ids"]}
    )
    # No KV cache and no attention mask: example borders come from the position ids.
    with fast_forward(model):
        hidden = decoder(
            **inputs, position_ids=batch["position_ids"], use_cache=False
        ).last_hidden_state
    targets, keep = next_token_targets(batch)
    hidden = hidden[:, :-1][keep]
    targets = targets[keep]
    if torch.is_grad_enabled() and is_plain_linear(head):
        return HeadCrossEntropy.apply(hidden, head.weight, targets), int(targets.numel())
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), CHUNK_TOKENS):
        logits = head(hidden[start : start + CHUNK_TOKENS]).float()
        total = total + F.cross_entropy(
            logits, targets[start : start + CHUNK_TOKENS], reduction="sum"
        )
    return total, int(targets.numel())


def is_plain_linear(head: torch.nn.Module) -> bool:
    """An output layer that is exactly `hidden @ weight.T` (no bias, no adapter, no hooks)."""
    return (
        type(head) is torch.nn.Linear
        and head.bias is None
        and not head._forward_hooks
        and not head._forward_pre_hooks
    )


class HeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, its gradient made in forward.

    The loss ends the graph, so the gradient of each chunk's logits, softmax
    minus one-hot, is known as soon as the logits are. Making it there, in
    place, replaces log-softmax's backward and the zero-filled full-vocabulary
    gradient buffer of the stock path, and frees each chunk's logits at once
    (on SmolLM2 that is a 49k-wide tensor per labelled token). Liger-Kernel
    does this on GPUs with Triton kernels; no library does it on a CPU.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        want_hidden, want_weight = ctx.needs_input_grad[:2]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        total = hidden.new_zeros((), dtype=torch.float32)
        # One logits buffer for all chunks, every step in place: a fresh 200 MB
        # tensor per chunk and per log-softmax cost their page faults each time.
        size = (min(CHUNK_TOKENS, targets.numel()), weight.shape[0])
        buffer = torch.empty(size, dtype=torch.float32, device=hidden.device)
        fp32 = hidden.dtype == weight.dtype == torch.float32
        for start in range(0, targets.numel(), CHUNK_TOKENS):
            part = hidden[start : start + CHUNK_TOKENS]
            picked = targets[start : start + CHUNK_TOKENS]
            log_probs = buffer[: picked.numel()]
            if fp32:
                torch.mm(part, weight.t(), out=log_probs)
            else:
                log_probs.copy_(F.linear(part, weight))
            torch.log_softmax(log_probs, dim=-1, out=log_probs)
            rows = torch.arange(picked.numel(), device=picked.device)
            total = total - log_probs[rows, picked].sum()
            grad = log_probs.exp_()
            grad[rows, picked] -= 1
            if grad_hidden is not None:
                into = grad_hidden[start : start + CHUNK_TOKENS]
                if fp32:
                    torch.mm(grad, weight, out=into)
                else:
                    into.copy_(grad.to(weight.dtype) @ weight)
            if grad_weight is not None:
                grad_weight.addmm_(grad.t(), part.float())
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_total: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_total.to(grad_hidden.dtype),
            None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype),
            None,
        )


class LabelledLoss(torch.nn.Module):
    """`labelled_loss` of `model` as a module: what training calls, and FSDP's root when sharded.

    FSDP gathers a unit's weights in its forward hooks; the model's own forward
    never runs here, so the loss itself is the forward that the root's hooks
    wrap (train/sharding.py).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return labelled_loss(self.model, batch)
