"""An answer from passages writes no number they do not hold (`modeling.copy_numbers`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tiny_model import build_digit_model

from shoptalk.modeling.copy_numbers import NumberGuard, number_pieces, pieces_from
from shoptalk.modeling.generate import Assistant, answer
from shoptalk.modeling.load import load_model, load_tokenizer

# A vocabulary's number pieces: single digits, separators, a few merged ones.
VOCAB = [str(d) for d in range(10)] + [",", ".", ":", "-", " 4", "15", "[", " days"]
PIECES = pieces_from(enumerate(VOCAB))
ID = {text: i for i, text in enumerate(VOCAB)}


def allowed(guard: NumberGuard, text: str) -> set[str]:
    """The number pieces that may follow `text`."""
    banned, only = guard.mask(text)
    pieces = {t for _, t in PIECES.pieces + PIECES.continuing}
    if only is not None:
        return {VOCAB[i] for i in only}
    return pieces - {VOCAB[i] for i in banned}


def test_a_number_starts_only_as_a_number_of_the_passages():
    guard = NumberGuard(PIECES, ["Claims are filed within 45 days.", "The fee is $1,200."])
    may = allowed(guard, "You have")
    assert {"4", " 4", "1"} <= may
    assert not {"2", "5", "7", "15"} & may  # 15 is no number of the passages


def test_a_number_begun_must_go_on_to_a_whole_one():
    guard = NumberGuard(PIECES, ["Claims are filed within 45 days."])
    assert allowed(guard, "within 4") == {"5"}  # "4" alone is not 45: only 5 may follow
    may = allowed(guard, "within 45")  # whole: it may end, but not grow to 450
    assert not any(p[0].isdigit() for p in may)
    banned, only = guard.mask("within 45")
    assert only is None and ID[" days"] not in banned


def test_thousands_separators_are_optional_and_a_sentence_may_end_after_a_number():
    guard = NumberGuard(PIECES, ["The fee is $1200, or 3.5 per pallet."])
    assert "2" in allowed(guard, "The fee is $1,")  # 1,200 is 1200
    assert "," in allowed(guard, "The fee is $1")
    assert "5" in allowed(guard, "It is 3.")  # 3.5
    banned, only = guard.mask("It is $1200.")  # the sentence may end
    assert only is None and ID[" days"] not in banned
    assert "," not in allowed(guard, "It is 3")  # "3,5" is not 3.5


def test_citation_markers_are_free():
    guard = NumberGuard(PIECES, ["No numbers here."])
    assert allowed(guard, "It is so [") >= {"7", "15"}
    assert allowed(guard, "It is so [1, ") >= {"7"}
    assert not {"7", "15"} & allowed(guard, "It is so ")  # outside a marker: none at all


def test_full_width_digits_are_the_same_numbers():
    guard = NumberGuard(PIECES, ["退货期限是７５天。"])
    assert "7" in allowed(guard, "退货期限是")
    assert allowed(guard, "退货期限是7") == {"5"}


@pytest.mark.parametrize("vector", [torch.zeros(len(VOCAB)), np.zeros(len(VOCAB))])
def test_apply_masks_a_copy_of_torch_and_numpy_logits(vector):
    guard = NumberGuard(PIECES, ["within 45 days"])
    masked = guard.apply(vector, "within 4")
    assert masked[ID["5"]] == 0 and masked[ID["7"]] == float("-inf")
    assert masked[ID[" days"]] == float("-inf")  # the number must go on
    assert vector[ID["7"]] == 0  # the caller's logits are left as they are


def test_a_tokenizers_pieces_are_its_number_tokens(tiny_model):
    pieces = number_pieces(load_tokenizer(str(tiny_model)))
    texts = [t for _, t in pieces.pieces]
    assert all(re.search(r"\d", t) for t in texts) and any(len(t.strip()) > 1 for t in texts)
    assert all(t[0] in ".,:/-" for _, t in pieces.continuing)


def test_a_model_that_writes_digits_writes_only_the_passages_numbers(tmp_path, tiny_model):
    folder = build_digit_model(tmp_path / "digits", tiny_model)
    tokenizer = load_tokenizer(str(folder))
    assistant = Assistant(load_model(str(folder), "cpu"), tokenizer, "cpu")
    asks = [[{"role": "user", "content": "How long is the claim window?"}]] * 2
    free, held = answer(
        assistant, asks, max_new_tokens=24, sources=[None, ["Claims: within 47 days [1]."]]
    )
    assert set(re.findall(r"\d+", free)) - {"47", "1"}  # unguarded: numbers of its own
    numbers = re.findall(r"\d+(?:[.,:/-]\d+)*", re.sub(r"\[[\d, ]*\]?", " ", held))
    assert numbers and set(numbers) <= {"47", "1"}


@pytest.mark.parametrize(
    ("setting", "tuned", "base"),
    [("tuned", True, False), ("always", True, True), ("never", False, False)],
)
def test_rag_copy_numbers_says_which_models_are_held_to_the_passages(setting, tuned, base):
    from shoptalk.config import RagSettings

    rag = RagSettings(copy_numbers=setting)
    assert rag.copies_numbers(tuned=True) is tuned and rag.copies_numbers(tuned=False) is base
    # How answers are decoded shapes no reader example nor abstention rule: no retraining.
    assert rag.shaping_dump() == RagSettings().shaping_dump()
