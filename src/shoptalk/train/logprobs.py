"""Log-probability of each packed sequence's labelled tokens, computed in chunks.

DPO compares whole answers, so it needs one number per sequence: the sum of
log p(token) over the answer's tokens. Like `loss.labelled_loss`, the output
layer runs only at labelled positions and a chunk at a time, so packed rows
never materialize the batch x length x vocabulary logits.
"""

from __future__ import annotations

import torch

from shoptalk.train.loss import CHUNK_TOKENS, decoder_and_head, next_token_targets


def sequence_logprobs(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], n_sequences: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log-probs, number of labelled tokens) for each sequence in the batch.

    `batch["sequence_ids"]` gives, for every position, which of the
    `n_sequences` sequences it belongs to (-1 for padding).
    """
    decoder, head = decoder_and_head(model)
    # No KV cache: transformers only builds the block-diagonal packed mask without one.
    hidden = decoder(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state
    targets, keep = next_token_targets(batch)
    hidden = hidden[:, :-1][keep]
    owner = batch["sequence_ids"][:, 1:][keep]
    targets = targets[keep]
    token_logps = []
    for start in range(0, targets.numel(), CHUNK_TOKENS):
        logits = head(hidden[start : start + CHUNK_TOKENS]).float()
        picked = targets[start : start + CHUNK_TOKENS, None]
        token_logps.append(logits.gather(-1, picked).squeeze(-1) - torch.logsumexp(logits, dim=-1))
    logps = torch.cat(token_logps) if token_logps else hidden.new_zeros(0, dtype=torch.float32)
    sums = logps.new_zeros(n_sequences).index_add(0, owner, logps)
    counts = torch.bincount(owner, minlength=n_sequences)
    return sums, counts
