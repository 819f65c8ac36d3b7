"""The app factory, and the OpenAI-compatible inference routes.

The path every inference request takes is `serve.calls`. Every route needs a
key except /health (and /metrics when made public).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from shoptalk.config import ServeSettings
from shoptalk.serve import schemas
from shoptalk.serve.auth import Chat, Embeddings, check_model, require
from shoptalk.serve.calls import Call, chat_completion
from shoptalk.serve.embeddings import Embedder
from shoptalk.serve.engine import Engine
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.metrics import Metrics
from shoptalk.serve.middleware import AuditTheRest, BodyLimit, http_error, validation_error
from shoptalk.serve.services import Services, build_services


def create_app(
    project_dir: Path | None = None,
    *,
    settings: ServeSettings | None = None,
    services: Services | None = None,
    catalog: Any = None,
    engine: Engine | None = None,
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
        from shoptalk.serve.console import WorkerProcess

        worker = WorkerProcess(project)

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


def build_engine(settings: ServeSettings, project: Any, catalog: Any, system_prompt: str) -> Engine:
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
        return await chat_completion(request, principal, body)

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
