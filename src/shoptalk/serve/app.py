"""The OpenAI-compatible API: routes, and the path every inference request takes.

    key (require) → model allowed (check_model) → prompt checked and counted
    (engine.prepare_*) → tokens reserved (limiter.admit) → generation
    (engine.start: queued, or 503) → unused tokens returned, audit row, metrics (in `finally`)

Every route needs a key except /health (and /metrics when made public).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from shoptalk.config import ServeSettings
from shoptalk.rag.answer import finish_answer, not_found_message
from shoptalk.serve import schemas
from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.auth import Chat, Embeddings, Principal, check_model, require
from shoptalk.serve.embeddings import Embedder
from shoptalk.serve.engine import Delta, Params, Prepared
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.grounding import ground
from shoptalk.serve.metrics import Metrics
from shoptalk.serve.middleware import AuditTheRest, BodyLimit, http_error, validation_error
from shoptalk.serve.services import Services, build_services
from shoptalk.serve.sse import Chunks, sse_error

CLIENT_CLOSED = 499  # nginx's status for "the client went away first"


def create_app(
    project_dir: Path | None = None,
    *,
    settings: ServeSettings | None = None,
    services: Services | None = None,
    catalog: Any = None,
    engine: Any = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The API for a project (or for explicit settings, services and catalog in tests)."""
    from shoptalk.project import Project

    project = Project.open(project_dir) if project_dir is not None else None
    if settings is None:
        settings = project.config.serve if project else ServeSettings()
    if services is None:
        if project is None:
            raise ValueError("create_app needs a project_dir or explicit services")
        services = build_services(settings, project.state)
    system_prompt = project.config.system_prompt if project else ""
    engine = engine or build_engine(settings, project, catalog, system_prompt)

    worker = None
    if project is not None and settings.worker:
        from shoptalk.serve.console import WorkerThread

        worker = WorkerThread(project)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        yield
        # Uvicorn has already let in-flight requests finish; now stop the worker.
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        await engine.close()
        await services.close()

    # No open /docs or /openapi.json: every route but /health needs a key.
    app = FastAPI(
        title="shoptalk", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = services
    app.state.engine = engine
    app.state.embedder = embedder or Embedder(settings.embedding_model)
    app.state.metrics = Metrics(lambda: engine.queue_depth)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuditTheRest)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            # The console names the project it works on in X-Shoptalk-Project.
            allow_headers=["Authorization", "Content-Type", "X-Shoptalk-Project"],
        )
    from shoptalk.serve.admin import router as admin_router

    app.include_router(admin_router)
    add_routes(app, settings)
    if project is not None:
        from shoptalk.serve.console import attach_console

        base = Path(project.config.base_model).name
        attach_console(app, project, ["base"] + ([base] if base != "default" else []))
    return app


def openapi_schema() -> dict:
    """The server's OpenAPI schema, from which the console's client is typed.

    Built on a throwaway project with the upstream engine, so no model loads.
    """
    import tempfile

    from shoptalk.project import Project
    from shoptalk.serve.console import attach_console

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "shoptalk.yaml").write_text("name: schema\n", encoding="utf-8")
        settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1")
        app = create_app(Path(tmp), settings=settings)
        if not hasattr(app.state, "jobs"):
            attach_console(app, Project.open(tmp), ["base"])
        return app.openapi()


def build_engine(settings: ServeSettings, project: Any, catalog: Any, system_prompt: str) -> Any:
    if settings.engine == "upstream":
        from shoptalk.serve.upstream import UpstreamEngine

        return UpstreamEngine.from_settings(settings)
    from shoptalk.modeling.load import pick_device
    from shoptalk.serve.catalog import Catalog
    from shoptalk.serve.engine import TransformersEngine

    device = pick_device()
    catalog = catalog or Catalog.for_project(project, settings, device)
    return TransformersEngine(
        catalog,
        settings.default_max_tokens,
        settings.max_batch_size,
        settings.batch_wait_ms,
        settings.max_queue,
        system_prompt=system_prompt,
    )


def add_routes(app: FastAPI, settings: ServeSettings) -> None:
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    async def metrics() -> Response:
        body, content_type = app.state.metrics.render()
        return Response(body, media_type=content_type)

    deps = [] if settings.public_metrics else [Depends(require("admin"))]
    app.add_api_route("/metrics", metrics, methods=["GET"], dependencies=deps)

    async def served_names() -> list[str]:
        """The chat models, then the embedding model (as OpenAI lists both)."""
        names = await app.state.engine.names()
        return names + [n for n in [app.state.embedder.name] if n not in names]

    @app.get("/v1/models")
    async def list_models(principal: Chat) -> schemas.ModelList:
        names = await served_names()
        allowed = [n for n in names if principal.models is None or n in principal.models]
        return schemas.ModelList(data=[schemas.ModelCard(id=n) for n in allowed])

    @app.get("/v1/models/{model}")
    async def get_model(model: str, principal: Chat) -> schemas.ModelCard:
        check_model(principal, model)
        if model not in await served_names():
            raise ApiError(404, f"The model {model!r} does not exist.", code="model_not_found")
        return schemas.ModelCard(id=model)

    @app.post("/v1/chat/completions")
    async def chat_completions(
        body: schemas.ChatCompletionRequest, request: Request, principal: Chat
    ) -> Any:
        call = Call(request, principal, "chat", body.model)
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in body.messages
        ]
        call.prompt_text = "\n".join(m["content"] for m in messages)
        if body.rag:
            system_prompt = getattr(request.app.state.engine, "system_prompt", "")
            grounded, call.retrieval, question = await ground(
                request.app, principal, messages, system_prompt
            )
            if grounded is None:
                return await call.not_found(body, question)
            messages = grounded
        return await call.run(
            body, lambda engine, params: engine.prepare_chat(body.model, messages, params, body.n)
        )

    @app.post("/v1/completions")
    async def completions(
        body: schemas.CompletionRequest, request: Request, principal: Chat
    ) -> Any:
        call = Call(request, principal, "completions", body.model)
        call.prompt_text = "\n".join(body.prompts())
        return await call.run(
            body,
            lambda engine, params: engine.prepare_text(body.model, body.prompts(), params, body.n),
        )

    @app.post("/v1/embeddings")
    async def embeddings(
        body: schemas.EmbeddingRequest, request: Request, principal: Embeddings
    ) -> schemas.EmbeddingList:
        call = Call(request, principal, "embeddings", body.model)
        return await call.embed(body)


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
    retrieval: Any = None  # with `rag: true`: the chunks the answer must cite

    @property
    def app(self) -> FastAPI:
        return self.request.app

    @property
    def settings(self) -> ServeSettings:
        return self.app.state.services.settings

    async def run(self, body: Any, prepare) -> Any:
        """Admit, then answer as one JSON body or as server-sent events."""
        reservation, streaming = None, False
        try:
            check_model(self.principal, body.model)
            self.prepared = await prepare(self.app.state.engine, self.params(body))
            rows = len(self.prepared.prompts) * self.prepared.n
            budget = self.prepared.prompt_tokens + self.prepared.params.max_tokens * rows
            reservation = await self.app.state.services.limiter.admit(self.principal, budget)
            deltas = await self.app.state.engine.start(self.prepared)
            self.started_work = True
            if body.stream:
                streaming = True  # the stream settles and audits when it ends
                return StreamingResponse(
                    self.sse(body, reservation, deltas), media_type="text/event-stream"
                )
            await self.collect(deltas)
            return self.response(body)
        except ApiError as exc:
            self.status = exc.status
            raise
        except BaseException:
            self.status = 500
            raise
        finally:
            if not streaming:
                await self.done(reservation)

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
            if self.retrieval is not None and indexes:
                checked = finish_answer(self.texts[indexes[0]], self.retrieval)
                answer.citations = [c.model_dump() for c in checked.citations]
                answer.dropped_citations = checked.dropped_citations
            return answer
        choices = [
            schemas.TextChoice(index=i, text=self.texts[i], finish_reason=self.finish.get(i))
            for i in indexes
        ]
        return schemas.Completion(model=body.model, choices=choices, usage=usage)

    async def sse(
        self, body: Any, reservation: Any, deltas: AsyncIterator[Delta]
    ) -> AsyncIterator[str]:
        """OpenAI's chunk stream; ends with `data: [DONE]`. Settles in `finally`."""
        chunks = Chunks(self.route, body.model)
        remaining = self.started + self.settings.request_timeout_s - time.monotonic()
        try:
            async with asyncio.timeout(remaining), contextlib.aclosing(deltas):
                async for delta in deltas:
                    self.take(delta)
                    yield chunks.delta(delta)
            if self.retrieval is not None and self.texts:
                checked = finish_answer(self.texts[min(self.texts)], self.retrieval)
                final = chunks.chunk([])
                final.citations = [c.model_dump() for c in checked.citations]
                final.dropped_citations = checked.dropped_citations
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
            await self.done(reservation)

    async def embed(self, body: schemas.EmbeddingRequest) -> schemas.EmbeddingList:
        embedder: Embedder = self.app.state.embedder
        tokens = 0
        try:
            check_model(self.principal, body.model)
            if body.model not in embedder.names():
                raise ApiError(
                    404,
                    f"The embedding model {body.model!r} does not exist; use {embedder.name!r}.",
                    code="model_not_found",
                    param="model",
                )
            texts = body.texts()
            budget = sum(len(t) for t in texts)  # over-counts tokens; settled below
            reservation = await self.app.state.services.limiter.admit(self.principal, budget)
            try:
                vectors, tokens = await embedder.embed(texts)
            finally:
                await reservation.settle(tokens)
            data = [
                schemas.Embedding(index=i, embedding=encode_vector(v, body.encoding_format))
                for i, v in enumerate(vectors)
            ]
            return schemas.EmbeddingList(
                data=data, model=embedder.name, usage=schemas.usage(tokens)
            )
        except ApiError as exc:
            self.status = exc.status
            raise
        except BaseException:
            self.status = 500
            raise
        finally:
            self.prepared = Prepared(embedder.name, "", tokens, Params(None), [])
            await self.done(None)

    async def not_found(self, body: Any, question: str) -> Any:
        """Nothing the key may read is relevant: say so without asking the model."""
        check_model(self.principal, body.model)
        text = not_found_message(question)
        await self.done(None)
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
        )

    async def done(self, reservation: Any) -> None:
        """Return unused tokens, write the audit row, count the metrics."""
        prepared = self.prepared
        prompt_tokens = prepared.prompt_tokens if prepared else 0
        completion_tokens = prepared.completion_tokens if prepared else 0
        if reservation is not None:
            # A request refused before any work (e.g. a full queue) uses nothing.
            used = prompt_tokens + completion_tokens if self.started_work else 0
            await reservation.settle(used)
        seconds = time.monotonic() - self.started
        # Only served names reach metrics and audit: a client's typo could be anything.
        model = prepared.model if prepared else "unknown"
        adapter = prepared.adapter if prepared else ""
        completion = "\n".join(self.texts[i] for i in sorted(self.texts)) or None
        entry = AuditEntry(
            key_id=self.principal.key_id,
            route=self.request.url.path,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=round(seconds * 1000, 1),
            status=self.status,
            prompt=self.prompt_text or None,
            completion=completion,
        )
        self.request.state.audited = True
        await asyncio.to_thread(self.app.state.services.audit.record, entry)
        metrics: Metrics = self.app.state.metrics
        metrics.observe(
            self.route, model, adapter, self.status, seconds, prompt_tokens, completion_tokens
        )
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
