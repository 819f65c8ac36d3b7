"""The app factory: the engine, every router (one per resource), and the worker process.

The path every inference request takes is `serve.calls`. Every route needs a
key except /health (and /metrics when made public).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from shoptalk.config import ServeSettings
from shoptalk.serve import inference_api
from shoptalk.serve.auth import require
from shoptalk.serve.embeddings import EmbeddingService
from shoptalk.serve.engine import Engine
from shoptalk.serve.errors import ApiError, api_error_handler
from shoptalk.serve.eval_runs import EvalRunner
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
    embedder: EmbeddingService | None = None,
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
    system_prompt = project.system_prompt if project else ""
    engine = engine or build_engine(settings, project, catalog, system_prompt)

    worker = None
    if project is not None and settings.worker:
        from shoptalk.serve.console import WorkerProcess

        worker = WorkerProcess(project)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        evals = EvalRunner.of(_app)  # resumes eval runs a stopped server left unfinished
        yield
        await evals.close()
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
    app.state.worker = worker
    app.state.embedder = embedder or EmbeddingService(settings.embedding_model)
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
    include_routers(app, settings, project)
    return app


def include_routers(app: FastAPI, settings: ServeSettings, project: Any) -> None:
    """Every route of the server, one router per resource."""
    from shoptalk.serve.admin import router as admin_router
    from shoptalk.serve.evals_api import router as evals_router

    add_ops_routes(app, settings)
    for router in [*inference_api.ROUTERS, admin_router, evals_router]:
        app.include_router(router)
    if project is not None:
        from shoptalk.serve.console import attach_console
        from shoptalk.serve.feedback_api import router as feedback_router
        from shoptalk.serve.jobs_api import files_router, jobs_router
        from shoptalk.serve.project_api import router as project_router
        from shoptalk.serve.projects_api import router as projects_router

        base = Path(project.config.base_model).name
        attach_console(app, project, ["base"] + ([base] if base != "default" else []))
        routers = (files_router, jobs_router, projects_router, project_router, feedback_router)
        for router in routers:
            app.include_router(router)


def openapi_schema() -> dict:
    """The server's OpenAPI schema, from which the console's client is typed.

    Built on a throwaway project with the upstream engine, so no model loads.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "shoptalk.yaml").write_text("name: schema\n", encoding="utf-8")
        settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1")
        app = create_app(Path(tmp), settings=settings)
        return app.openapi()


def build_engine(settings: ServeSettings, project: Any, catalog: Any, system_prompt: str) -> Engine:
    """The engine `serve.engine` names; `auto` adds llama.cpp for GGUF exports on CPU."""
    if settings.engine == "upstream":
        from shoptalk.serve.upstream import UpstreamEngine

        return UpstreamEngine.from_settings(settings)
    from shoptalk.modeling.load import pick_device
    from shoptalk.serve.catalog import Catalog
    from shoptalk.serve.llamacpp import llamacpp_available, require_llamacpp

    if settings.engine == "llamacpp":
        require_llamacpp()
    device = pick_device()
    gguf = settings.engine == "llamacpp" or (
        settings.engine == "auto" and device == "cpu" and llamacpp_available()
    )
    if catalog is None:
        from shoptalk.serve.projects_api import workspace_folder

        workspace = workspace_folder(project, settings.workspace)
        catalog = Catalog.for_project(project, settings, device, workspace, gguf=gguf)
    if settings.engine == "llamacpp":
        catalog.kinds = {"gguf"}
        return llamacpp_engine(settings, catalog, system_prompt)
    engine = transformers_engine(settings, catalog, system_prompt)
    if not gguf:
        catalog.kinds = {"base", "adapter", "full"}
        return engine
    from shoptalk.serve.llamacpp import AutoEngine

    return AutoEngine(llamacpp_engine(settings, catalog, system_prompt), engine)


def transformers_engine(settings: ServeSettings, catalog: Any, system_prompt: str) -> Engine:
    from shoptalk.serve.engine import TransformersEngine

    return TransformersEngine(
        catalog,
        settings.default_max_tokens,
        settings.max_batch_size,
        settings.batch_wait_ms,
        settings.max_queue,
        system_prompt=system_prompt,
    )


def llamacpp_engine(settings: ServeSettings, catalog: Any, system_prompt: str) -> Engine:
    from shoptalk.serve.llamacpp import LlamaCppEngine, batch_rows

    return LlamaCppEngine(
        catalog,
        settings.default_max_tokens,
        batch_rows(settings),
        settings.max_queue,
        settings.llamacpp_contexts,
        settings.llamacpp_threads,
        system_prompt=system_prompt,
        sequence_tokens=settings.llamacpp_sequence_tokens,
    )


def add_ops_routes(app: FastAPI, settings: ServeSettings) -> None:
    """/health, open to all, and /metrics."""

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    async def metrics() -> Response:
        body, content_type = app.state.metrics.render()
        return Response(body, media_type=content_type)

    deps = [] if settings.public_metrics else [Depends(require("admin"))]
    app.add_api_route("/metrics", metrics, methods=["GET"], dependencies=deps)
