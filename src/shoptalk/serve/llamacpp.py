"""The llama.cpp engine: GGUF exports run in this process, many sequences per llama.cpp call.

Prompts are rendered and tokenized exactly as for the transformers engine
(`CatalogEngine`: shoptalk's chat format, the project's system prompt rule, the
HF tokenizer the GGUF was converted with, whose ids are the GGUF's), and the
ids go to llama.cpp as they are: llama.cpp's own chat template and tokenizer
never touch a request. Text is decoded, cut at stop strings and at the same
end-of-turn tokens (`chat_format.stop_ids`) by the code the transformers engine
uses (`engine.advance`).

Continuous batching: the engine owns `contexts` worker threads, and worker i
always uses context slot i of a model (`gguf.BatchContext`, loaded by the
catalog on first use), so a llama.cpp context is only ever used by one thread.
Each worker holds up to `max_rows` sequences (one per choice of a request);
every step is ONE `llama_decode` call that feeds one token of every decoding
sequence plus the prompt (chunk) of each sequence that just joined. Requests
join between steps, a finished or cancelled sequence leaves at once and its
KV cells are freed. A new request goes to the least loaded worker that can
take it (idle, or already running that model), so both cores work. Requests
no worker can take wait in order (at most `max_queue`, then 503).

Each sequence has its own KV stream (`kv_unified` off): its attention reads
only its own cells, laid out as if it ran alone, so a greedy answer is the same
token for token whoever shares the batch (and the same as the export's parity
check). The price is a fixed `sequence_tokens` cells per sequence.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoptalk.config.serve import llamacpp_batch_error
from shoptalk.errors import ConfigError
from shoptalk.serve.batcher import Job
from shoptalk.serve.engine import (
    CatalogEngine,
    Delta,
    Params,
    Prepared,
    Row,
    advance,
    guarded,
    job_deltas,
)
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    import numpy as np

    from shoptalk.config import ServeSettings
    from shoptalk.modeling.gguf import BatchContext
    from shoptalk.serve.catalog import Catalog, ModelEntry

log = logging.getLogger(__name__)
SETUP_HINT = "Install it with `scripts/setup.sh --llamacpp` (the llama-cpp-python package)."


class KvCacheTooLarge(ConfigError):
    """Sizes, keys and a model name, no personal data: the CLI prints it unredacted."""

    personal_data = False


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def max_sequences() -> int:
    """The most sequences one llama.cpp context decodes together (its sequence id range)."""
    import llama_cpp

    return int(llama_cpp.llama_max_parallel_sequences())


def batch_rows(settings: ServeSettings) -> int:
    """serve.max_batch_size as the llama.cpp engine can run it.

    Above llama.cpp's sequence slots, engine 'llamacpp' is refused with the
    allowed range (the config check says the same when the file is read);
    'auto' caps only its GGUF exports there, with a warning, since the same key
    also sizes the transformers engine's batches.
    """
    limit = max_sequences()
    if settings.max_batch_size <= limit:
        return settings.max_batch_size
    if settings.engine == "llamacpp":
        raise ConfigError(llamacpp_batch_error(settings.max_batch_size, limit))
    log.warning(
        "serve.max_batch_size is %d, but llama.cpp decodes at most %d sequences in one "
        "context: GGUF exports run at most %d together (other models %d)",
        settings.max_batch_size,
        limit,
        limit,
        settings.max_batch_size,
    )
    return limit


def require_llamacpp() -> None:
    """A ConfigError naming serve.engine when llama.cpp was asked for but is not installed."""
    if not llamacpp_available():
        raise ConfigError(
            f"serve.engine is 'llamacpp' but llama-cpp-python is not installed. {SETUP_HINT}"
        )


def available_memory() -> int | None:
    """Bytes the system can give without swapping (MemAvailable; psutil elsewhere); None: unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB, meaning KiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # installed with accelerate; not a dependency of its own
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def size_text(n: float) -> str:
    """Bytes as "377 MB", "12.1 GB" (powers of 1000, as the config's descriptions say them)."""
    units = ["bytes", "KB", "MB", "GB", "TB"]
    while n >= 1000 and len(units) > 1:
        n /= 1000
        units.pop(0)
    return f"{n:.0f} {units[0]}" if n >= 100 or units[0] == "bytes" else f"{n:.3g} {units[0]}"


def default_threads(contexts: int) -> int:
    """The machine's cores shared between the contexts that run at once.

    Never more threads than cores: llama.cpp's threads wait for each other at
    every operation by spinning, so one descheduled thread stalls its context.
    """
    return max(1, (os.cpu_count() or 1) // contexts)


@dataclass(eq=False)
class Seq:
    """One choice in a worker: what llama.cpp still has to read, and where it is."""

    row: Row
    rng: np.random.Generator | None  # None: greedy
    todo: list[int]  # tokens not yet fed: the prompt, then the last sampled token
    pos: int = 0  # tokens already in this sequence's KV cells
    id: int = -1  # llama.cpp sequence id while it runs


@dataclass
class Waiting:
    job: Job
    seqs: list[Seq]


class LlamaCppEngine(CatalogEngine):
    """An `Engine` for the catalog's GGUF exports (kind 'gguf')."""

    def __init__(
        self,
        catalog: Catalog,
        default_max_tokens: int = 256,
        max_rows: int = 8,
        max_queue: int = 64,
        contexts: int = 2,
        threads: int = 0,
        system_prompt: str = "",
        sequence_tokens: int = 2048,
    ) -> None:
        if max_rows > max_sequences():  # each row is a sequence of one context
            raise ConfigError(llamacpp_batch_error(max_rows, max_sequences()))
        super().__init__(catalog, default_max_tokens, max_rows, system_prompt)
        self.max_queue = max_queue
        self.contexts = contexts
        self.threads = threads or default_threads(contexts)
        self.sequence_tokens = sequence_tokens
        # Counters for /metrics-style checks and the tests: llama_decode calls (all
        # workers), the most sequences one call fed, rows dropped for a gone client.
        self.steps = 0
        self.widest = 0
        self.cancelled_rows = 0
        self._waiting: list[Waiting] = []
        self._cond = threading.Condition()
        self._closing = False
        # Per worker, read and written under _cond: rows it holds, and their model.
        self._load = [0] * contexts
        self._model: list[ModelEntry | None] = [None] * contexts
        # Each GGUF's KV cache bytes a cell (None: unreadable), read and logged once.
        self._cell_bytes: dict[Path, int | None] = {}
        self._sizing = threading.Lock()
        # Refused now, with the keys to change, rather than by the OOM killer at the first
        # requests (a context allocates all its cells when it is made).
        for model in catalog.entries.values():
            if model.kind == "gguf":
                self.check_memory(model)
        self._threads = [
            threading.Thread(
                target=self._work, args=(i,), name=f"shoptalk-llamacpp-{i}", daemon=True
            )
            for i in range(contexts)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    def check_memory(self, entry: ModelEntry) -> None:
        """A ConfigError when `entry`'s contexts would hold more KV cache than the memory available.

        Each of `contexts` contexts holds `max_rows` sequences of
        `context_length` cells, all allocated when the context is made.
        Unknown sizes (an unreadable file, no memory figure) are not refused.
        """
        from shoptalk.modeling.gguf import kv_cell_bytes

        with self._sizing:
            first = entry.path not in self._cell_bytes
            if first:
                try:
                    self._cell_bytes[entry.path] = kv_cell_bytes(entry.gguf_file)
                except Exception as exc:  # a check, not a loader: llama.cpp says what is wrong
                    log.warning("The KV cache of %s is not sized (%s)", entry.name, exc)
                    self._cell_bytes[entry.path] = None
            cell = self._cell_bytes[entry.path]
        if cell is None:
            return
        cells = self.context_length(entry)
        context = cell * self.max_rows * cells
        if first:
            log.info(
                "llama.cpp contexts for %s: %d × %s KV cache (%d sequences × %d cells × %s)",
                entry.name,
                self.contexts,
                size_text(context),
                self.max_rows,
                cells,
                size_text(cell),
            )
        available = available_memory()
        if available is not None and context * self.contexts > available:
            # 0, or more than the model's context, means the model's context length.
            tokens = (
                f"{cells}" if cells == self.sequence_tokens else f"{self.sequence_tokens}: {cells}"
            )
            raise KvCacheTooLarge(
                f"llama.cpp would allocate {size_text(context * self.contexts)} of KV cache for "
                f"{entry.name}, but {size_text(available)} of memory is available: "
                f"serve.llamacpp_contexts ({self.contexts}) contexts × serve.max_batch_size "
                f"({self.max_rows}) sequences × serve.llamacpp_sequence_tokens ({tokens}) "
                f"cells × {size_text(cell)} a cell. Lower one of these keys."
            )

    def _check_first_load(self, entry: ModelEntry) -> None:
        """`check_memory` before the model's first context (memory may have gone since startup).

        The reason goes to the server's log, and the client gets a 503 without it.
        """
        if self.catalog.llama_loaded(entry):
            return
        try:
            self.check_memory(entry)
        except ConfigError as exc:
            log.error("%s", exc)
            raise ApiError(
                503,
                f"The model {entry.name!r} does not fit in the server's memory as the server is "
                "configured; its log says which setting to change.",
                code="insufficient_memory",
            ) from exc

    def check_entry(self, entry: ModelEntry) -> None:
        if entry.kind != "gguf":
            raise ApiError(
                400,
                f"The model {entry.name!r} has no GGUF export for the llama.cpp engine "
                "(serve.engine: llamacpp). Export it (`shoptalk export --format gguf`) and ask "
                "for <run id>-gguf-<quant>, or set serve.engine to 'auto'.",
                code="model_not_supported",
                param="model",
            )

    def context_length(self, entry: ModelEntry) -> int:
        # Each sequence owns `sequence_tokens` KV cells, however long the model's context.
        model = self.catalog.context_length(entry)
        return min(model, self.sequence_tokens) if self.sequence_tokens else model

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Queue the request (503 at once if max_queue requests wait); then iterate its deltas."""
        import numpy as np

        entry = await asyncio.to_thread(self.catalog.resolve, prepared.model)
        job = Job(key=entry, rows=[], loop=asyncio.get_running_loop())
        params, n = prepared.params, prepared.n
        guard = await asyncio.to_thread(self.guard_maker, entry, params)
        seqs = []
        for p, ids in enumerate(prepared.prompts):
            for choice in range(n):
                row = Row(job, p * n + choice, ids, params, guard=guard())
                # A seed gives each choice its own stream (seed + choice), whoever shares the batch.
                seed = None if params.seed is None else params.seed + choice
                rng = np.random.default_rng(seed) if params.temperature > 0 else None
                job.rows.append(row)
                seqs.append(Seq(row, rng, list(ids)))
        with self._cond:
            if self._closing:
                raise ApiError(503, "The server is shutting down; retry shortly.", code="shutdown")
            if len(self._waiting) >= self.max_queue:
                raise ApiError(
                    503,
                    f"The server is at capacity ({self.max_queue} requests waiting); retry shortly.",
                    code="server_overloaded",
                    headers={"Retry-After": "1"},
                )
            self._waiting.append(Waiting(job, seqs))
            self._cond.notify_all()
        return job_deltas(job, prepared)

    async def close(self) -> None:
        """Finish every waiting and running request, then release the contexts."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(self.catalog.close)

    # --- the worker threads

    def _take(self, slot: int, held: list[Seq], model: ModelEntry | None) -> list[Waiting] | None:
        """Requests worker `slot` takes now (waiting for one when it holds none); None: stop."""
        with self._cond:
            self._load[slot] = len(held)
            while True:
                # Requests whose client left while they waited never start.
                self._waiting = [w for w in self._waiting if not w.job.cancelled]
                taken = []
                while self._waiting:
                    first = self._waiting[0]
                    if not self._may_take(slot, first, model):
                        break
                    taken.append(self._waiting.pop(0))
                    model = first.job.key
                    self._load[slot] += len(first.seqs)
                    self._model[slot] = model
                if taken or held:
                    return taken
                if self._closing:
                    return None
                self._cond.wait()

    def _may_take(self, slot: int, waiting: Waiting, model: ModelEntry | None) -> bool:
        """Whether worker `slot` should take the oldest waiting request.

        A worker runs one model at a time; of the workers that could run the
        request (idle, or on that model), the least loaded takes it, so 8
        clients on 2 contexts decode 4 + 4, not 8 + 0.
        """

        def able(i: int) -> bool:
            return self._load[i] == 0 or self._model[i] == waiting.job.key

        if self._load[slot] and model != waiting.job.key:
            return False
        if self._load[slot] + len(waiting.seqs) > self.max_rows:
            return False
        return self._load[slot] == min(self._load[i] for i in range(self.contexts) if able(i))

    def _work(self, slot: int) -> None:
        from shoptalk.modeling.chat_format import stop_ids

        seqs: list[Seq] = []
        entry = context = tokenizer = eos = None
        while True:
            taken = self._take(slot, seqs, entry if seqs else None)
            if taken is None:
                return
            try:
                for waiting in taken:
                    if waiting.job.key != entry:  # only when idle: a worker runs one model
                        key = waiting.job.key
                        self._check_first_load(key)
                        context = self.catalog.llama(
                            key, slot, self.threads, self.max_rows, self.context_length(key)
                        )
                        tokenizer = self.catalog.tokenizer(key)
                        eos, entry = set(stop_ids(tokenizer)), key
                    seqs += waiting.seqs
                if seqs:
                    seqs = self._step(context, seqs, tokenizer, eos)
            except Exception as exc:  # the worker must outlive any one bad request
                for job in {s.row.job for s in seqs} | {w.job for w in taken}:
                    job.send(exc)
                if context is not None:
                    context.clear()
                seqs = []

    def _step(
        self, context: BatchContext, seqs: list[Seq], tokenizer: Any, eos: set[int]
    ) -> list[Seq]:
        """One llama_decode for all `seqs`; returns those still running."""
        running = []
        for seq in seqs:
            if seq.row.job.cancelled:
                self.cancelled_rows += 1
                if seq.id >= 0:
                    context.free(seq.id)
            else:
                running.append(seq)
        used = {s.id for s in running}
        free = (i for i in range(context.n_seq) if i not in used)
        for seq in running:
            if seq.id < 0:
                seq.id = next(free)
        # Decoding sequences (one token each) first, so a long prompt never holds
        # them back; prompts fill the rest of the batch and go on next step if cut.
        budget = context.n_batch
        feed = []
        for seq in sorted(running, key=lambda s: len(s.todo) > 1):
            take = min(len(seq.todo), budget)
            if take:
                feed.append((seq, take))
                budget -= take
        if not feed:
            return running
        logits = context.decode(
            [(s.id, s.todo[:take], s.pos, take == len(s.todo)) for s, take in feed]
        )
        self.steps += 1
        self.widest = max(self.widest, len(feed))
        done = set()
        for (seq, take), row_logits in zip(feed, logits, strict=True):
            seq.pos += take
            seq.todo = seq.todo[take:]
            if row_logits is None:
                continue  # the rest of its prompt comes next step
            token = sample(guarded(row_logits, seq.row), seq)
            if advance(seq.row, token, eos, tokenizer):
                context.free(seq.id)
                done.add(seq)
            else:
                seq.todo = [token]
        return [s for s in running if s not in done]


def sample(logits: np.ndarray, seq: Seq) -> int:
    """The next token from one sequence's logits, as the transformers engine samples.

    Greedy is the argmax (of equal logits the lowest id, as llama.cpp's greedy
    sampler takes it). Otherwise only temperature and top_p shape the
    distribution: no top_k, min_p or repeat penalty.
    """
    import numpy as np

    if seq.rng is None:
        return int(np.argmax(logits))
    params = seq.row.params
    scaled = logits.astype(np.float64) / params.temperature
    probs = np.exp(scaled - scaled.max())
    tokens = np.arange(len(probs))
    if params.top_p < 1.0:
        tokens = np.argsort(-probs, kind="stable")
        probs = probs[tokens]
        # Keep the smallest set of tokens whose mass reaches top_p (always the first).
        cumulative = np.cumsum(probs)
        probs = probs[: int(np.searchsorted(cumulative, params.top_p * cumulative[-1])) + 1]
    cumulative = np.cumsum(probs)
    pick = np.searchsorted(cumulative, seq.rng.random() * cumulative[-1], side="right")
    return int(tokens[min(int(pick), len(probs) - 1)])


class AutoEngine:
    """`serve.engine: auto`: GGUF exports answered by llama.cpp, every other model by transformers.

    Both engines share one catalog, so names, groups and pins are the same
    whichever engine answers a request.
    """

    def __init__(self, gguf: LlamaCppEngine, other: CatalogEngine) -> None:
        self.gguf, self.other = gguf, other
        self.catalog = other.catalog
        self.system_prompt = other.system_prompt

    def __getattr__(self, name: str) -> Any:
        # The transformers engine's own state (its batcher, its counters) stays
        # readable through the engine the app holds.
        return getattr(self.other, name)

    @property
    def queue_depth(self) -> int:
        return self.gguf.queue_depth + self.other.queue_depth

    async def names(self) -> list[str]:
        return await self.other.names()

    async def _engine(self, model: str) -> CatalogEngine:
        entry = await asyncio.to_thread(self.catalog.resolve, model)
        return self.gguf if entry.kind == "gguf" else self.other

    async def prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        return await (await self._engine(model)).prepare_chat(model, messages, params, n)

    async def prepare_text(
        self, model: str, prompts: list[str], params: Params, n: int
    ) -> Prepared:
        return await (await self._engine(model)).prepare_text(model, prompts, params, n)

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        return await (await self._engine(prepared.model)).start(prepared)

    async def close(self) -> None:
        await self.other.close()
        await self.gguf.close()
