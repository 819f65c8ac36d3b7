"""A real uvicorn server on 127.0.0.1 serving the tiny test model, and keys for it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from openai import OpenAI

from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.catalog import Catalog, ModelEntry
from shoptalk.serve.server import BackgroundServer
from shoptalk.serve.services import build_services

from projects import write_project


@dataclass
class Served:
    url: str
    app: object
    keys: dict[str, str]  # name -> secret

    @property
    def engine(self):
        return self.app.state.engine

    def client(self, key: str = "alice", **options) -> OpenAI:
        # No retries: a test must see the server's first answer (429/503 included).
        options = {"max_retries": 0, "timeout": 60} | options
        return OpenAI(base_url=self.url + "/v1", api_key=self.keys.get(key, key), **options)


def base_catalog(model_dir: Path) -> Catalog:
    base = ModelEntry("base", "base", model_dir)
    return Catalog({"base": base, "tiny": base})


@contextlib.contextmanager
def serving(
    state_dir: Path, catalog: Catalog | None = None, model_dir: Path | None = None, **settings
) -> Iterator[Served]:
    serve_settings = ServeSettings(**settings)
    services = build_services(serve_settings, state_dir)
    keys = {
        "alice": services.keys.create("alice", KeyLimits(scopes=["chat", "embeddings"])).secret,
        "admin": services.keys.create("admin", KeyLimits(scopes=["admin"])).secret,
    }
    app = create_app(
        settings=serve_settings, services=services, catalog=catalog or base_catalog(model_dir)
    )
    with BackgroundServer(app) as url:
        yield Served(url, app, keys)


def upstream_project(root: Path, model_dir: Path) -> Path:
    """A project at `root` (tests/projects.py) whose server asks an upstream that never
    answers and starts no worker: for routes that touch the project, never a model."""
    write_project(root, model_dir)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {
        "worker": False,
        "engine": "upstream",
        "upstream_url": "http://127.0.0.1:9/v1",
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    return root


def sse_events(response) -> list[dict]:
    """The JSON events of a raw server-sent event stream, without [DONE]."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events
