"""Train only the top layers, and compute the frozen bottom once.

When only the top N of L decoder layers learn, the bottom L-N layers give the
same output for a packed row in every epoch: we run them once per row, keep
their output, and from then on each step runs N layers forward and backward
instead of L. On a CPU this is the difference between a few passes over an
organization's data and the many passes that make facts stick.

This leans on one property of transformers' decoders: the body accepts
`inputs_embeds` and runs whatever is in `.layers`. `check_equivalence` proves
that property for the model at hand before training relies on it (a model
that rescales its embeddings inside `forward`, like Gemma, fails the check and
trains without the cache).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from shoptalk import progress
from shoptalk.train.loss import decoder_and_head, labelled_loss
from shoptalk.train.packing import Row, collate

log = logging.getLogger(__name__)


def freeze_bottom(model: torch.nn.Module, n_top: int) -> int:
    """Freeze everything below the top `n_top` layers; returns the first trainable layer."""
    decoder, _ = decoder_and_head(model)
    first = max(0, len(decoder.layers) - n_top)
    top = {id(p) for layer in decoder.layers[first:] for p in layer.parameters()}
    for p in model.parameters():
        if id(p) not in top:
            p.requires_grad_(False)
    return first


@contextmanager
def only_layers(model: torch.nn.Module, start: int, stop: int | None = None) -> Iterator[None]:
    """While inside, the decoder body runs only layers[start:stop]."""
    decoder, _ = decoder_and_head(model)
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[start:stop])
    try:
        yield
    finally:
        decoder.layers = layers


@torch.no_grad()
def bottom_output(
    model: torch.nn.Module, rows: list[Row], first: int, pad_id: int, device: str
) -> torch.Tensor:
    """Hidden states entering layer `first` (first >= 1) for a batch of rows, padded like `collate`."""
    decoder, _ = decoder_and_head(model)
    batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
    captured: list[torch.Tensor] = []

    # A hook on the last frozen layer: the body's own output is after the final norm.
    def keep(_module: torch.nn.Module, _args: object, output: object) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = decoder.layers[first - 1].register_forward_hook(keep)
    try:
        with only_layers(model, 0, first):
            decoder(
                input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
            )
    finally:
        handle.remove()
    return captured[0]


def cache_rows(
    model: torch.nn.Module, rows: list[Row], first: int, pad_id: int, device: str
) -> None:
    """Store each row's bottom output on the row (one row at a time bounds memory)."""
    was_training = model.training
    model.eval()
    for row in progress.track(rows, f"training: running the {first} frozen layers once"):
        row.hidden = bottom_output(model, [row], first, pad_id, device)[0].cpu()
    model.train(was_training)


def cache_bytes(rows: list[Row], hidden_size: int) -> int:
    return sum(len(r.input_ids) for r in rows) * hidden_size * 4


def check_equivalence(
    model: torch.nn.Module, row: Row, first: int, pad_id: int, device: str
) -> bool:
    """Does running the top layers on the cached bottom reproduce the full model's loss?"""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        batch = {k: v.to(device) for k, v in collate([row], pad_id).items()}
        full, _ = labelled_loss(model, batch)
        batch["inputs_embeds"] = bottom_output(model, [row], first, pad_id, device)
        with only_layers(model, first):
            split, _ = labelled_loss(model, batch)
    model.train(was_training)
    same = torch.allclose(full, split, rtol=1e-4, atol=1e-3)
    if not same:
        log.warning("frozen-layer cache disabled: split loss %.5f != full loss %.5f", split, full)
    return same
