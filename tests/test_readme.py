"""The README's recipe for larger models names only keys that exist, and its example loads."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from shoptalk.config import ShoptalkConfig
from shoptalk.config.load import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Larger models on a GPU (1-8B)"
# A key in backticks, alone or with a value: `train.method`, `rag.raft.max_examples: null`.
DOTTED_KEY = re.compile(r"`((?:sources|data|train|eval|serve|rag)(?:\.[a-z_]+)+)(?::[^`]*)?`")


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def sub_model(annotation: object) -> type[BaseModel] | None:
    """The settings class of a field (`X`, `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = sub_model(arg)
            if found is not None:
                return found
    return None


def resolves(key: str) -> bool:
    model: type[BaseModel] | None = ShoptalkConfig
    for name in key.split("."):
        if model is None or name not in model.model_fields:
            return False
        model = sub_model(model.model_fields[name].annotation)
    return True


def test_every_key_the_recipe_names_exists():
    keys = set(DOTTED_KEY.findall(section()))
    assert {"train.method", "data.synth.teacher", "rag.raft.max_examples"} <= keys
    assert [key for key in sorted(keys) if not resolves(key)] == []
    assert not resolves("train.precision"), "the check sees a key that does not exist"


def test_the_example_config_loads(tmp_path):
    (block,) = re.findall(r"```yaml\n(.*?)```", section(), re.S)
    (tmp_path / "shoptalk.yaml").write_text(block, encoding="utf-8")
    cfg = load_config(tmp_path, env={})
    assert cfg.train.method == "qlora" and cfg.train.trainable_layers is None
    assert cfg.data.synth.teacher is not None and cfg.eval.judge is not None
    assert cfg.rag.raft is not None and cfg.rag.raft.max_examples is None
    assert cfg.eval.retention and cfg.data.replay.ratio > 0 and cfg.sources.style
