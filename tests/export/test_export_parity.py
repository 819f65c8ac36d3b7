"""The parity report says where differing answers part and how near a tie the reference had there."""

from __future__ import annotations

from pathlib import Path

import torch

from shoptalk.export.parity import Observation, compare, observe
from shoptalk.export.report import render_text


def observation(outputs: list[list[int]], margins: list[list[float]]) -> Observation:
    n = len(outputs)
    return Observation(
        texts=[f"prompt {i}" for i in range(n)],
        prompt_ids=[[1, 2]] * n,
        stop_ids=[2],
        last_logits=torch.zeros(n, 4),
        outputs=outputs,
        decoded=[" ".join(map(str, o)) for o in outputs],
        margins=margins,
    )


def test_a_flipped_answer_is_reported_with_the_reference_margin() -> None:
    reference = observation([[5, 6, 7], [8, 9]], [[1.5, 0.004, 2.0], [3.0, 3.0]])
    exported = observation([[5, 11, 7], [8, 9]], [[1.5, 0.01, 2.0], [3.0, 3.0]])

    result = compare(reference, exported, "gguf f16", logits_atol=None, greedy_bar=0.95)

    assert not result.passed and result.divergences == {0: (1, 0.004)}
    greedy = next(c for c in result.checks if c.name == "greedy outputs")
    assert greedy.detail.startswith("1/2 identical (50%; required 95%)")
    assert "top-2 logit margin where they first differ: max 0.004" in greedy.detail
    text = render_text(result, "run-x")
    assert (
        "--- prompt 1 (first different token: 2, the reference's top-2 logit margin there 0.004)"
        in text
    )


def test_a_longer_answer_differs_after_the_shorter_ends() -> None:
    reference = observation([[5, 6]], [[1.0, 2.0]])
    exported = observation([[5, 6, 7]], [[1.0, 2.0, 0.5]])

    result = compare(reference, exported, "hf", logits_atol=1e-3, greedy_bar=1.0)

    assert result.divergences == {0: (2, None)}


def test_observed_margins_are_the_top2_gaps_of_each_generated_token(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    from shoptalk.modeling.chat_format import stop_ids
    from shoptalk.modeling.load import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = load_tokenizer(str(tiny_model))
    prompts = [
        [{"role": "user", "content": "What is the claim window?"}],
        [{"role": "user", "content": "你好"}],
    ]

    seen = observe(model, tokenizer, prompts, stop_ids(tokenizer), max_new_tokens=6)

    assert [len(m) for m in seen.margins] == [len(o) for o in seen.outputs]
    top2 = seen.last_logits.topk(2, dim=-1).values
    first = [m[0] for m in seen.margins]
    torch.testing.assert_close(torch.tensor(first), top2[:, 0] - top2[:, 1])
