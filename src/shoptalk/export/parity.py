"""Does the exported artifact behave like the model that was tested?

The same prompts go through the tuned model in memory (the reference) and
through the artifact loaded back from disk by the runtime its users run it
in: a merged HF folder by transformers, a GGUF by llama.cpp itself
(`observe_llamacpp`). Each side renders them with its own chat template and
tokenizer and stops at its own stop tokens, because that is what a user of
the artifact gets. Then:

- chat template: identical rendered text;
- token ids: identical prompt ids;
- stop tokens: the export stops at every token the reference stops at (llama.cpp
  also ends at the other end-of-generation tokens it knows; an answer they cut
  short shows up as a different answer);
- logits: next-token logits within tolerance (HF only; GGUF weights are rounded);
- greedy outputs: identical (HF); for GGUF f32/f16/bf16/q8_0, identical or a near
  tie on every prompt; for the k-quants, counted and reported.

A near tie is a flip that rounding explains: where the answers first part,
the export chose a token the reference itself ranked just below its own
choice (among its `CLOSE` best), by less than the export's rounding moves a
logit difference (twice the largest first-token logit difference measured on
these prompts, at most `NEAR_TIE_CAP`). Any other difference is real: a token
the reference ranked far below, or a flip where it was confident. Near ties
are counted and listed apart from real differences in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoptalk.modeling.chat_format import encode, render_prompt

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from shoptalk.modeling.gguf import GgufChat

Messages = list[dict[str, str]]

# Always asked, besides the project's held-out questions: short, long, Chinese,
# multi-turn, so a template or tokenizer difference shows up somewhere.
FIXED_PROMPTS: list[Messages] = [
    [{"role": "user", "content": "Hello! Who are you?"}],
    [{"role": "user", "content": "List three things you can help me with."}],
    [{"role": "user", "content": "你好，请问你们的营业时间是什么？"}],
    [{"role": "user", "content": "退货需要提供哪些材料？请详细说明。"}],
    [
        {"role": "user", "content": "What is the claim window?"},
        {"role": "assistant", "content": "I'm not sure."},
        {"role": "user", "content": "Please check again, it matters."},
    ],
]
# GGUF types whose rounding is fine enough that every answer must be identical or a near tie.
EXACT_GGUF = ("f32", "f16", "bf16", "q8_0")
# A reference margin above this many logits is never a near tie, however coarse the rounding.
NEAR_TIE_CAP = 1.0
# How many of the reference's best tokens at each step a near tie may have chosen from.
CLOSE = 5


@dataclass
class Observation:
    """What one model does with the prompts."""

    texts: list[str]
    prompt_ids: list[list[int]]
    stop_ids: list[int]
    last_logits: torch.Tensor  # [prompts, vocab]: the first generated position
    outputs: list[list[int]]  # greedy continuation, cut after the first stop token
    decoded: list[str]
    margins: list[list[float]]  # top-1 minus top-2 logit at each generated token
    # At each generated token, the next `CLOSE - 1` best: token id -> how far below the top.
    close: list[list[dict[int, float]]] = field(default_factory=list)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class ParityResult:
    artifact: str
    checks: list[Check]
    prompts: list[str] = field(default_factory=list)
    reference: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)
    # Per prompt whose answer differs: (first differing token, reference's top-2 margin there).
    divergences: dict[int, tuple[int, float | None]] = field(default_factory=dict)
    # The differing prompts whose first difference is a near tie (see the module's docstring).
    near_ties: list[int] = field(default_factory=list)
    # False where the greedy answers' agreement is reported but not required (k-quants).
    greedy_required: bool = True

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def observe(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    stops: list[int],
    max_new_tokens: int = 32,
    batch_size: int = 8,
    done: Callable[[int], None] | None = None,
) -> Observation:
    """Greedy generation in left-padded batches; both sides batch identically.

    `done(n)` is called after each batch with the number of prompts it answered.
    """
    import torch

    texts = [render_prompt(tokenizer, messages) for messages in prompts]
    ids = [encode(tokenizer, text) for text in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    logits: list[torch.Tensor] = []
    outputs: list[list[int]] = []
    margins: list[list[float]] = []
    close: list[list[dict[int, float]]] = []
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        group = ids[start : start + batch_size]
        width = max(len(g) for g in group)
        batch = torch.tensor([[pad] * (width - len(g)) + g for g in group], device=device)
        mask = torch.tensor([[0] * (width - len(g)) + [1] * len(g) for g in group], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=batch,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=pad,
                output_logits=True,
                return_dict_in_generate=True,
            )
        logits.append(out.logits[0].float().cpu())
        cut = [cut_at_stop(row[width:].tolist(), stops) for row in out.sequences]
        best = [step.float().topk(CLOSE, dim=-1) for step in out.logits]
        values = torch.stack([t.values for t in best], dim=1)  # [batch, steps, CLOSE]
        gaps = (values[..., :1] - values).cpu().tolist()
        tokens = torch.stack([t.indices for t in best], dim=1).cpu().tolist()
        for row_gaps, row_tokens, c in zip(gaps, tokens, cut, strict=True):
            margins.append([g[1] for g in row_gaps[: len(c)]])
            steps = zip(row_tokens[: len(c)], row_gaps[: len(c)], strict=True)
            close.append([dict(zip(t[1:], g[1:], strict=True)) for t, g in steps])
        outputs += cut
        if done:
            done(len(group))
    decoded = [tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]
    return Observation(
        texts, ids, sorted(stops), torch.cat(logits), outputs, decoded, margins, close
    )


def observe_llamacpp(
    chat: GgufChat,
    prompts: list[Messages],
    max_new_tokens: int = 32,
    done: Callable[[int], None] | None = None,
) -> Observation:
    """What llama.cpp does with the prompts: the file's template, tokenizer, stops; greedy."""
    import torch

    texts = [chat.render(messages) for messages in prompts]
    ids = [chat.encode(text) for text in texts]
    answers = []
    for prompt in ids:
        answers.append(chat.greedy(prompt, max_new_tokens))
        if done:
            done(1)
    return Observation(
        texts,
        ids,
        sorted(chat.stop_ids),
        torch.stack([torch.from_numpy(a.first_logits) for a in answers]),
        [a.tokens for a in answers],
        [chat.decode(a.tokens).strip() for a in answers],
        [a.margins for a in answers],
        [a.close for a in answers],
    )


def cut_at_stop(ids: list[int], stops: list[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stops:
            return ids[: i + 1]
    return ids


def compare(
    reference: Observation,
    exported: Observation,
    artifact: str,
    logits_atol: float | None,
    greedy_bar: float | None,
    near_tie_cap: float = 0.0,
) -> ParityResult:
    """`logits_atol=None` reports the logits difference without failing on it.

    `near_tie_cap` > 0 counts near ties (up to that margin) as agreeing answers;
    `greedy_bar=None` reports the greedy answers' agreement without failing on it.
    """
    n = len(reference.texts)
    checks = [
        _same_items("chat template", reference.texts, exported.texts, "rendered prompt"),
        _same_items("token ids", reference.prompt_ids, exported.prompt_ids, "prompt's ids"),
        _stops_check(reference.stop_ids, exported.stop_ids),
        _logits_check(reference, exported, logits_atol),
    ]
    same = sum(a == b for a, b in zip(reference.outputs, exported.outputs, strict=True))
    divergences = {
        i: first_difference(reference, exported, i)
        for i in range(n)
        if reference.outputs[i] != exported.outputs[i]
    }
    tolerance = min(near_tie_cap, 2 * max_logit_difference(reference, exported))
    ties = [i for i in divergences if is_near_tie(reference, exported, i, tolerance)]
    rate = (same + len(ties)) / n if n else 1.0
    required = "reported, not checked" if greedy_bar is None else f"required {greedy_bar:.0%}"
    if near_tie_cap > 0:
        real = len(divergences) - len(ties)
        detail = (
            f"{same}/{n} identical, {len(ties)} near ties (reference margin <= "
            f"{tolerance:.3g} below its choice), {real} real differences "
            f"({rate:.0%} agree; {required})"
        )
    else:
        detail = f"{same}/{n} identical ({rate:.0%}; {required})"
    gaps = [m for _, m in divergences.values() if m is not None]
    if gaps:
        # A flip where the reference itself nearly tied is rounding; a wide margin is a bug.
        detail += (
            f"; the reference's top-2 logit margin where they first differ: max {max(gaps):.3g}"
        )
    passed = greedy_bar is None or rate >= greedy_bar
    checks.append(Check("greedy outputs", passed, detail))
    return ParityResult(
        artifact,
        checks,
        prompts=list(reference.texts),
        reference=reference.decoded,
        exported=exported.decoded,
        divergences=divergences,
        near_ties=ties,
        greedy_required=greedy_bar is not None,
    )


def max_logit_difference(reference: Observation, exported: Observation) -> float:
    """How far the export moved any first-token logit: its rounding, measured."""
    if reference.last_logits.shape != exported.last_logits.shape:
        return 0.0
    return float((reference.last_logits - exported.last_logits).abs().max())


def is_near_tie(reference: Observation, exported: Observation, i: int, tolerance: float) -> bool:
    """Prompt i first differs where the export took a token the reference ranked a hair lower."""
    k, _ = first_difference(reference, exported, i)
    theirs, close = exported.outputs[i], reference.close[i] if reference.close else []
    if k >= len(theirs) or k >= len(close):
        return False
    gap = close[k].get(theirs[k])
    return gap is not None and gap <= tolerance


def first_difference(
    reference: Observation, exported: Observation, i: int
) -> tuple[int, float | None]:
    """Prompt i's first differing token and the reference's top-2 logit margin there."""
    ours, theirs = reference.outputs[i], exported.outputs[i]
    pairs = enumerate(zip(ours, theirs, strict=False))
    k = next((j for j, (x, y) in pairs if x != y), min(len(ours), len(theirs)))
    margins = reference.margins[i]
    return k, (margins[k] if k < len(margins) else None)


def _same_items(name: str, a: list, b: list, what: str) -> Check:
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if not differ:
        return Check(name, True, f"identical on all {len(a)} prompts")
    i = differ[0]
    return Check(
        name,
        False,
        f"differs on {len(differ)}/{len(a)} prompts; first, prompt {i + 1}:\n"
        f"    reference: {a[i]!r}\n    export:    {b[i]!r}",
    )


def _stops_check(reference: list[int], exported: list[int]) -> Check:
    missing = sorted(set(reference) - set(exported))
    extra = sorted(set(exported) - set(reference))
    detail = f"reference {reference}, export {exported}"
    if missing:
        detail += f"; the export does not stop at {missing}"
    elif extra:
        detail += f"; the export also stops at {extra}"
    return Check("stop tokens", not missing, detail)


def _logits_check(reference: Observation, exported: Observation, atol: float | None) -> Check:
    if reference.last_logits.shape != exported.last_logits.shape:
        shapes = f"{tuple(reference.last_logits.shape)} vs {tuple(exported.last_logits.shape)}"
        return Check("logits", False, f"different shapes {shapes}")
    diff = (reference.last_logits - exported.last_logits).abs().max().item()
    if atol is None:
        return Check("logits", True, f"max |difference| {diff:.4g} (reported, not checked)")
    return Check("logits", diff <= atol, f"max |difference| {diff:.4g} (tolerance {atol:g})")


def configured_stop_ids(model: PreTrainedModel) -> list[int]:
    """What transformers and vLLM stop at: the generation config's eos tokens."""
    eos = model.generation_config.eos_token_id
    return sorted(eos if isinstance(eos, list) else [eos] if eos is not None else [])
