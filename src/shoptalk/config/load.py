"""Reading and writing `shoptalk.yaml`: parse, validate, and say what is wrong and where."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from shoptalk.config.root import ShoptalkConfig
from shoptalk.config.train import check_launch
from shoptalk.errors import ConfigError

CONFIG_NAME = "shoptalk.yaml"


def load_config(project_dir: Path, env: Mapping[str, str] | None = None) -> ShoptalkConfig:
    """The project's validated config; raises ConfigError naming the file and the key.

    Validation covers the launch too: under torchrun or `accelerate launch`
    (WORLD_SIZE in `env`, default the process environment) a recipe that runs in
    one process only is refused here, before any work starts.
    """
    path = project_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found. Create one with `shoptalk init {project_dir}`.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings at the top level, found {type(raw).__name__}"
        )
    try:
        cfg = ShoptalkConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc
    try:
        check_launch(cfg.train, bool(cfg.sources.preferences), os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return cfg


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(
                f"unknown key '{key}' (check the spelling; every key is listed in docs/config.md and by "
                f"`python -m shoptalk.config.docs`)"
            )
        elif isinstance(err.get("input"), dict):
            # A section failed a check across its keys: our message names them, and
            # pydantic's "Value error, " prefix and the whole section add nothing.
            problems.append(f"key '{key}': {err['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"key '{key}': {err['msg']} (found {err.get('input')!r})")
    return "; ".join(problems)


def dump_config(cfg: ShoptalkConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
