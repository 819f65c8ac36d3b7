"""Key and usage administration: the admin API (admin scope) and its terminal tables.

POST /v1/admin/keys                  create a key (the secret is in this answer only)
GET  /v1/admin/keys                  list keys (never their secrets)
POST /v1/admin/keys/{key_id}/revoke  revoke: the key answers 401 from now on
POST /v1/admin/keys/{key_id}/rotate  a new secret for the same id and limits
GET  /v1/admin/usage?since=...       requests and tokens per key and per model
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from rich.table import Table

from shoptalk.errors import ShoptalkError
from shoptalk.registry.audit import Usage
from shoptalk.registry.keys import (
    KeyInfo,
    KeyLimits,
    KeyStore,
    KeyStoreError,
    NewKey,
    UnknownKeyError,
)
from shoptalk.serve.auth import require
from shoptalk.serve.errors import ApiError

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])


class KeyCreate(KeyLimits):
    name: str = Field(min_length=1, max_length=200, description="Who or what the key is for")
    expires_in_days: float | None = Field(None, gt=0, description="None = never expires")


class KeyList(BaseModel):
    object: str = "list"
    data: list[KeyInfo]


def _keys(request: Request) -> KeyStore:
    return request.app.state.services.keys


def _or_api_error(call, *args):
    try:
        return call(*args)
    except KeyStoreError as exc:
        status = 404 if isinstance(exc, UnknownKeyError) else 400
        raise ApiError(status, str(exc)) from exc


@router.post("/keys", status_code=201)
def create_key(body: KeyCreate, request: Request) -> NewKey:
    limits = KeyLimits(**body.model_dump(exclude={"name", "expires_in_days"}))
    return _or_api_error(_keys(request).create, body.name, limits, body.expires_in_days)


@router.get("/keys")
def list_keys(request: Request) -> KeyList:
    return KeyList(data=_keys(request).list())


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, request: Request) -> KeyInfo:
    return _or_api_error(_keys(request).revoke, key_id)


@router.post("/keys/{key_id}/rotate")
def rotate_key(key_id: str, request: Request) -> NewKey:
    return _or_api_error(_keys(request).rotate, key_id)


@router.get("/usage")
def usage(
    request: Request,
    since: Annotated[datetime | None, Query(description="ISO time; default: all time")] = None,
) -> Usage:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return request.app.state.services.audit.usage(since)


SPAN = re.compile(r"(\d+)\s*([mhd])")
SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2026-05-01', '2026-05-01T08:00' (UTC unless it says) or a span back: '30m', '24h', '7d'."""
    span = SPAN.fullmatch(text.strip())
    if span:
        delta = timedelta(**{SPAN_UNITS[span.group(2)]: int(span.group(1))})
        return (now or datetime.now(timezone.utc)) - delta
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ShoptalkError(
            f"--since: expected a date/time like 2026-05-01 or a span like 7d, 24h, 30m; got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def keys_table(keys: list[KeyInfo]) -> Table:
    """Every key in a table that fits 80 columns: the id `revoke` needs is never cut.

    Long names and model lists wrap inside their column; `keys list --json` has every field.
    """
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", leading=1)
    table.add_column("id", no_wrap=True)
    table.add_column("name\nkey", overflow="fold")
    table.add_column("scopes\nmodels", overflow="fold")
    table.add_column("limits", no_wrap=True)
    table.add_column("expires\nlast used", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for key in keys:
        models = "all models" if key.models is None else ", ".join(key.models)
        table.add_row(
            key.id,
            f"{key.name}\n{key.prefix}...",
            f"{', '.join(key.scopes)}\n{models}",
            _limits(key),
            f"{_day(key.expires_at)}\n{_day(key.last_used_at)}",
            key.status(),
        )
    return table


def _limits(key: KeyInfo) -> str:
    pairs = [
        (key.rpm, " rpm"),
        (key.tpm, " tpm"),
        (key.tokens_per_day, "/day"),
        (key.tokens_per_month, "/month"),
    ]
    return "\n".join(f"{_short(v)}{unit}" for v, unit in pairs if v is not None) or "none"


def _short(value: int) -> str:
    """1200 -> 1.2k, 5000000 -> 5M: a limit's size at a glance."""
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return str(value)


def _day(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d")


def usage_tables(usage: Usage) -> list[Table]:
    tables = []
    for title, rows in (("key", usage.by_key), ("model", usage.by_model)):
        table = Table(title, title=f"Usage per {title}")
        for column in ("requests", "errors", "prompt tokens", "completion tokens", "total"):
            table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                f"{row.name} {row.label or ''}".strip(),
                f"{row.requests:,}",
                f"{row.errors:,}",
                f"{row.prompt_tokens:,}",
                f"{row.completion_tokens:,}",
                f"{row.total_tokens:,}",
            )
        tables.append(table)
    return tables
