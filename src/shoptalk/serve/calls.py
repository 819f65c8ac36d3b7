"""One inference request from key to audit row, for every route that spends model time.

    key (require) → model allowed (check_model) → prompt checked and counted
    (engine.prepare_*) → tokens reserved (limiter.admit) → generation
    (engine.start: queued, or 503) → unused tokens returned, audit row, metrics (in `finally`)

With retrieval (`rag`) the request is admitted by the limiter before anything is
retrieved (a key over its limits gets no retrieval work done, nor a passage), and
its tokens are reserved once the grounded prompt is counted.

The OpenAI routes and the console's playground both go through `Call`, so the
key's rpm, tpm and quotas, `max_tokens_limit`, its model allow-list, the
queue bound and the audit apply the same way to both. A request's calls share
one `Ledger`: one admission by the limiter and one audit row per request, also
for the playground, which asks two models.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from shoptalk.config import ServeSettings
from shoptalk.rag.answer import RagAnswer
from shoptalk.serve import schemas
from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.auth import Principal, check_model, check_model_groups
from shoptalk.serve.embeddings import EmbeddingService
from shoptalk.serve.engine import Delta, Engine, Params, Prepared
from shoptalk.serve.errors import ApiError
from shoptalk.serve.grounding import Grounding, ground
from shoptalk.serve.limits import Reservation
from shoptalk.serve.metrics import Metrics, route_label
from shoptalk.serve.sse import Chunks, sse_error

CLIENT_CLOSED = 499  # nginx's status for "the client went away first"


async def chat_completion(
    request: Request,
    principal: Principal,
    body: schemas.ChatCompletionRequest,
    documents: Path | None = None,
    system_prompt: str | None = None,
    ledger: Ledger | None = None,
) -> Any:
    """A chat completion (JSON or a stream), with retrieval filtered by the key's groups.

    Retrieval reads the served project's documents, or those of the project at
    `documents` (a project made in the console, from its playground), under
    that project's `system_prompt` (default: the engine's, the served project's).
    With a `ledger` the call is one of its request's (the caller closes it); without,
    the call is the request.
    """
    call = Call(request, principal, "chat", body.model, ledger=ledger)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    call.prompt_text = "\n".join(m["content"] for m in messages)
    retrieve = await answers_with_retrieval(request.app, body)
    async with call.settled() as outcome:
        if retrieve:
            # Limits first: a key refused by them gets no retrieval work done.
            await call.admit_early(body)
            if system_prompt is None:
                system_prompt = request.app.state.engine.system_prompt
            grounded, call.grounding = await call.ledger.ground(
                principal, messages, system_prompt, documents
            )
            if grounded is None:
                return call.not_found(body, call.grounding.refused())
            messages = grounded
        grounding = call.grounding

        def prepare(engine: Engine, params: Params) -> Awaitable[Prepared]:
            if grounding is not None:  # rag.copy_numbers (modeling.copy_numbers)
                params.numbers_from = grounding.sources()
                params.numbers_for_base = grounding.copy_numbers == "always"
            return engine.prepare_chat(body.model, messages, params, body.n)

        return await call.answer(body, prepare, outcome)


async def answers_with_retrieval(app: FastAPI, body: schemas.ChatCompletionRequest) -> bool:
    """`rag` as the request says; unsaid, as the model's name was promoted (eval.promote):
    `shoptalk` and the project's name answer in the promoted mode, a run's id without retrieval."""
    if body.rag is not None:
        return body.rag
    catalog = getattr(app.state.engine, "catalog", None)
    if catalog is None:  # an upstream engine: retrieval only when asked for
        return False
    try:
        entry = await asyncio.to_thread(catalog.resolve, body.model)
    except ApiError:
        return False  # the call answers an unknown or refused name with its own error
    return entry.rag


@dataclass
class Outcome:
    """Whether `Call.settled` ends the call, or a stream does when it ends."""

    streaming: bool = False


@dataclass
class Ledger:
    """One request's account with the key's limits and the audit, whatever calls it makes.

    One admission by the limiter (one request against rpm; each call's tokens
    reserved once its prompt is counted), settled once, and one audit row. A chat
    API request makes one call; the playground asks the base and the tuned model
    under one ledger, so a question there costs one request, as on the API.
    """

    request: Request
    principal: Principal
    calls: int = 1  # the model calls the request makes, each with the first one's prompt
    started: float = field(default_factory=time.monotonic)
    reservation: Reservation | None = None
    advance: int = 0  # tokens reserved ahead (early, or for later calls), not yet a call's
    used: int = 0
    status: int = 200
    models: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    groundings: dict[tuple, tuple] = field(default_factory=dict)
    closed: bool = False

    @property
    def limiter(self) -> Any:
        return self.request.app.state.services.limiter

    async def admit_early(self) -> None:
        """Admit the request before its size is known, with the least a call uses (a token):
        a key at its rpm, tpm or quota is refused before any work is done for it."""
        if self.reservation is None:
            self.reservation = await self.limiter.admit(self.principal, 1)
            self.advance = 1

    async def admit(self, tokens: int) -> None:
        """Reserve a call's `tokens` (the request's first reservation admits it), or a 429.

        The first call reserves as much for each call still to come (the playground asks
        the tuned model the base model's prompt): a request is admitted whole or refused
        before any answer, so concurrent requests cannot each get half their tokens.
        """
        extra = max(tokens * max(self.calls, 1) - self.advance, 0)
        if self.reservation is None:
            self.reservation = await self.limiter.admit(self.principal, extra)
        else:
            await self.reservation.grow(extra)
        self.advance += extra - tokens
        self.calls -= 1

    async def ground(
        self,
        principal: Principal,
        messages: list[dict[str, str]],
        system_prompt: str,
        documents: Path | None,
    ) -> tuple[list[dict[str, str]] | None, Grounding]:
        """Retrieval for the request, once: the playground's two models share its passages."""
        key = (json.dumps(messages), system_prompt, str(documents))
        if key not in self.groundings:
            self.groundings[key] = await ground(
                self.request.app, principal, messages, system_prompt, documents
            )
        return self.groundings[key]

    def add(self, call: Call) -> None:
        """What one call did: its tokens, model, texts and status."""
        prepared = call.prepared
        prompt_tokens = prepared.prompt_tokens if prepared else 0
        completion_tokens = prepared.completion_tokens if prepared else 0
        if call.started_work:
            # A call refused before any work (e.g. a full queue) uses nothing.
            self.used += prompt_tokens + completion_tokens
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if prepared is not None:
            # Only served names reach metrics and audit: a client's typo could be anything.
            self.models.append(prepared.model)
            self.adapters.append(prepared.adapter)
        if call.status != 200:
            self.status = call.status
        if call.prompt_text and call.prompt_text not in self.prompts:
            self.prompts.append(call.prompt_text)
        completion = "\n".join(call.texts[i] for i in sorted(call.texts))
        if completion:
            self.completions.append(completion)

    async def close(self) -> None:
        """Return unused tokens, write the request's audit row (once).

        Shielded: a client that left cancels the request's scope, and anyio then
        cancels every later await in it too (a dropped stream left no row).
        """
        with anyio.CancelScope(shield=True):
            if self.closed:
                return
            self.closed = True
            if self.reservation is not None:
                await self.reservation.settle(self.used)
            seconds = time.monotonic() - self.started
            model = "+".join(dict.fromkeys(self.models)) or "unknown"
            entry = AuditEntry(
                key_id=self.principal.key_id,
                route=self.request.url.path,
                model=model,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                latency_ms=round(seconds * 1000, 1),
                status=self.status,
                prompt="\n".join(self.prompts) or None,
                completion="\n".join(self.completions) or None,
            )
            self.request.state.audited = True
            # One request in the metrics as in the audit; its calls were counted each (`Call`).
            adapter = "+".join(dict.fromkeys(a for a in self.adapters if a))
            metrics: Metrics = self.request.app.state.metrics
            label = route_label(self.request.scope)
            metrics.request(label, model, adapter, self.status, seconds)
            await asyncio.to_thread(self.request.app.state.services.audit.record, entry)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Ledger]:
        """The ledger of a request that makes several calls: closed when it ends, with the
        status of what ended it."""
        try:
            yield self
        except ApiError as exc:
            self.status = exc.status
            raise
        except BaseException:
            self.status = 500
            raise
        finally:
            await self.close()


@dataclass
class Call:
    """One inference request's bookkeeping: limits, audit and metrics, whatever happens."""

    request: Request
    principal: Principal
    route: str
    model: str
    started: float = field(default_factory=time.monotonic)
    status: int = 200
    prepared: Prepared | None = None
    prompt_text: str = ""
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    first_token_at: float | None = None
    started_work: bool = False
    grounding: Grounding | None = None  # with `rag: true`: what the replies are checked against
    ledger: Ledger = None  # type: ignore[assignment]  # the request's; its own by default
    own_ledger: bool = False

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = Ledger(self.request, self.principal, started=self.started)
            self.own_ledger = True

    @property
    def app(self) -> FastAPI:
        return self.request.app

    @property
    def settings(self) -> ServeSettings:
        return self.app.state.services.settings

    async def check_groups(self, model: str) -> None:
        """A 403 unless the key holds the groups whose documents `model` learnt (`train.groups`)."""
        catalog = getattr(self.app.state.engine, "catalog", None)
        if catalog is not None:  # an upstream engine's models are that server's business
            groups = await asyncio.to_thread(catalog.groups, model)
            check_model_groups(self.principal, model, groups)

    async def run(self, body: Any, prepare) -> Any:
        """Admit, then answer as one JSON body or as server-sent events."""
        async with self.settled() as outcome:
            return await self.answer(body, prepare, outcome)

    async def admit_early(self, body: Any) -> None:
        """Before retrieval: the checks that need no prompt, then the limiter's admission."""
        check_model(self.principal, body.model)
        await self.check_groups(body.model)
        self.params(body)
        await self.ledger.admit_early()

    async def answer(self, body: Any, prepare, outcome: Outcome) -> Any:
        check_model(self.principal, body.model)
        await self.check_groups(body.model)
        self.prepared = await prepare(self.app.state.engine, self.params(body))
        rows = len(self.prepared.prompts) * self.prepared.n
        budget = self.prepared.prompt_tokens + self.prepared.params.max_tokens * rows
        await self.ledger.admit(budget)
        deltas = await self.app.state.engine.start(self.prepared)
        self.started_work = True
        if body.stream:
            outcome.streaming = True  # the stream settles and audits when it ends
            return StreamingResponse(self.sse(body, deltas), media_type="text/event-stream")
        await self.collect(deltas)
        return self.response(body)

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[Outcome]:
        """The request's status from whatever ends it, then `done` (a stream's own end does that)."""
        outcome = Outcome()
        try:
            yield outcome
        except ApiError as exc:
            self.status = exc.status
            raise
        except BaseException:
            self.status = 500
            raise
        finally:
            if not outcome.streaming:
                await self.done()

    def params(self, body: Any) -> Params:
        max_tokens = body.requested_max_tokens()
        if max_tokens is not None and max_tokens > self.settings.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens is {max_tokens}; this server allows at most "
                f"{self.settings.max_tokens_limit}.",
                code="max_tokens_too_large",
                param="max_tokens",
            )
        return Params(max_tokens, body.temperature, body.top_p, body.seed, body.stop_strings())

    async def collect(self, deltas: AsyncIterator[Delta]) -> None:
        """Run to the end, or stop early when the client leaves or time runs out."""
        task = asyncio.create_task(self.consume(deltas))
        deadline = self.started + self.settings.request_timeout_s
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=min(0.25, max(deadline - time.monotonic(), 0)))
                if task.done():
                    break
                if time.monotonic() >= deadline:
                    raise timed_out(self.settings.request_timeout_s)
                if await self.request.is_disconnected():
                    self.status = CLIENT_CLOSED
                    raise ApiError(CLIENT_CLOSED, "The client closed the connection.")
            task.result()
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def consume(self, deltas: AsyncIterator[Delta]) -> None:
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                self.take(delta)

    def take(self, delta: Delta) -> None:
        if self.first_token_at is None and delta.text:
            self.first_token_at = time.monotonic()
        self.texts[delta.index] = self.texts.get(delta.index, "") + delta.text
        if delta.finish_reason:
            self.finish[delta.index] = delta.finish_reason

    def checked(self) -> dict[int, RagAnswer]:
        """Each choice's reply as users may see it (rag.answer.checked_reply)."""
        assert self.grounding is not None
        return {i: self.grounding.check(text) for i, text in self.texts.items()}

    def response(self, body: Any) -> Any:
        usage = schemas.usage(self.prepared.prompt_tokens, self.prepared.completion_tokens)
        indexes = sorted(self.texts)
        if self.route == "chat":
            choices = [
                schemas.ChatChoice(
                    index=i,
                    message=schemas.AssistantMessage(content=self.texts[i]),
                    finish_reason=self.finish.get(i, "stop"),
                )
                for i in indexes
            ]
            answer = schemas.ChatCompletion(model=body.model, choices=choices, usage=usage)
            if self.grounding is not None and indexes:
                checked = self.checked()
                for choice in choices:
                    choice.message.content = checked[choice.index].message
                first = checked[indexes[0]]
                answer.citations = [c.model_dump() for c in first.citations]
                answer.dropped_citations = first.dropped_citations
                answer.verification = verification(first)
            return answer
        choices = [
            schemas.TextChoice(index=i, text=self.texts[i], finish_reason=self.finish.get(i))
            for i in indexes
        ]
        return schemas.Completion(model=body.model, choices=choices, usage=usage)

    async def sse(self, body: Any, deltas: AsyncIterator[Delta]) -> AsyncIterator[str]:
        """OpenAI's chunk stream; ends with `data: [DONE]`. Settles in `finally`."""
        chunks = Chunks(self.route, body.model)
        remaining = self.started + self.settings.request_timeout_s - time.monotonic()
        try:
            async with asyncio.timeout(remaining), contextlib.aclosing(deltas):
                async for delta in deltas:
                    self.take(delta)
                    if self.grounding is None:
                        yield chunks.delta(delta)
            if self.grounding is not None and self.texts:
                # A grounded reply is shown once verified, never token by token: a value
                # the passages do not hold must not reach the client first.
                checked = self.checked()
                for i in sorted(checked):
                    finish = self.finish.get(i, "stop")
                    yield chunks.delta(
                        Delta(index=i, text=checked[i].message, finish_reason=finish)
                    )
                first = checked[min(checked)]
                final = chunks.chunk([])
                final.citations = [c.model_dump() for c in first.citations]
                final.dropped_citations = first.dropped_citations
                final.verification = verification(first)
                yield chunks.event(final)
            if body.stream_options and body.stream_options.include_usage:
                usage = schemas.usage(self.prepared.prompt_tokens, self.prepared.completion_tokens)
                yield chunks.usage(usage)
            yield "data: [DONE]\n\n"
        except TimeoutError:
            self.status = 504
            yield sse_error(timed_out(self.settings.request_timeout_s))
        except ApiError as exc:
            self.status = exc.status
            yield sse_error(exc)
        except asyncio.CancelledError:
            self.status = CLIENT_CLOSED
            raise
        except Exception:
            self.status = 500
            yield sse_error(ApiError(500, "The server failed while generating."))
        finally:
            await self.done()

    async def embed(self, body: schemas.EmbeddingRequest) -> schemas.EmbeddingList:
        embedder: EmbeddingService = self.app.state.embedder
        # Audited under the embedder's name, with the tokens counted once it has run.
        self.prepared = Prepared(embedder.name, "", 0, Params(None), [])
        async with self.settled():
            check_model(self.principal, body.model)
            if body.model not in embedder.names():
                raise ApiError(
                    404,
                    f"The embedding model {body.model!r} does not exist; use {embedder.name!r}.",
                    code="model_not_found",
                    param="model",
                )
            texts = body.texts()
            budget = sum(len(t) for t in texts)  # over-counts tokens; settled when done
            await self.ledger.admit(budget)
            self.started_work = True
            vectors, tokens = await embedder.embed(texts)
            self.prepared.prompt_tokens = tokens
            data = [
                schemas.Embedding(index=i, embedding=encode_vector(v, body.encoding_format))
                for i, v in enumerate(vectors)
            ]
            return schemas.EmbeddingList(
                data=data, model=embedder.name, usage=schemas.usage(tokens)
            )

    def not_found(self, body: Any, refused: RagAnswer) -> Any:
        """Nothing the key may read answers: say so (`refused`) without asking the model.

        Still a request against the key's limits (rpm), `max_tokens_limit` and its models,
        and audited like any other (admitted before retrieval: `admit_early`): a refusal
        must not depend on what retrieval found.
        """
        text = refused.message
        if body.stream:
            chunks = Chunks(self.route, body.model)
            delta = Delta(index=0, text=text, finish_reason="stop")
            events = [chunks.delta(delta), "data: [DONE]\n\n"]
            return StreamingResponse(iter(events), media_type="text/event-stream")
        choice = schemas.ChatChoice(
            index=0, message=schemas.AssistantMessage(content=text), finish_reason="stop"
        )
        return schemas.ChatCompletion(
            model=body.model,
            choices=[choice],
            usage=schemas.usage(0, 0),
            citations=[],
            dropped_citations=0,
            verification=verification(refused),
        )

    async def done(self) -> None:
        """Count the metrics and give the call to its request's ledger; the request's own
        ledger then returns unused tokens and writes the audit row (shielded, see `close`)."""
        with anyio.CancelScope(shield=True):
            self.observe()
            self.ledger.add(self)
            if self.own_ledger:
                await self.ledger.close()

    def observe(self) -> None:
        """This model call in the metrics (its request is counted once, by its `Ledger`).

        A call refused before a served model was chosen (no such model, one the key may
        not use) asked no model: it is in the request's count only.
        """
        prepared = self.prepared
        if prepared is None:
            return
        model, adapter = prepared.model, prepared.adapter
        metrics: Metrics = self.app.state.metrics
        label = route_label(self.request.scope)
        tokens = (prepared.prompt_tokens, prepared.completion_tokens)
        metrics.call(label, model, adapter, self.status, *tokens)
        if self.first_token_at is not None:
            metrics.ttft.labels(model, adapter).observe(self.first_token_at - self.started)


def timed_out(limit: float) -> ApiError:
    return ApiError(
        504, f"The request took longer than {limit:g}s (serve.request_timeout_s).", code="timeout"
    )


def encode_vector(vector: Any, encoding: str) -> list[float] | str:
    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


def verification(checked: RagAnswer) -> dict[str, Any]:
    """The response's account of its first reply: verified, repaired or not found, and why."""
    return {"status": checked.status, "unsupported": checked.unsupported}
