"""How likely a model finds given answers: the per-token log-likelihood of labelled tokens.

Evaluation (retention, canaries) and training (the loss, DPO's log-probs)
score text the same way, so this lives in the modeling layer that both use.
The output layer runs only at labelled positions, a chunk at a time: a small
model's vocabulary projection is a large share of its FLOPs and its fp32
logits dominate memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.modeling.chat_format import IGNORE, Example

if TYPE_CHECKING:
    import torch

    from shoptalk.modeling.generate import Assistant

CHUNK_TOKENS = 1024


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body and output layer of a (possibly PEFT-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def next_token_targets(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The token each position predicts, and which of them count (labelled ones only).

    The first token of a packed example follows another example's last one;
    like the first token of an unpacked row, it is no one's target.
    """
    targets = batch["labels"][:, 1:]
    return targets, (targets != IGNORE) & (batch["position_ids"][:, 1:] != 0)


def pad_examples(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """One example a row, right-padded to the longest; padding is a separate segment with no loss.

    The same tensors as training's `collate` of unpacked rows.
    """
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids, labels, positions = [], [], []
    for e in examples:
        n, pad = len(e.input_ids), width - len(e.input_ids)
        ids.append(e.input_ids + [pad_id] * pad)
        labels.append(e.labels + [IGNORE] * pad)
        positions.append(list(range(n)) + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
    }


def row_losses(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[list[float], list[int]]:
    """The summed NLL and the labelled-token count of each row of `batch`."""
    import torch
    import torch.nn.functional as F

    decoder, head = decoder_and_head(model)
    hidden = decoder(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state
    targets, keep = next_token_targets(batch)
    row_of = torch.arange(targets.shape[0], device=targets.device)[:, None].expand_as(targets)
    row_of, hidden, targets = row_of[keep], hidden[:, :-1][keep], targets[keep]
    row_of = row_of.cpu()
    sums = torch.zeros(keep.shape[0], dtype=torch.float64)  # on the CPU: MPS has no float64
    for start in range(0, targets.numel(), CHUNK_TOKENS):
        stop = start + CHUNK_TOKENS
        losses = F.cross_entropy(
            head(hidden[start:stop]).float(), targets[start:stop], reduction="none"
        )
        sums.index_add_(0, row_of[start:stop], losses.cpu().double())
    return sums.tolist(), keep.sum(dim=1).tolist()


def example_losses(
    assistant: Assistant, examples: list[Example], batch_size: int, phase: str | None = None
) -> list[tuple[float, int]]:
    """(summed NLL, labelled tokens) of each example, batched by length; input order.

    `phase` names the work in progress lines (none without it).
    """
    import torch

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    assistant.model.eval()
    groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for group in progress.track(groups, phase, len(order), size=len):
        batch = pad_examples([examples[i] for i in group], assistant.tokenizer.pad_token_id)
        with torch.no_grad():
            sums, counts = row_losses(
                assistant.model, {k: v.to(assistant.device) for k, v in batch.items()}
            )
        for i, total, count in zip(group, sums, counts, strict=True):
            out[i] = (total, count)
    return out
