"""Cross-entropy computed only where there is a label, in chunks.

The output layer of a small model is a large share of its FLOPs (SmolLM2's
49k-word projection is a fifth of them) and its fp32 logits dominate memory.
Running it only at labelled positions skips the prompt and padding tokens, and
chunking bounds the logits held at once. This is why we call the decoder and
the head ourselves instead of `model(..., labels=...)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shoptalk.train.render import IGNORE
from shoptalk.train.speed import fast_forward

CHUNK_TOKENS = 1024


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body and output layer of a (possibly PEFT-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


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
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    hidden = hidden[:, :-1][keep]
    targets = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), CHUNK_TOKENS):
        logits = head(hidden[start : start + CHUNK_TOKENS]).float()
        total = total + F.cross_entropy(
            logits, targets[start : start + CHUNK_TOKENS], reduction="sum"
        )
    return total, int(targets.numel())


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
