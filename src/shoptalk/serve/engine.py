"""The transformers engine: prompts in, streamed text deltas out, batched.

The decoding loop is our own rather than `model.generate`, because one batch
mixes requests that differ in what generate takes per batch: temperature,
top_p, seed, stop strings and max_tokens are per row here. A row leaves the
batch (its KV-cache slice dropped) as soon as it finishes or its client
disconnects, new requests join between steps, and every row streams its text
as it is produced. Grouping by
parameters instead would split the batches that concurrent users actually
send, which almost always differ in something.

Prompts are rendered exactly as at training and evaluation time
(`shoptalk.modeling.chat_format.prompt_ids`), generation stops at the same end-of-turn
tokens (`shoptalk.modeling.chat_format.stop_ids`), and a prompt never gets truncated: one
that does not fit the context is a 400 naming the counts.

Every engine, this one, the llama.cpp one (`llamacpp.py`) and the upstream one
(`upstream.py`), implements `Engine`: the routes, limits, audit and metrics know
nothing else of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shoptalk.modeling.copy_numbers import NumberGuard, number_pieces
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
    # With retrieval: the passages answered from; the reply of a tuned model (and of the
    # base with `numbers_for_base`) writes no number they do not hold
    # (rag.copy_numbers, modeling.copy_numbers). None: any number.
    numbers_from: list[str] | None = None
    numbers_for_base: bool = False


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


@runtime_checkable
class Engine(Protocol):
    """What answers the inference routes: prompts in, streamed text deltas out."""

    # The project's system prompt, put first unless a conversation brings its own
    # ("" when the engine's server applies its own).
    system_prompt: str

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (a gauge in /metrics)."""

    async def names(self) -> list[str]:
        """The model names this engine serves."""

    async def prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        """Check and count a chat request (400/404 for the client) before any work."""

    async def prepare_text(
        self, model: str, prompts: list[str], params: Params, n: int
    ) -> Prepared:
        """Check and count a text completion request before any work."""

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Queue the request now (or refuse it: 503), and return its deltas to iterate."""

    async def close(self) -> None:
        """Finish what is running and release the model or connection."""


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
    text: str = ""  # the answer so far, decoded (what its number guard reads)
    guard: NumberGuard | None = None  # from params.numbers_from, for the model's tokenizer


class CatalogEngine:
    """What the in-process engines share: names from the catalog, prompts checked and tokenized.

    Prompts are rendered with the model's own tokenizer (the HF folder of an
    export, or the base model's), so every engine feeds the model the ids it
    was trained and evaluated on.
    """

    def __init__(
        self,
        catalog: Catalog,
        default_max_tokens: int = 256,
        max_rows: int = 8,
        system_prompt: str = "",
    ) -> None:
        self.catalog = catalog
        self.system_prompt = system_prompt
        self.default_max_tokens = default_max_tokens
        self.max_rows = max_rows

    async def names(self) -> list[str]:
        return await asyncio.to_thread(self.catalog.names)

    # The catalog's lookups read the disk, take its lock and may load a tokenizer:
    # they run in a thread, so the event loop (and /health) never waits for them.

    async def prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        return await asyncio.to_thread(self._prepare_chat, model, messages, params, n)

    async def prepare_text(
        self, model: str, prompts: list[str], params: Params, n: int
    ) -> Prepared:
        return await asyncio.to_thread(self._prepare_text, model, prompts, params, n)

    def check_entry(self, entry: ModelEntry) -> None:
        """Refuse (ApiError) a model this engine cannot run."""

    def guard_maker(self, entry: ModelEntry, params: Params) -> Callable[[], NumberGuard | None]:
        """What makes each choice's number guard (`params.numbers_from`), for `entry`'s tokenizer."""
        if params.numbers_from is None or (entry.kind == "base" and not params.numbers_for_base):
            return lambda: None
        pieces = number_pieces(self.catalog.tokenizer(entry))
        return lambda: NumberGuard(pieces, params.numbers_from or [])

    def context_length(self, entry: ModelEntry) -> int:
        """Most tokens (prompt + completion) one choice may use."""
        return self.catalog.context_length(entry)

    def _prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        from shoptalk.modeling.chat_format import prompt_ids, with_system_dicts

        entry = self.catalog.resolve(model)
        self.check_entry(entry)
        tokenizer = self.catalog.tokenizer(entry)
        # As at training time: the project's system prompt goes first unless the
        # conversation brings its own, its style rules only before a drafting request.
        messages = with_system_dicts(messages, self.system_prompt)
        return self._prepared(entry, model, [prompt_ids(tokenizer, messages)], params, n)

    def _prepare_text(self, model: str, prompts: list[str], params: Params, n: int) -> Prepared:
        from shoptalk.modeling.chat_format import encode

        entry = self.catalog.resolve(model)
        self.check_entry(entry)
        tokenizer = self.catalog.tokenizer(entry)
        ids = [encode(tokenizer, p) for p in prompts]
        return self._prepared(entry, model, ids, params, n)

    def _prepared(
        self, entry: ModelEntry, model: str, ids: list[list[int]], params: Params, n: int
    ) -> Prepared:
        rows = len(ids) * n
        if rows > self.max_rows:
            # One request runs as one batch: more rows than a batch holds would pass
            # max_batch_size and max_queue (1,000 prompts = 1,000 rows of one request).
            raise ApiError(
                400,
                f"This request asks for {rows} completions ({len(ids)} prompts × n={n}); "
                f"this server generates at most {self.max_rows} at once "
                "(serve.max_batch_size). Send fewer prompts per request.",
                code="too_many_completions",
                param="prompt" if len(ids) > 1 else "n",
            )
        context = self.context_length(entry)
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


class TransformersEngine(CatalogEngine):
    def __init__(
        self,
        catalog: Catalog,
        default_max_tokens: int = 256,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        max_queue: int = 64,
        system_prompt: str = "",
    ) -> None:
        super().__init__(catalog, default_max_tokens, max_batch_size, system_prompt)
        self.forward_calls = 0
        self.cancelled_rows = 0
        self.joined_rows = 0
        self.batcher = Batcher(self._run_batch, max_batch_size, batch_wait_ms, max_queue)

    @property
    def queue_depth(self) -> int:
        return self.batcher.depth

    def check_entry(self, entry: ModelEntry) -> None:
        if entry.kind == "gguf":
            raise ApiError(
                400,
                f"The model {entry.name!r} is a GGUF export, which the transformers engine "
                "does not run; set serve.engine to 'auto' or 'llamacpp'.",
                code="model_not_supported",
                param="model",
            )

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Queue the request (503 at once if the queue is full); then iterate its deltas."""
        entry = await asyncio.to_thread(self.catalog.resolve, prepared.model)
        job = Job(key=entry, rows=[], loop=asyncio.get_running_loop())
        guard = await asyncio.to_thread(self.guard_maker, entry, prepared.params)
        job.rows = [
            Row(
                job,
                p * prepared.n + i,
                ids,
                prepared.params,
                seeded(prepared.params.seed, i),
                guard=guard(),
            )
            for p, ids in enumerate(prepared.prompts)
            for i in range(prepared.n)
        ]
        self.batcher.submit(job)
        return self._deltas(job, prepared)

    def _deltas(self, job: Job, prepared: Prepared) -> AsyncIterator[Delta]:
        return job_deltas(job, prepared)

    async def close(self) -> None:
        await asyncio.to_thread(self.batcher.close)

    # --- the worker thread

    def _run_batch(self, key: Hashable, jobs: list[Job]) -> None:
        import torch

        loaded = self.catalog.acquire(key)
        rows = [row for job in jobs for row in job.rows]
        with torch.inference_mode(), active_adapter(loaded):
            self._decode(loaded, key, rows)

    def _decode(self, loaded: Loaded, key: Hashable, rows: list[Row]) -> None:
        """Prefill, then one token per step for every live row until all are done.

        Between steps, requests for the same model that arrived meanwhile join
        the running batch (their prompts prefilled, their caches padded to the
        same length), so a long answer does not hold the next requests back.
        """
        from shoptalk.modeling.chat_format import stop_ids

        eos = set(stop_ids(loaded.tokenizer))
        joined: list[Job] = []
        try:
            running = self._prefill(loaded, rows, eos)
            while running is not None:
                running = self._step(loaded, running, eos)
                room = self.batcher.max_batch_size - (len(running.rows) if running else 0)
                if room > 0 and (running is None or running.can_grow()):
                    jobs = self.batcher.join(key, room)
                    joining = [row for job in jobs for row in job.rows]
                    if joining:
                        joined += jobs
                        self.joined_rows += len(joining)
                        running = merge(running, self._prefill(loaded, joining, eos))
        except Exception as exc:
            # The batcher tells the jobs it started; these joined later.
            for job in joined:
                job.send(exc)
            raise

    def _prefill(self, loaded: Loaded, rows: list[Row], eos: set[int]) -> Running | None:
        import torch

        device = next(loaded.model.parameters()).device
        width = max(len(r.prompt) for r in rows)
        pad = loaded.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])
        # Left padding shifts real tokens right; positions must count real tokens only.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = loaded.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            # Logits of the last position only: the full [rows, prompt, vocab] tensor
            # costs as much as a fifth of the prefill on a small model.
            logits_to_keep=1,
        )
        self.forward_calls += 1
        running = Running(
            rows, out.past_key_values, mask.to(device), ids[:, -1:], positions[:, -1:].to(device)
        )
        return self._take_tokens(loaded, running, out.logits[:, -1], eos)

    def _step(self, loaded: Loaded, running: Running, eos: set[int]) -> Running | None:
        import torch

        running.mask = torch.cat([running.mask, torch.ones_like(running.mask[:, :1])], dim=1)
        out = loaded.model(
            input_ids=running.ids,
            attention_mask=running.mask,
            position_ids=running.positions,
            past_key_values=running.cache,
            use_cache=True,
        )
        self.forward_calls += 1
        running.cache = out.past_key_values
        return self._take_tokens(loaded, running, out.logits[:, -1], eos)

    def _take_tokens(
        self, loaded: Loaded, running: Running, logits: torch.Tensor, eos: set[int]
    ) -> Running | None:
        """Sample each row's next token, stream it, and drop the rows that finished."""
        import torch

        tokens = [sample(guarded(logits[i], row), row) for i, row in enumerate(running.rows)]
        keep = [
            i
            for i, row in enumerate(running.rows)
            if not self._advance(row, tokens[i], eos, loaded.tokenizer)
        ]
        if not keep:
            return None
        device = running.mask.device
        running.positions = running.positions + 1
        if len(keep) < len(running.rows):
            running.select(torch.tensor(keep, device=device))
        running.ids = torch.tensor([[tokens[i]] for i in keep], device=device)
        return running

    def _advance(self, row: Row, token: int, eos: set[int], tokenizer: Any) -> bool:
        """Take one token into `row`; send its new text; True when the row is done."""
        if row.job.cancelled:
            self.cancelled_rows += 1
            return True
        return advance(row, token, eos, tokenizer)


def guarded(logits: Any, row: Row) -> Any:
    """`logits` (torch or numpy) without the tokens `row`'s number guard forbids next."""
    if row.guard is None:
        return logits
    return row.guard.apply(logits, row.text)


def advance(row: Row, token: int, eos: set[int], tokenizer: Any) -> bool:
    """Take one token into `row`; send its new text; True when the row is done.

    The row's text is decoded with the model's tokenizer and cut at the first
    stop string; what could still become a stop string, or is half a
    character, is held back until the next token decides it.
    """
    finish = None
    if token in eos:
        finish = "stop"
    else:
        row.ids.append(token)
    text = row.text = tokenizer.decode(row.ids, skip_special_tokens=True)
    for stop in row.params.stop:
        at = text.find(stop)
        if at != -1:
            text, finish = text[:at], "stop"
    if finish is None and len(row.ids) >= row.params.max_tokens:
        finish = "length"
    if finish is None:
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


async def job_deltas(job: Job, prepared: Prepared) -> AsyncIterator[Delta]:
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


@dataclass
class Running:
    """Rows decoding together: the KV cache, the mask over it, and each row's next input."""

    rows: list[Row]
    cache: Any
    mask: torch.Tensor
    ids: torch.Tensor
    positions: torch.Tensor

    def select(self, index: torch.Tensor) -> None:
        self.cache.batch_select_indices(index)
        self.mask, self.ids = self.mask[index], self.ids[index]
        self.positions = self.positions[index]
        self.rows = [self.rows[i] for i in index.tolist()]

    def can_grow(self) -> bool:
        """Only plain full-attention caches can be padded and joined (not sliding windows)."""
        layers = getattr(self.cache, "layers", None)
        return bool(layers) and all(type(layer).__name__ == "DynamicLayer" for layer in layers)


def merge(running: Running | None, joining: Running | None) -> Running | None:
    """One batch from two: the shorter cache is left-padded, masked out, to the longer."""
    import torch

    if running is None or joining is None:
        return running or joining
    length = max(running.mask.shape[1], joining.mask.shape[1])
    for mine, theirs in zip(running.cache.layers, joining.cache.layers, strict=True):
        mine.keys = torch.cat([pad_left(mine.keys, length, -2), pad_left(theirs.keys, length, -2)])
        mine.values = torch.cat(
            [pad_left(mine.values, length, -2), pad_left(theirs.values, length, -2)]
        )
    running.mask = torch.cat([pad_left(running.mask, length, 1), pad_left(joining.mask, length, 1)])
    running.ids = torch.cat([running.ids, joining.ids])
    running.positions = torch.cat([running.positions, joining.positions])
    running.rows = running.rows + joining.rows
    return running


def pad_left(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    import torch

    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


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
