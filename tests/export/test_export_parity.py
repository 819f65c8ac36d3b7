"""The parity report says where differing answers part and how near a tie the reference had there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shoptalk.export.parity import Observation, compare, observe
from shoptalk.export.report import render_text


def observation(
    outputs: list[list[int]],
    margins: list[list[float]],
    runners_up: list[list[int]] | None = None,
    logits: torch.Tensor | None = None,
) -> Observation:
    n = len(outputs)
    return Observation(
        texts=[f"prompt {i}" for i in range(n)],
        prompt_ids=[[1, 2]] * n,
        stop_ids=[2],
        last_logits=torch.zeros(n, 4) if logits is None else logits,
        outputs=outputs,
        decoded=[" ".join(map(str, o)) for o in outputs],
        margins=margins,
        close=[
            [{r: m} for r, m in zip(row_r, row_m, strict=False)]
            for row_r, row_m in zip(
                runners_up or [[0] * len(o) for o in outputs], margins, strict=True
            )
        ],
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


def test_a_flip_to_the_runner_up_within_the_measured_rounding_is_a_near_tie() -> None:
    # Prompt 0 flips to the reference's runner-up (token 11) where it led by 0.05;
    # prompt 1 flips to a token the reference did not rank second; prompt 2 flips to
    # the runner-up, but where the reference led by 2 logits: rounding cannot do that.
    outputs = [[5, 6, 7], [8, 9], [3, 4], [1]]
    reference = observation(
        outputs,
        [[1.0, 0.05, 1.0], [0.01, 1.0], [2.0, 1.0], [1.0]],
        [[0, 11, 0], [12, 0], [13, 0], [0]],
    )
    shifted = torch.zeros(4, 4)
    shifted[0, 0] = 0.04  # the export moved a first-token logit by 0.04: tolerance 0.08
    exported = observation([[5, 11, 7], [99, 9], [13, 4], [1]], [[1.0] * 3] * 4, logits=shifted)

    result = compare(reference, exported, "gguf q8_0", None, greedy_bar=0.5, near_tie_cap=1.0)

    assert result.near_ties == [0]
    greedy = next(c for c in result.checks if c.name == "greedy outputs")
    assert greedy.detail.startswith(
        "1/4 identical, 1 near ties (reference margin <= 0.08 below its choice)"
    )
    assert "2 real differences (50% agree; required 50%)" in greedy.detail and greedy.passed
    text = render_text(result, "run-x")
    assert "Answers that differ: 3 of 4 (1 near ties, 2 real differences)" in text
    assert "the reference's top-2 logit margin there 0.05; near tie)" in text
    # Real differences are listed before near ties.
    assert text.index("--- prompt 2 ") < text.index("--- prompt 1 ")


def test_without_a_near_tie_allowance_every_flip_counts() -> None:
    reference = observation([[5, 6]], [[1.0, 0.0001]], [[0, 11]])
    exported = observation([[5, 11]], [[1.0, 1.0]], logits=torch.full((1, 4), 0.5))

    result = compare(reference, exported, "hf", logits_atol=None, greedy_bar=1.0)

    assert result.near_ties == [] and not result.passed


def test_a_flip_to_any_close_candidate_within_the_rounding_is_a_near_tie() -> None:
    # Where prompt 0's answers part, the reference ranked token 11 second (0.05 lower)
    # and token 12 third (0.07 lower); the export took the third: rounding explains it.
    # Prompt 1's export took a token the reference ranked 0.5 lower: more than rounding.
    reference = observation([[5, 6], [8, 9]], [[1.0, 0.05], [1.0, 0.02]])
    reference.close = [
        [{1: 1.0}, {11: 0.05, 12: 0.07, 13: 0.4}],
        [{1: 1.0}, {14: 0.02, 15: 0.5}],
    ]
    exported = observation([[5, 12], [8, 15]], [[1.0, 1.0]] * 2, logits=torch.full((2, 4), 0.04))

    result = compare(reference, exported, "gguf q8_0", None, greedy_bar=1.0, near_tie_cap=1.0)

    assert result.near_ties == [0] and not result.passed
    greedy = next(c for c in result.checks if c.name == "greedy outputs")
    assert "1 near ties (reference margin <= 0.08 below its choice), 1 real differences" in (
        greedy.detail
    )


def test_observed_close_tokens_are_the_next_ranked_with_their_gaps(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    from shoptalk.export.parity import CLOSE
    from shoptalk.modeling.chat_format import stop_ids
    from shoptalk.modeling.load import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = load_tokenizer(str(tiny_model))
    prompts = [[{"role": "user", "content": "Hi"}]]

    seen = observe(model, tokenizer, prompts, stop_ids(tokenizer), max_new_tokens=4)

    assert [len(r) for r in seen.close] == [len(o) for o in seen.outputs]
    best = seen.last_logits[0].topk(CLOSE)
    assert list(seen.close[0][0]) == best.indices[1:].tolist()
    gaps = (best.values[0] - best.values[1:]).tolist()
    assert list(seen.close[0][0].values()) == pytest.approx(gaps)
    assert seen.margins[0][0] == pytest.approx(gaps[0])
