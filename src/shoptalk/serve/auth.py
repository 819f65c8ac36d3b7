"""Who is calling: `Depends(require("chat"))` turns a bearer key into a Principal.

Every route but /health depends on `require(...)`. A missing, unknown, revoked
or expired key is a 401; a key without the route's scope or model is a 403.
The raw key is never logged nor kept: only its hash is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from shoptalk.registry.keys import SCOPES, KeyInfo
from shoptalk.serve.errors import ApiError

# auto_error=False: a missing header becomes our 401 in OpenAI's envelope, not
# FastAPI's 403; the scheme still shows in the OpenAPI docs.
bearer = HTTPBearer(auto_error=False, description="An API key from `shoptalk keys create`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Principal(BaseModel, frozen=True):
    """The key behind a request, with what it may do."""

    key_id: str
    name: str
    scopes: frozenset[str]
    models: list[str] | None = None
    groups: list[str] = []
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    @classmethod
    def from_key(cls, key: KeyInfo) -> Principal:
        return cls(
            key_id=key.id,
            name=key.name,
            scopes=frozenset(key.scopes),
            models=key.models,
            groups=key.groups,
            rpm=key.rpm,
            tpm=key.tpm,
            tokens_per_day=key.tokens_per_day,
            tokens_per_month=key.tokens_per_month,
        )

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The Principal for the request's bearer key, or a 401."""
    if credentials is None:
        raise ApiError(
            401,
            "Missing API key: send it as 'Authorization: Bearer sk-st-...'.",
            code="invalid_api_key",
            headers=CHALLENGE,
        )
    keys = request.app.state.services.keys
    key = keys.find(credentials.credentials)
    if key is None:
        # Never echo the key back: error messages end up in client logs.
        raise ApiError(
            401, "Incorrect API key provided.", code="invalid_api_key", headers=CHALLENGE
        )
    status = key.status(datetime.now(timezone.utc))
    if status != "active":
        raise ApiError(
            401, f"API key {key.prefix}... is {status}.", code="invalid_api_key", headers=CHALLENGE
        )
    keys.touch(key.id)
    return Principal.from_key(key)


def require(*scopes: str) -> Callable[..., Principal]:
    """A FastAPI dependency that admits keys holding any of `scopes` (or admin)."""
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
    wanted = " or ".join(f"'{s}'" for s in scopes)

    # A plain `def`: FastAPI runs it in its thread pool, so the database lookup
    # does not block the event loop.
    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = authenticate(request, credentials)
        if not any(principal.allows(scope) for scope in scopes):
            raise ApiError(
                403,
                f"This API key lacks the {wanted} scope; ask an admin for a key that has it.",
                code="insufficient_scope",
            )
        request.state.principal = principal
        return principal

    return dependency


def check_model(principal: Principal, model: str) -> None:
    """A 403 unless the key may use `model`."""
    if principal.models is not None and model not in principal.models:
        raise ApiError(
            403,
            f"This API key may not use model '{model}'; it may use: "
            f"{', '.join(principal.models) or 'none'}.",
            code="model_not_allowed",
            param="model",
        )


def check_model_groups(principal: Principal, model: str, groups: list[str] | None) -> None:
    """A 403 unless the key holds every group whose documents `model` was trained on.

    `groups` None: a model only the owner's scope is served (a fine-tuning job on a file
    uploaded by a key that reads everything: it may hold any document).
    """
    if groups is None:
        if principal.allows("admin"):
            return
        raise ApiError(
            403,
            f"The model '{model}' was trained on a file that may quote any document; only "
            "the owner's scope (admin) is served it until its job names its groups.",
            code="model_not_allowed",
            param="model",
        )
    missing = sorted(set(groups) - set(principal.groups))
    if missing and not principal.allows("admin"):
        raise ApiError(
            403,
            f"The model '{model}' was trained on documents of the groups "
            f"{', '.join(missing)}, which this API key does not hold.",
            code="model_not_allowed",
            param="model",
        )


def held_groups(principal: Principal) -> list[str] | None:
    """The groups whose documents the key may read and whose models it is served; None = all.

    All only for the owner's scope, `admin` (which can mint a key with any
    groups anyway): `editor` changes the project and starts work, but reads
    restricted documents, chunks and file names through its groups like any key.
    """
    return None if principal.allows("admin") else principal.groups


def reads_as_much(reader: Principal, owner: Principal | None) -> bool:
    """Whether `reader` may read what `owner`'s key could: its eval runs, its uploads.

    What a key made may quote any document its groups read, so another key sees it
    only with the owner's scope or every group of that key. `owner` None (a key since
    deleted, or a row older than keys on rows) is readable by the owner's scope only.
    """
    mine = held_groups(reader)
    if mine is None:
        return True
    if owner is None:
        return False
    theirs = held_groups(owner)
    return owner.key_id == reader.key_id or (theirs is not None and set(theirs) <= set(mine))


def key_of(request_or_app: Request | Any, key_id: str | None) -> Principal | None:
    """The Principal of the key `key_id` (whatever its status), or None if there is none."""
    from shoptalk.registry.keys import UnknownKeyError

    app = getattr(request_or_app, "app", request_or_app)
    if key_id is None:
        return None
    try:
        return Principal.from_key(app.state.services.keys.get(key_id))
    except UnknownKeyError:
        return None


# The permission model, one name per role (see docs/architecture.md, "Serving"):
# asking a model spends model time and needs `chat`; reading the console's views of
# a project needs `chat` or `editor`; changing a project or starting pipeline work
# (data check, report, plan, builds, fine-tuning jobs, uploads) needs `editor`;
# keys, usage, audit and the scorecard's full report need `admin`. Admin implies
# every scope and is the one scope that reads every document (`held_groups`).
Chat = Annotated[Principal, Depends(require("chat"))]
Embeddings = Annotated[Principal, Depends(require("embeddings"))]
Reader = Annotated[Principal, Depends(require("chat", "editor"))]
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]
