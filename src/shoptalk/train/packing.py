"""Packing: several examples share one sequence without seeing each other.

Our own code rather than a library's because it is where CPU training time
goes: padding is wasted compute (44% of tokens in the peers' default runs).
Each example keeps its own position ids starting at 0; transformers turns
restarting position ids into a block-diagonal causal mask when no attention
mask is given, so packed examples cannot attend across their borders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from shoptalk.modeling.chat_format import IGNORE, Example


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    # Output of the frozen bottom layers, when only the top layers train.
    hidden: torch.Tensor | None = None


def truncate(example: Example, max_len: int) -> Example:
    return Example(example.input_ids[:max_len], example.labels[:max_len])


def pack(examples: list[Example], max_len: int) -> list[Row]:
    """First-fit-decreasing into rows of at most `max_len` tokens."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    rows: list[Row] = []
    for i in order:
        ex = examples[i]
        n = len(ex.input_ids)
        row = next((r for r in rows if len(r.input_ids) + n <= max_len), None)
        if row is None:
            row = Row([], [], [])
            rows.append(row)
        row.input_ids += ex.input_ids
        row.labels += ex.labels
        row.position_ids += list(range(n))
    return rows


def batches(rows: list[Row], tokens_per_step: int, max_len: int, seed: int) -> list[list[Row]]:
    """Shuffle rows (seeded) and group them into steps of about `tokens_per_step` tokens."""
    per_step = max(1, tokens_per_step // max_len)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [[rows[i] for i in order[k : k + per_step]] for k in range(0, len(order), per_step)]


def end_to_end(rows: list[Row]) -> dict[str, torch.Tensor]:
    """All rows laid end to end as one sequence: no padding at all.

    Only for attention that finds example borders from the restarting position
    ids (`speed.fast_forward`'s, or flash attention's on a GPU); padding rows to
    the longest wasted 2% of a step's tokens on alpaca_en_demo.
    """
    batch = {
        "input_ids": torch.tensor([[t for r in rows for t in r.input_ids]]),
        "labels": torch.tensor([[t for r in rows for t in r.labels]]),
        "position_ids": torch.tensor([[p for r in rows for p in r.position_ids]]),
    }
    if all(r.hidden is not None for r in rows):
        batch["inputs_embeds"] = torch.cat([r.hidden for r in rows])[None]
    return batch


def collate(rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows to the longest; padding is a separate segment with no loss."""
    width = max(len(r.input_ids) for r in rows)
    ids, labels, positions = [], [], []
    for r in rows:
        pad = width - len(r.input_ids)
        ids.append(r.input_ids + [pad_id] * pad)
        labels.append(r.labels + [IGNORE] * pad)
        positions.append(r.position_ids + list(range(pad)))
    batch = {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
    }
    if all(r.hidden is not None for r in rows):
        batch["inputs_embeds"] = torch.stack(
            [torch.nn.functional.pad(r.hidden, (0, 0, 0, width - len(r.input_ids))) for r in rows]
        )
    return batch
