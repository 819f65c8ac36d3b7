"""Log-likelihood scoring of answers: the numbers training's loss gives, one example at a time."""

from __future__ import annotations

import pytest
from tiny_model import qa_examples, training_rows

from shoptalk.modeling.score import example_losses, pad_examples

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [
    ("Why is the sky blue?", "Light scatters."),
    ("怎么煮鸡蛋？", "水开后煮八分钟。"),
    ("Hi", "Hello! How can I help you today with your order?"),
]


def test_example_losses_equal_the_training_loss_of_each_example(tiny_model):
    import torch

    from shoptalk.modeling.generate import load_assistant
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import collate

    assistant = load_assistant(str(tiny_model), None, "cpu")
    examples = qa_examples(assistant.tokenizer, PAIRS)
    scored = example_losses(assistant, examples, batch_size=2)
    for row, (total, count) in zip(training_rows(examples), scored, strict=True):
        with torch.no_grad():
            expected, labelled = labelled_loss(
                assistant.model, collate([row], assistant.tokenizer.pad_token_id)
            )
        assert count == labelled > 0
        assert total == pytest.approx(float(expected), rel=1e-5, abs=1e-5)


def test_padded_examples_are_training_rows(tiny_model):
    from shoptalk.modeling.chat_format import Example
    from shoptalk.train.packing import collate

    examples = [Example([5, 6, 7], [-100, 6, 7]), Example([8, 9], [-100, 9])]
    ours, theirs = pad_examples(examples, 0), collate(training_rows(examples), 0)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].tolist() == theirs[key].tolist(), key
