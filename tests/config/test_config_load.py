"""Reading shoptalk.yaml is light: it imports no stage and none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kestrel"
PROBE = f"""
import json, sys
from pathlib import Path
from shoptalk.config import load_config
load_config(Path({str(EXAMPLE)!r}))
print(json.dumps(sorted(sys.modules)))
"""
HEAVY = {"numpy", "httpx", "httpx2", "torch", "transformers"}
STAGES = {"data", "train", "eval", "rag", "export", "serve", "jobs", "pipeline", "cli"}


def test_loading_a_config_imports_no_stage_and_no_heavy_library():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(done.stdout)
    assert not {m.split(".")[0] for m in loaded} & HEAVY
    ours = [m.split(".") for m in loaded if m.startswith("shoptalk.")]
    assert not [".".join(m) for m in ours if m[1] in STAGES]
