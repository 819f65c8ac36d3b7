"""The OpenAI inference routes, one router per resource: models, chat completions,
completions, embeddings. Each request goes through `serve.calls`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from shoptalk.serve import schemas
from shoptalk.serve.auth import Chat, Embeddings, Principal, check_model, held_groups
from shoptalk.serve.calls import Call, chat_completion
from shoptalk.serve.errors import ApiError

models_router = APIRouter(prefix="/v1/models", tags=["models"])
chat_router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])
completions_router = APIRouter(prefix="/v1/completions", tags=["completions"])
embeddings_router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])
ROUTERS = [models_router, chat_router, completions_router, embeddings_router]


async def served_names(request: Request, principal: Principal) -> list[str]:
    """The chat models the key's groups may be served, then the embedding model (as OpenAI
    lists both)."""
    catalog = getattr(request.app.state.engine, "catalog", None)
    if catalog is None:
        names = await request.app.state.engine.names()
    else:
        names = await asyncio.to_thread(catalog.names_for, held_groups(principal))
    return names + [n for n in [request.app.state.embedder.name] if n not in names]


@models_router.get("")
async def list_models(request: Request, principal: Chat) -> schemas.ModelList:
    names = await served_names(request, principal)
    allowed = [n for n in names if principal.models is None or n in principal.models]
    return schemas.ModelList(data=[schemas.ModelCard(id=n) for n in allowed])


@models_router.get("/{model}")
async def get_model(model: str, request: Request, principal: Chat) -> schemas.ModelCard:
    check_model(principal, model)
    if model not in await served_names(request, principal):
        raise ApiError(404, f"The model {model!r} does not exist.", code="model_not_found")
    return schemas.ModelCard(id=model)


@chat_router.post("")
async def chat_completions(
    body: schemas.ChatCompletionRequest, request: Request, principal: Chat
) -> Any:
    return await chat_completion(request, principal, body)


@completions_router.post("")
async def completions(body: schemas.CompletionRequest, request: Request, principal: Chat) -> Any:
    call = Call(request, principal, "completions", body.model)
    call.prompt_text = "\n".join(body.prompts())
    return await call.run(
        body,
        lambda engine, params: engine.prepare_text(body.model, body.prompts(), params, body.n),
    )


@embeddings_router.post("")
async def embeddings(
    body: schemas.EmbeddingRequest, request: Request, principal: Embeddings
) -> schemas.EmbeddingList:
    call = Call(request, principal, "embeddings", body.model)
    return await call.embed(body)
