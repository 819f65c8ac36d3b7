"""The transformers engine: prompts in, streamed text deltas out, batched.

The decoding loop is our own rather than `model.generate`, because one batch
mixes requests that differ in what generate takes per batch: temperature,
top_p, seed, stop strings and max_tokens are per row here. A row leaves the
batch (its KV-cache slice dropped) as soon as it finishes or its client
disconnects, and every row streams its text as it is produced. Grouping by
parameters instead would split the batches that concurrent users actually
send, which almost always differ in something.

Prompts are rendered exactly as at training and evaluation time
(`shoptalk.train.render.prompt_ids`), generation stops at the same end-of-turn
tokens (`shoptalk.generate.stop_ids`), and a prompt never gets truncated: one
that does not fit the context is a 400 naming the counts.

The upstream engine (`upstream.py`) has the same interface: `names`,
`prepare_chat`, `prepare_text`, `start` (queue or refuse now, stream later),
`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoptalk.serve.batcher import Batcher, Job
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    import torch

    from shoptalk.serve.catalog import Catalog, Loaded, ModelEntry


@dataclass
class Params:
    """Sampling settings of one request; `max_tokens` None means the server's default."""

    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Delta:
    """New text for one choice; `finish_reason` set on its last delta."""

    index: int
    text: str
    finish_reason: str | None = None


@dataclass
class Prepared:
    """A request checked and tokenized, ready to run."""

    model: str
    adapter: str
    prompt_tokens: int
    params: Params
    prompts: list[Any]
    n: int = 1
    completion_tokens: int = 0


@dataclass
class Row:
    """One choice being generated, owned by the worker thread once submitted."""

    job: Job
    index: int
    prompt: list[int]
    params: Params
    generator: torch.Generator | None = None
    ids: list[int] = field(default_factory=list)
    sent: int = 0


class TransformersEngine:
    def __init__(
        self,
        catalog: Catalog,
        default_max_tokens: int = 256,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        max_queue: int = 64,
        system_prompt: str = "",
    ) -> None:
        self.catalog = catalog
        self.system_prompt = system_prompt
        self.default_max_tokens = default_max_tokens
        self.forward_calls = 0
        self.cancelled_rows = 0
        self.batcher = Batcher(self._run_batch, max_batch_size, batch_wait_ms, max_queue)

    async def names(self) -> list[str]:
        return self.catalog.names()

    @property
    def queue_depth(self) -> int:
        return self.batcher.depth

    async def prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        from shoptalk.train.render import prompt_ids

        entry = self.catalog.resolve(model)
        tokenizer = self.catalog.tokenizer(entry)
        if self.system_prompt and messages[0]["role"] != "system":
            # As at training time (render.with_system): the project's system prompt
            # goes first unless the conversation brings its own.
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        ids = await asyncio.to_thread(prompt_ids, tokenizer, messages)
        return self._prepared(entry, model, [ids], params, n)

    async def prepare_text(
        self, model: str, prompts: list[str], params: Params, n: int
    ) -> Prepared:
        from shoptalk.train.render import encode

        entry = self.catalog.resolve(model)
        tokenizer = self.catalog.tokenizer(entry)
        ids = [await asyncio.to_thread(encode, tokenizer, p) for p in prompts]
        return self._prepared(entry, model, ids, params, n)

    def _prepared(
        self, entry: ModelEntry, model: str, ids: list[list[int]], params: Params, n: int
    ) -> Prepared:
        context = self.catalog.context_length(entry)
        longest = max(len(p) for p in ids)
        max_tokens = params.max_tokens or min(self.default_max_tokens, context - longest)
        if longest + max_tokens > context or max_tokens < 1:
            raise ApiError(
                400,
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {longest + max(max_tokens, 1)} tokens ({longest} in the prompt, "
                f"{max(max_tokens, 1)} for the completion). Shorten the prompt or lower max_tokens.",
                code="context_length_exceeded",
                param="messages",
            )
        params.max_tokens = max_tokens
        adapter = "" if entry.kind == "base" else self.catalog.verify(entry)[:16]
        return Prepared(model, adapter, sum(len(p) for p in ids), params, ids, n)

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Queue the request (503 at once if the queue is full); then iterate its deltas."""
        entry = self.catalog.resolve(prepared.model)
        job = Job(key=entry, rows=[], loop=asyncio.get_running_loop())
        job.rows = [
            Row(job, p * prepared.n + i, ids, prepared.params, seeded(prepared.params.seed, i))
            for p, ids in enumerate(prepared.prompts)
            for i in range(prepared.n)
        ]
        self.batcher.submit(job)
        return self._deltas(job, prepared)

    async def _deltas(self, job: Job, prepared: Prepared) -> AsyncIterator[Delta]:
        """Deltas as the worker produces them; closing the iterator cancels the rows."""
        open_rows = len(job.rows)
        try:
            while open_rows:
                event = await job.events.get()
                if isinstance(event, Exception):
                    raise event
                prepared.completion_tokens += event.tokens
                if event.delta is None:
                    continue
                if event.delta.finish_reason is not None:
                    open_rows -= 1
                yield event.delta
        finally:
            job.cancelled = True

    async def close(self) -> None:
        await asyncio.to_thread(self.batcher.close)

    # --- the worker thread

    def _run_batch(self, key: Hashable, jobs: list[Job]) -> None:
        import torch

        loaded = self.catalog.acquire(key)
        rows = [row for job in jobs for row in job.rows]
        with torch.inference_mode(), active_adapter(loaded):
            self._decode(loaded, rows)

    def _decode(self, loaded: Loaded, rows: list[Row]) -> None:
        import torch

        from shoptalk.generate import stop_ids

        tokenizer, model = loaded.tokenizer, loaded.model
        device = next(model.parameters()).device
        eos = set(stop_ids(tokenizer))
        width = max(len(r.prompt) for r in rows)
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])
        # Left padding shifts real tokens right; positions must count real tokens only.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        cache = None
        live = list(rows)
        while live:
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            self.forward_calls += 1
            cache = out.past_key_values
            tokens = [sample(out.logits[i, -1], row) for i, row in enumerate(live)]
            keep = [
                i for i, row in enumerate(live) if not self._advance(row, tokens[i], eos, tokenizer)
            ]
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                positions = positions[index]
                live = [live[i] for i in keep]
            ids = torch.tensor([[tokens[i]] for i in keep], device=device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1

    def _advance(self, row: Row, token: int, eos: set[int], tokenizer: Any) -> bool:
        """Take one token into `row`; send its new text; True when the row is done."""
        if row.job.cancelled:
            self.cancelled_rows += 1
            return True
        finish = None
        if token in eos:
            finish = "stop"
        else:
            row.ids.append(token)
        text = tokenizer.decode(row.ids, skip_special_tokens=True)
        for stop in row.params.stop:
            at = text.find(stop)
            if at != -1:
                text, finish = text[:at], "stop"
        if finish is None and len(row.ids) >= row.params.max_tokens:
            finish = "length"
        if finish is None:
            # Hold back what could still become a stop string or a split character.
            hold = max((len(s) - 1 for s in row.params.stop), default=0)
            safe = len(text) - hold
            while safe > row.sent and text[safe - 1] == "\ufffd":
                safe -= 1
            text = text[: max(safe, row.sent)]
        new = text[row.sent :]
        row.sent = len(text)
        delta = Delta(row.index, new, finish) if new or finish else None
        row.job.send(Event(delta, tokens=1))
        return finish is not None


@dataclass
class Event:
    delta: Delta | None
    tokens: int


def seeded(seed: int | None, choice: int) -> torch.Generator | None:
    """Each choice gets its own generator, so a seed reproduces regardless of batch-mates."""
    if seed is None:
        return None
    import torch

    return torch.Generator().manual_seed(seed + choice)


def sample(logits: torch.Tensor, row: Row) -> int:
    import torch

    params = row.params
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set of tokens whose mass reaches top_p (always the first).
        drop = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs[drop] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=row.generator))


def active_adapter(loaded: Loaded) -> contextlib.AbstractContextManager:
    """The base model inside a PeftModel runs with every adapter switched off."""
    if loaded.adapter is None and hasattr(loaded.model, "disable_adapter"):
        return loaded.model.disable_adapter()
    return contextlib.nullcontext()
