"""Log-likelihood scoring of answers: the numbers training's loss gives, one example at a time."""

from __future__ import annotations

import pytest

from shoptalk.modeling.score import example_losses, pad_examples

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [
    ("Why is the sky blue?", "Light scatters."),
    ("怎么煮鸡蛋？", "水开后煮八分钟。"),
    ("Hi", "Hello! How can I help you today with your order?"),
]


def test_example_losses_equal_the_training_loss_of_each_example(tiny_model):
    import torch

    from shoptalk.modeling.chat_format import encode_conversation
    from shoptalk.modeling.generate import load_assistant
    from shoptalk.records import Conversation, Message
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import Row, collate

    assistant = load_assistant(str(tiny_model), None, "cpu")
    examples = [
        encode_conversation(
            assistant.tokenizer,
            Conversation(
                id=str(i),
                messages=[Message(role="user", content=q), Message(role="assistant", content=a)],
                source="t",
            ),
            "You are X.",
        )
        for i, (q, a) in enumerate(PAIRS)
    ]
    scored = example_losses(assistant, examples, batch_size=2)
    for example, (total, count) in zip(examples, scored, strict=True):
        row = Row(example.input_ids, example.labels, list(range(len(example.input_ids))))
        with torch.no_grad():
            expected, labelled = labelled_loss(
                assistant.model, collate([row], assistant.tokenizer.pad_token_id)
            )
        assert count == labelled > 0
        assert total == pytest.approx(float(expected), rel=1e-5, abs=1e-5)


def test_padded_examples_are_training_rows(tiny_model):
    from shoptalk.modeling.chat_format import Example
    from shoptalk.train.packing import Row, collate

    examples = [Example([5, 6, 7], [-100, 6, 7]), Example([8, 9], [-100, 9])]
    rows = [Row(e.input_ids, e.labels, list(range(len(e.input_ids)))) for e in examples]
    ours, theirs = pad_examples(examples, 0), collate(rows, 0)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].tolist() == theirs[key].tolist(), key
