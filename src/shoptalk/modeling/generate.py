"""Load a base or tuned model for answering, and answer prompts in batches.

Used by the scorecard, `shoptalk ask` and `shoptalk chat`, so every one of
them renders prompts and stops generation exactly the same way (the rules
themselves live in `chat_format`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoptalk import progress
from shoptalk.modeling.chat_format import ensure_chat_template, prompt_ids, stop_ids
from shoptalk.modeling.copy_numbers import NumberGuard, number_pieces
from shoptalk.modeling.gguf import GgufChat, answer_gguf
from shoptalk.modeling.load import load_model, load_tokenizer, pick_device

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

    from shoptalk.artifacts import RunArtifact
    from shoptalk.modeling.copy_numbers import NumberPieces


@dataclass
class Assistant:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: str
    tuned: bool = False  # a build's run (its adapter merged, or its weights), not the base


def load_assistant(
    base_path: str, run: RunArtifact | None = None, device: str = "auto"
) -> Assistant:
    """The base model, or the base with a run's adapter merged (or its full weights)."""
    device = pick_device(device)
    if run is None:
        tokenizer = load_tokenizer(base_path)
        ensure_chat_template(tokenizer)
        return Assistant(load_model(base_path, device), tokenizer, device)
    tokenizer = load_tokenizer(str(run.final))
    if not run.is_adapter:
        return Assistant(load_model(str(run.final), device), tokenizer, device, tuned=True)
    from peft import PeftModel

    # Merged weights answer faster than a model with adapters on every layer.
    model = PeftModel.from_pretrained(
        load_model(base_path, device), str(run.final)
    ).merge_and_unload()
    return Assistant(model, tokenizer, device, tuned=True)


def answer(
    assistant: Assistant | GgufChat,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    phase: str | None = None,
    sources: list[list[str] | None] | None = None,
) -> list[str]:
    """Greedy answers, batched with left padding; same order as the input.

    `sources[i]`, when given, holds the passages conversation i answers from: its
    answer writes no number they do not hold (`copy_numbers`).
    A `GgufChat` (an exported GGUF in llama.cpp) answers with the file's own
    template, tokenizer and stops, one conversation at a time.
    `phase` names the work in progress lines (none without it: a chat's one answer).
    """
    if isinstance(assistant, GgufChat):
        return answer_gguf(assistant, conversations, max_new_tokens, phase, sources)
    import torch

    tokenizer, model = assistant.tokenizer, assistant.model
    guards = guards_for(number_pieces(tokenizer) if sources else None, sources, len(conversations))
    encoded = [prompt_ids(tokenizer, messages) for messages in conversations]
    # Similar lengths in one batch waste less compute on padding.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    answers: list[str] = [""] * len(encoded)
    pad = tokenizer.pad_token_id
    model.eval()
    groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for group in progress.track(groups, phase, len(order), size=len):
        width = max(len(encoded[i]) for i in group)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in group])
        mask = torch.tensor(
            [[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in group]
        )
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(assistant.device),
                attention_mask=mask.to(assistant.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids(tokenizer),
                pad_token_id=pad,
                logits_processor=guarded([guards[i] for i in group], tokenizer, width),
            )
        for row, i in enumerate(group):
            answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return answers


def guards_for(
    pieces: NumberPieces | None, sources: list[list[str] | None] | None, n: int
) -> list[NumberGuard | None]:
    """One guard per conversation that has sources (`answer`'s `sources`), else None."""
    if pieces is None or sources is None:
        return [None] * n
    return [None if s is None else NumberGuard(pieces, s) for s in sources]


def guarded(
    guards: list[NumberGuard | None], tokenizer: PreTrainedTokenizerBase, width: int
) -> LogitsProcessorList | None:
    """The batch's number guards as a transformers logits processor (None: no row has one)."""
    if not any(guards):
        return None
    from transformers import LogitsProcessor, LogitsProcessorList

    class GuardNumbers(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
            for row, guard in enumerate(guards):
                if guard is not None:
                    text = tokenizer.decode(input_ids[row, width:], skip_special_tokens=True)
                    scores[row] = guard.apply(scores[row], text)
            return scores

    return LogitsProcessorList([GuardNumbers()])
