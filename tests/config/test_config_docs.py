"""docs/config.md is generated from the settings' descriptions, describes every key, and is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from shoptalk.config import ShoptalkConfig
from shoptalk.config.docs import COMMAND, render, submodel
from shoptalk.project import init_project

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def keys(model: type[BaseModel], prefix: str = "") -> dict[str, str | None]:
    """Every key of the config, dotted, with its description."""
    found: dict[str, str | None] = {}
    for name, field in model.model_fields.items():
        found[prefix + name] = field.description
        sub = submodel(field.annotation)
        if sub is not None:
            found |= keys(sub, f"{prefix}{name}.")
    return found


def test_every_key_has_a_description():
    described = keys(ShoptalkConfig)
    assert len(described) >= 163
    assert [key for key, text in described.items() if not text] == []


def test_docs_config_md_is_current():
    assert DOCS.read_text(encoding="utf-8") == render(), f"docs/config.md is stale: run `{COMMAND}`"


def test_every_key_is_in_the_page_with_its_default():
    page = render()
    for key in keys(ShoptalkConfig):
        assert f"`{key}`" in page or f"`{key.replace('rules.', 'rules[].')}`" in page, key
    assert "| `train.max_seq_len` | integer, ≥ 16 | `512` | Longest packed sequence" in page
    assert "| `dpo` | `cache_gb`, `epochs`, `learning_rate`" in page


def test_the_module_prints_the_page():
    done = subprocess.run(
        [sys.executable, "-m", "shoptalk.config.docs"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout == render()


def test_init_points_to_the_reference(tmp_path):
    text = init_project(tmp_path / "p", [], [], [], []).read_text(encoding="utf-8")
    assert "docs/config.md" in text and "python -m shoptalk.config.docs" in text
    assert DOCS.is_file()
