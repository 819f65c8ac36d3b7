"""The llama.cpp engine: GGUF exports run in this process through `llama_cpp.Llama`.

Prompts are rendered and tokenized exactly as for the transformers engine
(`CatalogEngine`: shoptalk's chat format, the project's system prompt rule, the
HF tokenizer the GGUF was converted with, whose ids are the GGUF's), and the
ids go to llama.cpp as they are: llama.cpp's own chat template and tokenizer
never touch a request. Text is decoded, cut at stop strings and at the same
end-of-turn tokens (`chat_format.stop_ids`) by the code the transformers engine
uses (`engine.advance`).

A `Llama` is not thread-safe. The engine owns `contexts` worker threads; worker
i always uses context slot i of a model (the catalog loads it on first use),
so a context is never shared between threads and requests beyond `contexts`
wait in order. Each request's rows run one after another in one worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shoptalk.errors import ConfigError
from shoptalk.serve.batcher import Job
from shoptalk.serve.engine import CatalogEngine, Delta, Params, Prepared, Row, advance, job_deltas
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    from shoptalk.serve.catalog import Catalog, ModelEntry

SETUP_HINT = "Install it with `scripts/setup.sh --llamacpp` (the llama-cpp-python package)."


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def require_llamacpp() -> None:
    """A ConfigError naming serve.engine when llama.cpp was asked for but is not installed."""
    if not llamacpp_available():
        raise ConfigError(
            f"serve.engine is 'llamacpp' but llama-cpp-python is not installed. {SETUP_HINT}"
        )


def default_threads(contexts: int) -> int:
    """The machine's cores shared between the contexts that run at once.

    Never more threads than cores: llama.cpp's threads wait for each other at
    every operation by spinning, so one descheduled thread stalls its context.
    """
    return max(1, (os.cpu_count() or 1) // contexts)


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
    ) -> None:
        super().__init__(catalog, default_max_tokens, max_rows, system_prompt)
        self.max_queue = max_queue
        self.contexts = contexts
        self.threads = threads or default_threads(contexts)
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._slots = iter(range(contexts))
        self._slot = threading.local()
        self._pool = ThreadPoolExecutor(
            contexts, thread_name_prefix="shoptalk-llamacpp", initializer=self._take_slot
        )

    def _take_slot(self) -> None:
        self._slot.index = next(self._slots)

    @property
    def queue_depth(self) -> int:
        return max(0, self._pending - self.contexts)

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

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Queue the request (503 at once if max_queue requests wait); then iterate its deltas."""
        entry = await asyncio.to_thread(self.catalog.resolve, prepared.model)
        job = Job(key=entry, rows=[], loop=asyncio.get_running_loop())
        job.rows = [
            Row(job, p * prepared.n + i, ids, prepared.params)
            for p, ids in enumerate(prepared.prompts)
            for i in range(prepared.n)
        ]
        with self._pending_lock:
            if self._pending - self.contexts >= self.max_queue:
                raise ApiError(
                    503,
                    f"The server is at capacity ({self.max_queue} requests waiting); retry shortly.",
                    code="server_overloaded",
                    headers={"Retry-After": "1"},
                )
            self._pending += 1
        try:
            self._pool.submit(self._run, job, entry, prepared.n)
        except RuntimeError as exc:  # the pool is shut down
            self._finished()
            raise ApiError(
                503, "The server is shutting down; retry shortly.", code="shutdown"
            ) from exc
        return job_deltas(job, prepared)

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True)
        await asyncio.to_thread(self.catalog.close)

    def _finished(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    # --- the worker threads

    def _run(self, job: Job, entry: ModelEntry, n: int) -> None:
        from shoptalk.modeling.chat_format import stop_ids

        try:
            if job.cancelled:
                return
            llama = self.catalog.llama(entry, self._slot.index, self.threads)
            tokenizer = self.catalog.tokenizer(entry)
            eos = set(stop_ids(tokenizer))
            for row in job.rows:
                if not job.cancelled:
                    generate(llama, row, row.index % n, eos, tokenizer)
        except Exception as exc:  # the worker must outlive any one bad request
            job.send(exc)
        finally:
            self._finished()


def generate(llama: Any, row: Row, choice: int, eos: set[int], tokenizer: Any) -> None:
    """One choice: the prompt ids in, tokens streamed into the row until it finishes.

    Only temperature and top_p shape the distribution, as in the transformers
    engine: llama.cpp's own top_k, min_p and repeat penalty are switched off.
    A seed gives each choice its own stream (seed + choice), as there.
    """
    params = row.params
    llama.set_seed(params.seed + choice if params.seed is not None else random.getrandbits(31))
    tokens = llama.generate(
        row.prompt,
        temp=params.temperature,
        top_p=params.top_p,
        top_k=0,
        min_p=0.0,
        repeat_penalty=1.0,
    )
    try:
        for token in tokens:
            if row.job.cancelled or advance(row, token, eos, tokenizer):
                return
    finally:
        tokens.close()


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
