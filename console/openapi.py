"""Write the server's OpenAPI schema to console/openapi.json (run before `npm run build`)."""

import json
from pathlib import Path

from shoptalk.serve.app import openapi_schema

target = Path(__file__).parent / "openapi.json"
target.write_text(json.dumps(openapi_schema(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
print(f"wrote {target}")
