"""HTTP plumbing around the routes: OpenAI's error envelope for framework errors,
a request body limit, and an audit row for requests no route recorded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.exceptions import HTTPException

from shoptalk.serve.audit import AuditEntry
from shoptalk.serve.errors import ApiError
from shoptalk.serve.metrics import route_label


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 as OpenAI's 400, naming the field; a 401 first for a request without a
    valid key (FastAPI parses the body before the route's key check runs)."""
    refused = await asyncio.to_thread(key_refusal, request)
    if refused is not None:
        return JSONResponse(refused.body(), status_code=401, headers=refused.headers)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    error = ApiError(400, f"{where}: {first['msg']}", code="invalid_request", param=where)
    return JSONResponse(error.body(), status_code=400)


def key_refusal(request: Request) -> ApiError | None:
    """The 401 a /v1 request without a valid bearer key gets; None when its key is valid."""
    from fastapi.security.utils import get_authorization_scheme_param

    from shoptalk.serve.auth import authenticate

    if not request.url.path.startswith("/v1/"):
        return None
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token)
        if scheme.lower() == "bearer" and token
        else None
    )
    try:
        request.state.principal = authenticate(request, credentials)
    except ApiError as refused:
        return refused
    return None


async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    error = ApiError(exc.status_code, str(exc.detail))
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


class BodyLimit:
    """413 for a body over `serve.max_body_bytes`, declared or streamed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and int(declared) > self.max_bytes:
            return await self.too_large(send)
        if declared is not None:
            return await self.app(scope, receive, send)
        # A chunked body declares no length: read it (up to the limit) before the
        # route does, so an oversized one is a 413, not the parser's 400.
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self.too_large(send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    def message(self) -> str:
        return f"The request body is over {self.max_bytes} bytes (serve.max_body_bytes)."

    async def too_large(self, send: Any) -> None:
        response = JSONResponse(
            ApiError(413, self.message(), code="request_too_large").body(), status_code=413
        )
        await response({"type": "http"}, None, send)


class AuditTheRest:
    """An audit row for every /v1 request an inference route did not record itself:
    refused keys, bad input, oversized bodies, admin calls, model lists."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            state = scope.get("state", {})
            if not state.get("audited"):
                principal = state.get("principal")
                seconds = time.monotonic() - started
                entry = AuditEntry(
                    key_id=principal.key_id if principal else None,
                    # The route's template, never the raw path: a client can put anything there.
                    route=route_label(scope),
                    latency_ms=round(seconds * 1000, 1),
                    status=status,
                )
                # Counted as audited: one request, no model (`serve.metrics`).
                scope["app"].state.metrics.request(entry.route, "", "", status, seconds)
                await asyncio.to_thread(scope["app"].state.services.audit.record, entry)
