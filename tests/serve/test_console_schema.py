"""The console's client is typed from the server's schema: the committed copy must be current."""

from __future__ import annotations

import json
from pathlib import Path

from shoptalk.serve.app import openapi_schema
from shoptalk.serve.console import STATIC

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def test_console_types_were_generated_from_the_current_schema():
    committed = json.loads((CONSOLE / "openapi.json").read_text(encoding="utf-8"))
    current = json.loads(json.dumps(openapi_schema(), sort_keys=True))
    assert committed == current, (
        "The API changed since the console was built: run `cd console && npm run build` "
        "and commit console/openapi.json, console/src/schema.d.ts and the bundle."
    )


def test_the_built_console_is_shipped():
    assert (STATIC / "index.html").is_file()
    bundle = (STATIC / "console.js").read_text(encoding="utf-8")
    assert "/v1/project/playground" in bundle and "控制台" in bundle
