"""Tiny models taught in the test: full weights trained on a few question-answer pairs."""

from __future__ import annotations

from pathlib import Path


def teach(
    base: Path,
    out: Path,
    pairs: list[tuple[str, str]],
    system_prompt: str,
    steps: int = 60,
    lr: float = 3e-2,
) -> Path:
    """`base` trained on `pairs` (one full batch, AdamW), saved to `out` as a model folder."""
    import torch

    from shoptalk.modeling.chat_format import encode_conversation
    from shoptalk.modeling.load import load_model, load_tokenizer
    from shoptalk.records import Conversation, Message
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import Row, collate

    tokenizer, model = load_tokenizer(str(base)), load_model(str(base), "cpu")
    examples = [
        encode_conversation(
            tokenizer,
            Conversation(
                id=str(i),
                messages=[Message(role="user", content=q), Message(role="assistant", content=a)],
                source="taught",
            ),
            system_prompt,
        )
        for i, (q, a) in enumerate(pairs)
    ]
    rows = [Row(e.input_ids, e.labels, list(range(len(e.input_ids)))) for e in examples]
    batch = collate(rows, tokenizer.pad_token_id)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        total, count = labelled_loss(model, batch)
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
